"""One started submission processed against the log: uploads in, outcome events out.

`process` reads the submission's ``SubmissionStarted``, resolves its derive-from context
(`resolve_context`, through the one pointers read of `crds_events.contexts.pointers`),
learns the files already known (`known_files`), runs
`crds_events.submissions.processing.process_submission` on the uploaded copies, turns every
progress line into a `SubmissionProgress` event, stores the result dict as an artifact, and
appends `FileCertified` for each file plus the outcome (`SubmissionReady`,
`SubmissionRejected`, `SubmissionFailed`) in one transaction.

Crash safety: every append carries an idempotency key derived from the submission (and for
progress lines, the line's text), so processing a submission again after a crash appends
nothing twice; `pending_submissions` lists the started ones without an outcome, which a
restarted worker processes again from their uploads (copies nobody else touches).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from crds_events import events as ev
from crds_events.config import Settings
from crds_events.contexts.pointers import context_pointers
from crds_events.errors import CrdsEventsError
from crds_events.events.limits import truncate_text
from crds_events.files.checksums import sha1_file
from crds_events.store.artifacts import ArtifactStore
from crds_events.store.filestore import KINDS, FileStore
from crds_events.store.folds import FILE_DIGESTS, FILES
from crds_events.store.interface import EventReader, EventStore, Transaction
from crds_events.store.projections import current_row, current_rows
from crds_events.submissions.collisions import collision_hook
from crds_events.submissions.contained import CertifyInterrupted, CertifyLimits
from crds_events.submissions.dropbox import uploads_dir, work_dir
from crds_events.submissions.lockrelease import release_after_outcome
from crds_events.submissions.processing import (
    ProcessingRequest,
    SubmissionKind,
    process_submission,
)

__all__ = [
    "OUTCOMES",
    "FINAL",
    "MAX_CRASHED_ATTEMPTS",
    "SubmissionError",
    "known_files",
    "outcome_events",
    "pending_submissions",
    "process",
    "resolve_context",
]

log = logging.getLogger(__name__)

OUTCOMES = (ev.SubmissionReady, ev.SubmissionRejected, ev.SubmissionFailed)
FINAL = (*OUTCOMES, ev.SubmissionConfirmed, ev.SubmissionForced, ev.SubmissionCancelled)
_FINAL_TYPES = frozenset(cls.type for cls in FINAL)
_CERTIFY_STATUS = {"OK": "ok", "WARNINGS": "warning", "ERRORS": "error"}


#: Runs that may end without an outcome (the worker died) before the submission is failed.
MAX_CRASHED_ATTEMPTS = 2

# Processing again when another submission recorded one of the same files meanwhile (two
# workers, or a confirm, between our read of the known files and our outcome); the last
# attempt appends without the check, so a submission always gets an outcome.
_ATTEMPTS = 4


class SubmissionError(CrdsEventsError, RuntimeError):
    """A submission cannot be processed (e.g. its derive-from context is unknown)."""


class _DuplicateRace(CrdsEventsError):
    """A file of this submission was recorded by another one while it was processed."""


def pending_submissions(store: EventReader) -> list[str]:
    """Ids of submissions started but without an outcome, oldest first."""
    started: dict[str, None] = {}
    for record in store.iter_all(types=[ev.SubmissionStarted.type, *_FINAL_TYPES]):
        sid = record.data["submission_id"]
        if record.type == ev.SubmissionStarted.type:
            started[sid] = None
        else:
            started.pop(sid, None)
    return list(started)


def resolve_context(store: EventReader, observatory: str, derive_from: str,
                    mappings_dir: Path) -> str:
    """The pmap name ``derive_from`` (edit / latest / a pmap name) stands for now."""
    if derive_from in ("edit", "latest"):
        pmap = context_pointers(store, observatory).get(derive_from)
        if not pmap:
            raise SubmissionError(
                f"derive_from {derive_from!r}: no {derive_from} context is set for "
                f"{observatory} (import a cache or set one first)")
    else:
        pmap = derive_from
    if not (mappings_dir / pmap).is_file():
        raise SubmissionError(f"derive_from {derive_from!r}: context {pmap} is not in the "
                              f"file store ({mappings_dir})")
    return pmap


def known_files(store: EventReader, *, exclude: str = "") -> tuple[dict[str, str], set[str]]:
    """``(sha1 -> name, names)`` of every file a new submission may not bring again: the
    stored (cataloged) files, the original uploads of those whose stored bytes differ
    (HST renames rewrite the header), and the files of other pending submissions (certified
    without errors, not rejected, failed or cancelled). ``exclude``: a submission whose own
    files do not count (it is being processed again).

    Read from the ``file_digests`` projection (`crds_events.store.folds.FILE_DIGESTS`),
    not by replaying the log."""
    sha1s: dict[str, str] = {}
    names: set[str] = set()
    rows = sorted(current_rows(store, FILE_DIGESTS).values(),  # type: ignore[arg-type]
                  key=lambda row: row["position"])  # the earliest file names a digest
    for row in rows:
        if exclude and row["submission_id"] == exclude:
            continue
        names.add(row["name"])
        for digest in (row["sha1"], row["original_sha1"]):
            if digest:
                sha1s.setdefault(digest, row["name"])
    return sha1s, names


def taken_names(settings: Settings, names: set[str]) -> frozenset[str]:
    """``names`` (from `known_files`) and every name in the file store: a file put there
    for a decision that then lost its race is named by no event, yet its name stays taken
    (the store never replaces a file), so no later submission is given it."""
    store = FileStore.from_settings(settings)
    return frozenset(names).union(*(store.names(kind) for kind in KINDS))


# --- one submission ------------------------------------------------------------------------


def process(store: EventStore, settings: Settings, submission_id: str, *,
            limits: CertifyLimits | None = None,
            cancel: threading.Event | None = None) -> ev.Event | None:
    """Process one submission unless it already has an outcome; the outcome event (None:
    no such submission, or decided before).

    Each run is first recorded (a ``SubmissionProgress`` of step ``attempt``), so a
    submission whose processing killed its worker (the server died mid-run) twice is
    failed instead of being retried at every start (`MAX_CRASHED_ATTEMPTS`). ``limits``:
    for certifying each upload; ``cancel``: set when the server stops, which interrupts
    the run (`CertifyInterrupted` propagates; the run is recorded as interrupted, not
    crashed, and resumes at the next start)."""
    records = store.read_stream(ev.submission_stream(submission_id))
    started = next((r for r in records if r.type == ev.SubmissionStarted.type), None)
    if started is None:
        return None
    for record in records:
        if record.type in _FINAL_TYPES:
            return None  # done before (a duplicate enqueue, or resumed twice)
    event: ev.SubmissionStarted = started.event  # type: ignore[assignment]
    meta = {"actor": started.actor, "causation_id": started.position,
            "correlation_id": started.meta.get("correlation_id") or started.position}
    counter = iter(range(1, 1_000_000))

    def progress(message: str, *_: Any, **__: Any) -> None:
        n = next(counter)
        digest = hashlib.sha1(message.encode()).hexdigest()[:12]
        message = truncate_text(message)  # a progress line may quote a whole file
        store.record(ev.SubmissionProgress(submission_id=submission_id, message=message),
                     meta=meta, idempotency_key=f"{submission_id}:progress:{n}:{digest}")

    artifacts = ArtifactStore.for_root(settings.root)
    runs, crashed = _runs(records)
    if crashed >= MAX_CRASHED_ATTEMPTS:
        error = f"the submission crashed its worker {_times(crashed)} (it is not retried)"
        log.error("submission %s: %s", submission_id, error)
        digest = artifacts.put_json({"status": "FAILED", "errors": [error]})
        failed = ev.SubmissionFailed(submission_id=submission_id, error=error,
                                     files=event.files, result_digest=digest)
        _append_outcome(store, submission_id, [], failed, meta, started=event)
        return failed
    run = runs + 1
    # Durable before any work: if this run kills the process, the next start counts it.
    store.record(ev.SubmissionProgress(submission_id=submission_id, step="attempt",
                                       message=f">> processing (run {run})"),
                 meta=meta, idempotency_key=f"{submission_id}:attempt:{run}")
    try:
        return _attempts(store, settings, event, progress, artifacts, meta,
                         limits or CertifyLimits.from_settings(settings), cancel)
    except CertifyInterrupted:
        store.record(ev.SubmissionProgress(
            submission_id=submission_id, step="interrupted",
            message=">> interrupted: the server is stopping; processing resumes at its "
                    "next start"), meta=meta, idempotency_key=f"{submission_id}:interrupted:{run}")
        raise


def _times(count: int) -> str:
    return {1: "once", 2: "twice"}.get(count, f"{count} times")


def _runs(records: Iterable[Any]) -> tuple[int, int]:
    """(runs started, runs that ended without an outcome and without an interruption)."""
    steps = [r.data.get("step") for r in records if r.type == ev.SubmissionProgress.type]
    runs = steps.count("attempt")
    return runs, runs - steps.count("interrupted")


def _attempts(store: EventStore, settings: Settings, event: ev.SubmissionStarted,
              progress: Callable[..., None], artifacts: ArtifactStore, meta: dict,
              limits: CertifyLimits | None, cancel: threading.Event | None) -> ev.Event:
    submission_id = event.submission_id
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            snapshot = store.head()  # the known files are read as of this position or later
            result = _run_processing(store, settings, event, progress, limits, cancel)
            digest = artifacts.put_json(result.to_dict())
            certified, outcome = outcome_events(event, result, digest)
            _append_outcome(store, submission_id, certified, outcome, meta,
                            recheck_after=snapshot if attempt < _ATTEMPTS else None,
                            started=event)
            return outcome
        except _DuplicateRace as race:
            progress(f">> {race}; checking again")
        except Exception as exc:  # noqa: BLE001 - recorded as FAIL, with the traceback
            if isinstance(exc, SubmissionError):  # a known cause: one line says it all
                log.warning("submission %s failed: %s", submission_id, exc)
            else:
                log.exception("submission %s failed", submission_id)
            error = truncate_text(f"{type(exc).__name__}: {exc}")  # full text: artifact
            detail = {"status": "FAILED", "errors": [error], "traceback": traceback.format_exc()}
            digest = artifacts.put_json(detail)
            failed = ev.SubmissionFailed(submission_id=submission_id, error=error,
                                         files=event.files, result_digest=digest)
            _append_outcome(store, submission_id, [], failed, meta, started=event)
            return failed
    raise AssertionError("unreachable: the last attempt does not recheck")


def _run_processing(store: EventStore, settings: Settings, event: ev.SubmissionStarted,
                    progress: Callable[..., None], limits: CertifyLimits | None = None,
                    cancel: threading.Event | None = None) -> Any:
    sid = event.submission_id
    mappings_dir = FileStore.from_settings(settings).directory_for("mapping")
    derive_from = resolve_context(store, event.observatory, event.derive_from, mappings_dir)
    uploads = uploads_dir(settings, sid)
    output = work_dir(settings, sid) / "processing"
    shutil.rmtree(output, ignore_errors=True)  # a resumed run starts clean
    sha1s, names = known_files(store, exclude=sid)
    deleting = SubmissionKind.parse(event.kind) is SubmissionKind.DELETE
    # A delete submission's files are the names of the references to take out of the
    # rules (CRDS's "delete references"): nothing was uploaded.
    files = () if deleting else tuple(uploads / name for name in event.files)
    missing = [p.name for p in files if not p.is_file()]
    if missing:
        raise SubmissionError(f"uploaded copies missing from the submission's work "
                              f"directory: {missing}")
    if settings.tpn_dir is not None and not settings.tpn_dir.is_dir():
        # Checked at start-up; gone since. Certifying without it would check nothing (no
        # .tpn applies), so the submission fails on the server's side, not as BAD FILES.
        raise SubmissionError("the site's .tpn directory (setting tpn_dir) is missing on "
                              "the server; an operator must restore it")
    request = ProcessingRequest(
        observatory=event.observatory, instrument=event.instrument, kind=event.kind,
        files=files, derive_from=derive_from, mappings_dir=mappings_dir,
        work_dir=output, known_sha1s=sha1s, known_names=taken_names(settings, names),
        auto_rename=event.auto_rename, change_level=event.change_level,
        description=event.description, substitutions=settings.substitutions,
        tpn_dir=settings.tpn_dir,
        delete_references=tuple(event.files) if deleting else (),
        collisions=collision_hook(store, settings, sid),  # CRDS's collision warning
        certify_limits=limits, cancel=cancel,
    )
    result = process_submission(request, progress)
    warning = derive_from_warning(store, derive_from)
    if warning:  # CRDS submits anyway, and says so
        progress(f"WARNING: {warning}")
        result.warnings.insert(0, warning)
    return result


def derive_from_warning(store: EventStore, pmap: str) -> str:
    """Why deriving from ``pmap`` is a bad idea ('' when it is fine): it is marked bad, or
    blacklisted because it uses files marked bad (`crds_events.contexts.badfiles`)."""
    row = current_row(store, FILES, (pmap,))
    if row is None or not (row["rejected"] or row["blacklisted"]):
        return ""
    if row["rejected"]:
        why = f"marked bad ({row['reject_reason']})" if row["reject_reason"] else "marked bad"
    else:
        why = "blacklisted: it uses files marked bad"
    return (f"derived from {pmap}, which is {why}; the new rules carry what it holds "
            f"unless this submission replaces the bad files")


def _summary(outcome: Any) -> str:
    lines = list(outcome.errors)
    for message in (outcome.certify or {}).get("messages", []):
        if message.get("level") == "warning":
            keyword = f"{message['keyword']}: " if message.get("keyword") else ""
            lines.append(f"warning: {keyword}{message.get('reason', '')}")
    return "\n".join(lines)


def _filekind_of(name: str) -> str:
    """``ipc`` for ``jwst_miri_ipc_0003.rmap``; '' for imaps and pmaps."""
    stem = name.rsplit(".", 1)[0]
    parts = stem.split("_")
    return parts[2] if name.endswith(".rmap") and len(parts) >= 4 else ""


def outcome_events(event: ev.SubmissionStarted, result: Any, digest: str
                   ) -> tuple[list[ev.FileCertified], ev.Event]:
    """The `FileCertified` events and the outcome event of a processing ``result`` (stored
    as the artifact ``digest``)."""
    sid = event.submission_id
    certified: list[ev.FileCertified] = []
    for outcome in result.files:
        if outcome.kind == "deleted":
            # A delete submission names stored references it takes out of the rules: they
            # are not files of this submission (the catalog keeps them as they are); the
            # result artifact lists them.
            continue
        name = outcome.official_name or outcome.original_name
        certified.append(ev.FileCertified(
            submission_id=sid, name=name, original_name=outcome.original_name,
            sha1=outcome.sha1, size=outcome.size, kind=outcome.kind,
            instrument=outcome.instrument or event.instrument, filekind=outcome.filekind,
            useafter=outcome.useafter,
            status=_CERTIFY_STATUS.get(outcome.status, outcome.status.lower()),
            summary=truncate_text(_summary(outcome)), report_digest=digest,
            original_sha1=outcome.original_sha1 if outcome.original_sha1 != outcome.sha1
            else "",
        ))
    generated = tuple(result.generated_mappings)
    for name in generated:
        path = Path(result.outputs.get(name, ""))
        sha1, size = sha1_file(path) if path.is_file() else ("", 0)
        rules = result.rules_certify.get(name, {})
        rules = rules if isinstance(rules, dict) else {}
        status = rules.get("status", "OK")
        notes = [f"{m.get('level', '')}: {m.get('reason', '')}"
                 for m in rules.get("messages", []) if m.get("level") != "info"]
        certified.append(ev.FileCertified(
            submission_id=sid, name=name, original_name=name, sha1=sha1, size=size,
            kind="mapping", instrument="" if name.endswith(".pmap") else event.instrument,
            filekind=_filekind_of(name), status=_CERTIFY_STATUS.get(status, "ok"),
            summary=truncate_text("\n".join(notes)), report_digest=digest,
        ))
    names = tuple(c.name for c in certified)
    if result.status == "READY":
        outcome_event: ev.Event = ev.SubmissionReady(
            submission_id=sid, files=names, new_context=result.new_context or "",
            generated=generated, result_digest=digest)
    elif result.status == "BAD FILES":
        bad = tuple(o.official_name or o.original_name for o in result.files
                    if o.status == "ERRORS")
        duplicates = tuple(o.official_name or o.original_name for o in result.files
                           if o.duplicate_of)
        reason = truncate_text("; ".join(result.errors) or result.summary)  # all: artifact
        outcome_event = ev.SubmissionRejected(
            submission_id=sid, reason=reason, files=names, bad_files=bad,
            duplicates=duplicates, result_digest=digest)
    else:
        error = truncate_text("; ".join(result.errors) or "processing failed")
        outcome_event = ev.SubmissionFailed(submission_id=sid, error=error, files=names,
                                            result_digest=digest)
    return certified, outcome_event


def _append_outcome(store: EventStore, sid: str, certified: Iterable[ev.FileCertified],
                    outcome: ev.Event, meta: dict, *, recheck_after: int | None = None,
                    started: ev.SubmissionStarted | None = None) -> None:
    """Append the certified files and the outcome in one transaction. With
    ``recheck_after`` (the log position the known files were read at), a READY outcome is
    refused (`_DuplicateRace`) if another submission recorded one of its files since.
    With ``started``: a BAD FILES or FAIL outcome releases the submitter's instrument lock
    in the same transaction (`crds_events.submissions.lockrelease`)."""
    certified = list(certified)
    with store.transaction() as tx:
        if recheck_after is not None and isinstance(outcome, ev.SubmissionReady):
            _recheck_duplicates(tx, sid, certified, recheck_after)
        for event in certified:
            tx.record(event, meta=meta,
                      idempotency_key=f"{sid}:certified:{event.original_name}:{event.name}")
        tx.record(outcome, meta=meta, idempotency_key=f"{sid}:outcome")
        if started is not None:
            release_after_outcome(tx, started, started.user or meta.get("actor") or "",
                                  outcome)


def _recheck_duplicates(tx: Transaction, sid: str, certified: list[ev.FileCertified],
                        after: int) -> None:
    """In the outcome's transaction (so no other writer can slip in between): the files
    recorded by other submissions after ``after`` (an indexed read of a few events), checked
    against this submission's digests."""
    ours = {digest: event.original_name for event in certified if event.kind != "mapping"
            for digest in (event.sha1, event.original_sha1) if digest}
    if not ours:
        return
    for record in tx.read_all(after, types=[ev.FileCertified.type, ev.FileCataloged.type]):
        other = record.event
        if (other.submission_id or "") == sid or getattr(other, "status", "") == "error":
            continue
        for digest in (other.sha1, getattr(other, "original_sha1", "")):
            if digest in ours:
                raise _DuplicateRace(f"{ours[digest]} is bit-identical to {other.name}, "
                                     f"recorded meanwhile")
