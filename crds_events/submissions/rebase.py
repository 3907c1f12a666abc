"""Rebase: a READY submission's rules made again on the edit context as it is now.

A submission's new rules are derived from the edit context of the time it was processed.
When another submission is confirmed first, the edit context moves on, and confirming the
older result would silently undo that confirm (its pmap does not name the other's new
rules). Review (`crds_events.submissions.review`) therefore refuses such a confirm and
rebases instead:

* the submission's files keep their official names, certify results and copies; only the
  rules steps of processing run again (`crds_events.submissions.processing`, the same
  steps: refactor the references into the *current* rmaps, new imaps and pmap, certify the
  new rules, collisions, diffs), in a fresh directory under the submission's work dir;
* what it cannot do is refused, with the reason: a match case of an rmap changed both by
  this submission and by what was confirmed since (a refactor would replace one with the
  other), or a hand-edited rmap whose rmap was replaced since;
* the new result is recorded as READY again, in one append at the stream version the
  confirm read (two confirms racing rebase once): the progress lines, ending with
  ``>> Rebased onto <context>``, the `FileCertified` of the new rules and a
  `SubmissionReady` carrying ``rebased_onto`` (its READY e-mail says so).

The submitter then reviews the new result and confirms it: only what was seen is confirmed.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from crds_events import events as ev
from crds_events.config import Settings
from crds_events.errors import CrdsEventsError
from crds_events.files.geis import is_geis_data
from crds_events.rules.diff import MappingTree, mapping_diffs
from crds_events.rules.index import ReferenceIndex
from crds_events.store.artifacts import ArtifactStore
from crds_events.store.filestore import FileStore
from crds_events.store.interface import ConcurrencyError, EventStore
from crds_events.submissions.collisions import collision_hook
from crds_events.submissions.dropbox import work_dir
from crds_events.submissions.pipeline import known_files, outcome_events, taken_names
from crds_events.submissions.processing import _Run, _Stop, _validate
from crds_events.submissions.results import (
    FAILED,
    READY,
    FileOutcome,
    ProcessingRequest,
    ProcessingResult,
    SubmissionKind,
)

__all__ = ["RebaseRefused", "rebase", "rebase_result"]


class RebaseRefused(CrdsEventsError, ValueError):
    """The submission's rules cannot be made again on the current edit context (why)."""


# --- the rules steps again, on another context (pure: nothing outside request.work_dir) ----


class _Rebase(_Run):
    """A processing run that starts from an earlier READY result instead of uploads."""

    def __init__(self, request: ProcessingRequest, kind: SubmissionKind,
                 progress: Callable[[str], None] | None, previous: ProcessingResult) -> None:
        super().__init__(request, kind, progress)
        self.previous = previous
        self.result.kind = previous.kind

    def execute(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.say(f"Rebasing onto {self.pmap_path.name}: the edit context is no longer "
                 f"{self.previous.derived_from}")
        self.step("preparing", self.prepare)
        self.step("checking what changed since", self.follow_changes)
        self.make_rules()

    def prepare(self) -> None:
        super().prepare()  # names taken, substitutions, the context is there
        # The files as the earlier run named and certified them; the rules are made again.
        self.uploads, self.result.files = [], []
        generated = set(self.previous.generated_mappings)
        for earlier in self.previous.files:
            if earlier.kind == "deleted":  # a delete's names: delete_from_rmaps redoes them
                continue
            outcome = FileOutcome(**earlier.to_dict())
            self.result.files.append(outcome)
            name = outcome.official_name
            if outcome.kind == "mapping":
                # a submitted rmap: certify and diffs read the new rules from map_dir
                self.map_dir.mkdir(parents=True, exist_ok=True)
                target = self.map_dir / name
                shutil.copyfile(outcome.path, target)
                outcome.path = str(target)
                if outcome.rmap:
                    self.result.replaced[outcome.rmap] = name
            if not is_geis_data(name):  # a GEIS data file follows its header, not in rules
                self.uploads.append((Path(outcome.path), outcome))
            if name and name not in generated:
                self.result.outputs[name] = outcome.path

    def follow_changes(self) -> None:
        """Each rmap this submission changed, as the current context has it: unchanged, or
        changed elsewhere (merged when no match case was changed by both), or refused."""
        moved: dict[str, str] = {}
        for old, ours in sorted(self.previous.replaced.items()):
            if not old.endswith(".rmap"):
                continue
            current = self._current_rmap(old)
            if current == old:
                continue
            submitted = any(o.kind == "mapping" and o.official_name == ours
                            for o in self.result.files)
            if submitted:
                self.stop(FAILED, f"{old} was replaced by {current} in {self.pmap_path.name} "
                                  f"since this submission was made; a submitted rmap cannot "
                                  f"be merged: edit {current} and submit it again")
            both = _cases(self.mappings_dir / old, self.mappings_dir / current) & _cases(
                self.mappings_dir / old, Path(self.previous.outputs.get(ours, "")))
            if both:
                shown = ", ".join(_show_case(case) for case in sorted(both, key=repr))
                self.stop(FAILED, f"match case {shown} of {old} was changed both by this "
                                  f"submission ({ours}) and by {current}, now in "
                                  f"{self.pmap_path.name}; one would undo the other: cancel "
                                  f"this submission and submit it again")
            moved[old] = current
            self.say(f"{old} is now {current}: inserting into it")
        for outcome in self.result.files:
            outcome.rmap = moved.get(outcome.rmap, outcome.rmap)

    def _current_rmap(self, old: str) -> str:
        header = {str(key).lower(): value for key, value in
                  MappingTree.load(self.mappings_dir / old).header.items()}
        instrument, filekind = str(header.get("instrument", "")), str(header.get("filekind", ""))
        try:
            rmap = self.pipeline().imap(instrument.lower()).rmap(filekind.lower())
        except KeyError:
            rmap = None
        if not isinstance(rmap, ReferenceIndex):
            self.stop(FAILED, f"{self.pmap_path.name} has no rules for {instrument.upper()} "
                              f"{filekind.upper()} any more")
        return rmap.name


def _cases(old: Path, new: Path) -> set[object]:
    """The match cases (the first selector key) that differ between two versions of an
    rmap, as `crds diff` tuples name them: (names, match case, [useafter], message)."""
    diffs = mapping_diffs(old, new)
    return {diff[1] for diff in diffs if len(diff) > 2}


def _show_case(case: object) -> str:
    return repr(tuple(case)) if isinstance(case, list | tuple) else repr(case)


def rebase_result(request: ProcessingRequest, previous: ProcessingResult,
                  progress: Callable[[str], None] | None = None) -> ProcessingResult:
    """The rules of ``previous`` made again on ``request.derive_from``; status READY, or
    FAILED with the reason it cannot be done."""
    run = _Rebase(request, _validate(request), progress, previous)
    with contextlib.suppress(_Stop):
        run.step("rebasing", run.execute)
    return run.result


# --- against the log ----------------------------------------------------------------------


def rebase(settings: Settings, store: EventStore, started: ev.SubmissionStarted,
           version: int, previous: Mapping[str, Any], onto: str,
           meta: Mapping[str, Any]) -> ev.SubmissionReady:
    """Make the READY result ``previous`` (the stream at ``version``) again on the pmap
    ``onto`` and record it as READY; `RebaseRefused` (nothing recorded) when that cannot be
    done, `ConcurrencyError` when the stream moved on meanwhile (another decision or
    rebase won)."""
    sid = started.submission_id
    prior = ProcessingResult.from_dict(previous)
    kind = SubmissionKind.parse(prior.kind or started.kind)
    mappings_dir = FileStore.from_settings(settings).directory_for("mapping")
    # A directory of its own: a racing rebase of the same submission never writes here.
    work = work_dir(settings, sid) / f"rebase-{uuid.uuid4().hex[:12]}"
    _, names = known_files(store)  # our own names too: the new rules get fresh ones
    deleting = kind is SubmissionKind.DELETE
    request = ProcessingRequest(
        observatory=started.observatory, instrument=started.instrument, kind=kind,
        files=() if deleting else tuple(f.path for f in prior.files if f.path),
        derive_from=onto, mappings_dir=mappings_dir, work_dir=work,
        known_names=taken_names(settings, names), auto_rename=started.auto_rename,
        change_level=started.change_level, description=started.description,
        substitutions=settings.substitutions,
        delete_references=tuple(started.files) if deleting else (),
        collisions=collision_hook(store, settings, sid),
    )
    lines: list[str] = []
    try:
        result = rebase_result(request, prior, lines.append)
        if result.status != READY:
            raise RebaseRefused("; ".join(result.errors) or result.summary)
        line = f">> Rebased onto {onto}: review the new result and confirm again"
        result.messages.append(line)
        lines.append(line)
        digest = ArtifactStore.for_root(settings.root).put_json(result.to_dict())
        certified, outcome = outcome_events(started, result, digest)
        if not isinstance(outcome, ev.SubmissionReady):
            raise RebaseRefused(f"the rebased result is {type(outcome).__name__}")
        ready = ev.SubmissionReady(
            submission_id=sid, files=outcome.files, new_context=outcome.new_context,
            generated=outcome.generated, result_digest=digest, rebased_onto=onto)
        fresh = set(result.generated_mappings)
        events: list[ev.Event] = [ev.SubmissionProgress(submission_id=sid, message=text)
                                  for text in lines]
        events += [c for c in certified if c.name in fresh]
        events.append(ready)
        stream = ev.submission_stream(sid)
        with store.transaction() as tx:
            appended = tx.append(stream, events, version, meta=dict(meta),
                                 idempotency_key=f"{sid}:rebase:{version}")
            if appended.duplicate:  # the same rebase, recorded by a racing confirm
                raise ConcurrencyError(stream, version, appended.version)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return ready
