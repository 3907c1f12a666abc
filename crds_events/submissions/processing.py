"""Process one submission: from uploaded files to certified, named files and new rules.

`process_submission(request, progress)` is a library call with no events, watchers or
e-mail in it: the submission handler runs it in a worker thread, turns each progress line
into a `SubmissionProgress` event and the result into `SubmissionReady` /
`SubmissionRejected` / `SubmissionFailed` (storing `result.to_dict()` as an artifact).

The steps, each announced through `progress(">> ...")`:

1. **duplicates**: a file bit-identical (sha1) to a known file, or to another file of the
   same submission, is rejected naming the earlier file;
2. **certify** every file against the derive-from (comparison) context; work out each
   reference's type and the rmap of that type in the context;
3. **official names**: copies in the work directory (the upload is never renamed):
   JWST/Roman ``<obs>_<instr>_<type>_<NNNN>.<ext>``, HST time-based unique names (with
   FILENAME/ROOTNAME/HISTORY updated, as CRDS's uniqname does; a GEIS header and its data
   file together, `geis_pairs`), mappings the next name of their series; names known
   before or given earlier in the submission are never reused;
4. **rules**: references are inserted into copies of their rmaps (or deleted from them),
   each written under the next rmap name; hand-edited rmaps are used as they are;
5. **new context**: new imaps and a new pmap (`rules.newcontext`);
6. **certify the new rules** against the derive-from context;
7. **collisions**: other pending submissions derived from a replaced mapping (rmap, imap or
   pmap; warnings, from the caller's `collisions` hook);
8. **differences**: logical (`crds diff` tuples) and text (context diff) of old vs new.

Outcome: READY, BAD FILES (duplicates, certify errors, files the context has no rules for)
or FAILED (a step could not complete; the message says which and why). Nothing here writes
outside `request.work_dir`; the caller moves `result.outputs` into the file store on
confirm. Only a malformed request (a programming error) raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import traceback
from collections.abc import Callable
from pathlib import Path

from crds_events.certify import certify_files, is_mapping
from crds_events.errors import CrdsEventsError
from crds_events.files.checksums import sha1_file
from crds_events.files.errors import ReferenceFileError
from crds_events.files.headers import read_header
from crds_events.files.reftypes import ReferenceType, reference_type
from crds_events.refactoring.diff import context_diff, format_diff
from crds_events.refactoring.newcontext import new_context
from crds_events.refactoring.refactor import delete_references, insert_references
from crds_events.rules.canonical import rewrite_text
from crds_events.rules.checksum import read_mapping_text
from crds_events.rules.context import MappingStore, PipelineContext
from crds_events.rules.diff import MappingTree, diff_action, mapping_diffs
from crds_events.rules.index import ReferenceIndex
from crds_events.rules.naming import NamingError, parse_mapping_name
from crds_events.rules.parse import parse_mapping
from crds_events.rules.substitutions import Substitutions, load_substitutions
from crds_events.submissions import geis_pairs
from crds_events.submissions.contained import certify_contained
from crds_events.submissions.official_names import NameBook
from crds_events.submissions.results import (
    BAD_FILES,
    FAILED,
    READY,
    FileOutcome,
    ProcessingRequest,
    ProcessingResult,
    SubmissionKind,
)

__all__ = [
    "READY", "BAD_FILES", "FAILED", "FileOutcome", "ProcessingRequest", "ProcessingResult",
    "SubmissionKind", "process_submission",
]

SERIAL_OBSERVATORIES = ("jwst", "roman")


class _Stop(CrdsEventsError):
    """Processing ends here; the result already says why."""


def process_submission(request: ProcessingRequest,
                       progress: Callable[[str], None] | None = None) -> ProcessingResult:
    """Run the processing steps for `request`; never raises for bad files or a failing step
    (status FAILED with the reason), only for a malformed request (ValueError)."""
    kind = _validate(request)
    run = _Run(request, kind, progress)
    with contextlib.suppress(_Stop):  # the result says why it stopped
        run.step("processing", run.execute)
    return run.result


def _validate(request: ProcessingRequest) -> SubmissionKind:
    kind = SubmissionKind.parse(request.kind)
    if not request.observatory or not request.instrument:
        raise ValueError("a processing request needs an observatory and an instrument")
    if kind is SubmissionKind.DELETE:
        if not request.delete_references:
            raise ValueError("a delete submission needs delete_references")
    elif not request.files:
        raise ValueError(f"a {kind.value} submission needs files")
    if kind is not SubmissionKind.REFERENCES and not request.derive_from:
        raise ValueError(f"a {kind.value} submission needs a derive-from context")
    if not str(request.derive_from).endswith(".pmap") and request.derive_from:
        raise ValueError(f"derive_from must name a .pmap, not {request.derive_from!r}")
    return kind


class _Run:
    """One processing run: the request, the result being built, the names handed out."""

    def __init__(self, request: ProcessingRequest, kind: SubmissionKind,
                 progress: Callable[[str], None] | None) -> None:
        self.request = request
        self.kind = kind
        self._progress = progress
        self.observatory = request.observatory.lower()
        self.instrument = request.instrument.lower()
        self.mappings_dir = Path(request.mappings_dir)
        self.work = Path(request.work_dir)
        self.ref_dir = self.work / "references"
        self.map_dir = self.work / "mappings"
        self.pmap_path = self.mappings_dir / str(request.derive_from)
        self.result = ProcessingResult(kind=kind.value, derived_from=str(request.derive_from))
        self.uploads: list[tuple[Path, FileOutcome]] = []
        self.companions: geis_pairs.Companions = {}  # GEIS data files, beside their headers
        self.names: NameBook | None = None
        self._pipeline: PipelineContext | None = None
        self._substitutions: Substitutions | None = None

    # -- reporting

    def say(self, text: str) -> None:
        line = text if text.startswith(">>") else f">> {text}"
        self.result.messages.append(line)
        if self._progress is not None:
            try:
                self._progress(line)
            except Exception as exc:  # a lost progress line must not lose the submission
                self.result.warnings.append(f"progress report failed: {type(exc).__name__}: "
                                            f"{exc}")

    def stop(self, status: str, error: str | None = None) -> None:
        self.result.status = status
        if error:
            self.result.errors.append(error)
        self.say(f"{status}: {error}" if error else status)
        raise _Stop

    def step(self, name: str, action: Callable[[], None]) -> None:
        """Run one step; an exception in it fails the submission, saying where and why."""
        try:
            action()
        except _Stop:
            raise
        except Exception as exc:  # a step must not crash the handler: record and stop
            self.result.traceback = traceback.format_exc()
            self.stop(FAILED, f"{name} failed: {type(exc).__name__}: {exc}")

    # -- the steps

    def execute(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.step("preparing", self.prepare)
        if self.kind is not SubmissionKind.DELETE:
            self.step("checking for known files", self.check_duplicates)
            self.step("certifying files", self.certify_uploads)
            self.stop_if_bad()
            self.step("assigning official names", self.assign_names)
            self.stop_if_bad()
        if self.kind is SubmissionKind.REFERENCES:
            self.finish()
            return
        self.make_rules()

    def make_rules(self) -> None:
        """The rules steps, from the files' rmaps to READY (a rebase runs them again)."""
        updates: list[Path] = []
        self.step("generating rules", lambda: updates.extend(self.new_rmaps()))
        self.stop_if_bad()
        self.step("generating the new context", lambda: self.make_context(updates))
        self.step("certifying the new rules", self.certify_rules)
        self.step("checking collisions", self.check_collisions)
        self.step("computing differences", self.compute_diffs)
        self.finish()

    def finish(self) -> None:
        self.result.status = READY
        self.say(f"READY: {self.result.summary}")

    def stop_if_bad(self) -> None:
        bad = [f for f in self.result.files if f.status == "ERRORS"]
        if bad:
            for outcome in bad:
                for text in outcome.errors:
                    self.result.errors.append(f"{outcome.original_name}: {text}")
            self.stop(BAD_FILES, f"{len(bad)} of {len(self.result.files)} file(s) have errors")

    def prepare(self) -> None:
        request = self.request
        # A rerun (after a crash) starts from a clean work directory: stale copies from the
        # first run would otherwise block the names it gives again.
        for directory in (self.ref_dir, self.map_dir):
            shutil.rmtree(directory, ignore_errors=True)
        taken = set(request.known_names)
        if self.mappings_dir.is_dir():
            taken.update(p.name for p in self.mappings_dir.iterdir())
        self.names = NameBook(taken, request.clock)
        subs = request.substitutions
        self._substitutions = load_substitutions(subs) if isinstance(subs, (str, os.PathLike)) \
            else subs
        for path in request.files:
            path = Path(path)
            outcome = FileOutcome(original_name=path.name,
                                  kind="mapping" if is_mapping(path) else "reference")
            self.uploads.append((path, outcome))
            self.result.files.append(outcome)
        self.companions = geis_pairs.split_pairs(self.uploads, self.kind)
        if request.derive_from and not self.pmap_path.is_file():
            raise FileNotFoundError(f"derive-from context {request.derive_from} is not in "
                                    f"{self.mappings_dir}")

    def pipeline(self) -> PipelineContext:
        if self._pipeline is None:
            store = MappingStore(self.mappings_dir)
            self._pipeline = PipelineContext(store.document(self.pmap_path.name), store)
        return self._pipeline

    def check_duplicates(self) -> None:
        self.say("Checking for files already known (sha1)")
        seen: dict[str, str] = {}
        for path, outcome in [*self.uploads, *self.companions.values()]:
            outcome.original_sha1 = outcome.sha1 = sha1_file(path)[0]
            outcome.size = path.stat().st_size
            if self.kind is SubmissionKind.ADD_EXISTING:
                if outcome.sha1 not in self.request.known_sha1s:
                    self.result.warnings.append(f"{outcome.original_name} is not a known file")
                continue
            earlier = self.request.known_sha1s.get(outcome.sha1) or seen.get(outcome.sha1)
            if earlier:
                outcome.duplicate_of = earlier
                outcome.error(f"bit-identical (sha1 {outcome.sha1}) to {earlier}, which is "
                              "already known; a file may be delivered only once")
                self.say(f"{outcome.original_name} duplicates {earlier}")
            else:
                seen[outcome.sha1] = outcome.original_name

    def certify_uploads(self) -> None:
        request = self.request
        context = self.pmap_path if request.derive_from else None
        pending = [(path, outcome) for path, outcome in self.uploads if not outcome.duplicate_of]
        for path, outcome in pending:
            self.say(f"Certifying {outcome.original_name}"
                     + (f" against {context.name}" if context else ""))
            # In a child process under time and memory limits: an upload is untrusted.
            found = certify_contained(path, request.certify_limits,
                                      name=outcome.original_name, cancel=request.cancel,
                                      context=context,
                                      comparison_context=context,
                                      mappings_dir=self.mappings_dir,
                                      substitutions=_path_or_none(request.substitutions),
                                      tpn_dir=request.tpn_dir)
            outcome.certify = found.to_dict()
            outcome.certify["file"] = outcome.original_name
            outcome.status = found.status
            for message in found.errors:
                outcome.errors.append(f"{message.keyword + ': ' if message.keyword else ''}"
                                      f"{message.reason}")
            for message in found.warnings:
                self.result.warnings.append(f"{outcome.original_name}: {message.reason}")
            self.say(f"{outcome.original_name}: {found.status}")
            if any(message.keyword == "limits" for message in found.errors):
                continue  # past a limit: reading it again here would cost the same
            self.classify(path, outcome)
        geis_pairs.check_pairs(self.uploads, self.companions)

    def classify(self, path: Path, outcome: FileOutcome) -> None:
        """The file's instrument/type, checked against the submission; its rmap."""
        wants_mappings = self.kind is SubmissionKind.MAPPINGS
        if wants_mappings != (outcome.kind == "mapping"):
            outcome.error("a mapping cannot be submitted with references" if not wants_mappings
                          else "only rules (.rmap) files can be submitted as mappings")
            return
        if outcome.kind == "mapping":
            self.classify_mapping(path, outcome)
            return
        try:
            header = read_header(path)
            kind = reference_type(path, header, self.observatory)
        except ReferenceFileError as exc:
            if outcome.status != "ERRORS":
                outcome.error(f"cannot tell the reference type: {exc.reason}")
            return
        outcome.instrument, outcome.filekind = kind.instrument, kind.filekind
        outcome.useafter = str(header.get("META.USEAFTER", header.get("USEAFTER", "")))
        self._check_instrument(outcome, kind.observatory, kind.instrument)
        if outcome.status == "ERRORS" or not self.request.derive_from:
            return
        try:
            rmap = self.pipeline().imap(kind.instrument).rmap(kind.filekind)
        except KeyError:
            rmap = None
        if not isinstance(rmap, ReferenceIndex):
            if self.kind is not SubmissionKind.REFERENCES:
                outcome.error(f"{self.pmap_path.name} has no rules for "
                              f"{kind.instrument.upper()} {kind.filekind.upper()}"
                              + (f" ({rmap})" if rmap else "")
                              + "; submit an rmap for this type first")
            return
        outcome.rmap = rmap.name

    def classify_mapping(self, path: Path, outcome: FileOutcome) -> None:
        try:
            parsed = parse_mapping(read_mapping_text(path), path.name)
        except Exception as exc:  # certify has reported the syntax error
            if outcome.status != "ERRORS":
                outcome.error(f"cannot read mapping: {exc}")
            return
        header = {str(k).lower(): v for k, v in parsed.header.items()}
        if str(header.get("mapping", "")).upper() != "REFERENCE" or path.suffix != ".rmap":
            outcome.error("only rules (.rmap) files can be submitted as mappings; new imaps "
                          "and the pmap are generated")
            return
        outcome.instrument = str(header.get("instrument", "")).lower()
        outcome.filekind = str(header.get("filekind", "")).lower()
        self._check_instrument(outcome, str(header.get("observatory", "")).lower(),
                               outcome.instrument)
        try:
            rmap = self.pipeline().imap(outcome.instrument).rmap(outcome.filekind)
        except KeyError:
            rmap = None
        if isinstance(rmap, ReferenceIndex):
            outcome.rmap = rmap.name

    def _check_instrument(self, outcome: FileOutcome, observatory: str, instrument: str) -> None:
        if observatory and observatory != self.observatory:
            outcome.error(f"file is for {observatory.upper()}, the server for "
                          f"{self.observatory.upper()}")
        elif instrument != self.instrument:
            outcome.error(f"file is for instrument {instrument.upper()} but the submission "
                          f"is for {self.instrument.upper()}")

    # -- naming

    def assign_names(self) -> None:
        if self.kind is SubmissionKind.ADD_EXISTING:
            for path, outcome in self.uploads:  # already in the store under their names
                outcome.official_name, outcome.path = path.name, str(path)
            return
        self.say("Assigning official names")
        self.ref_dir.mkdir(parents=True, exist_ok=True)
        self.map_dir.mkdir(parents=True, exist_ok=True)
        for path, outcome in self.uploads:
            try:
                if outcome.kind == "mapping":
                    self.name_mapping(path, outcome)
                else:
                    self.name_reference(path, outcome)
            except (ReferenceFileError, NamingError, FileExistsError) as exc:
                outcome.error(f"cannot assign an official name: {exc}")
                continue
            official = Path(outcome.path)
            outcome.sha1 = sha1_file(official)[0]
            outcome.size = official.stat().st_size
            self.result.outputs[outcome.official_name] = str(official)
            self.say(f"{outcome.original_name} -> {outcome.official_name}")
        for line in geis_pairs.name_data_files(self.uploads, self.companions, self.names,
                                               self.ref_dir, self.result.outputs):
            self.say(line)

    def _keep_name(self, path: Path) -> str:
        assert self.names is not None
        if path.name in self.names:
            raise FileExistsError(f"{path.name} is already taken and auto-rename is off")
        return self.names.take(path.name)

    def name_reference(self, path: Path, outcome: FileOutcome) -> None:
        assert self.names is not None
        ext = path.suffix.lower()
        if not self.request.auto_rename:
            name = self._keep_name(path)
            target = self.ref_dir / name
            shutil.copyfile(path, target)
        elif self.observatory in SERIAL_OBSERVATORIES:
            kind = ReferenceType(self.observatory, outcome.instrument, outcome.filekind,
                                 outcome.filekind)
            name = self.names.serial_name(kind, ext)
            target = self.ref_dir / name
            shutil.copyfile(path, target)
        else:
            name, when = self.names.hst_name(path)
            target = geis_pairs.rename_hst(path, when, self.ref_dir)
        outcome.official_name, outcome.path = target.name, str(target)

    def name_mapping(self, path: Path, outcome: FileOutcome) -> None:
        """A hand-edited rmap under the next name of its series, its header's `name` (and
        `derived_from`: the rmap it replaces in the context) set, checksum rewritten."""
        assert self.names is not None
        if self.request.auto_rename:
            series = f"{self.observatory}_{outcome.instrument}_{outcome.filekind}.rmap"
            name = self.names.mapping_name(outcome.rmap or series)
        else:
            name = self._keep_name(path)
            parse_mapping_name(name)
        parsed = parse_mapping(read_mapping_text(path), path.name)
        header = dict(parsed.header)
        header["name"] = name
        if outcome.rmap:
            header["derived_from"] = outcome.rmap
        text = rewrite_text(dataclasses.replace(parsed, header=header, filename=name))
        target = self.map_dir / name
        target.write_text(text, encoding="utf-8")
        outcome.official_name, outcome.path = name, str(target)
        if outcome.rmap:
            self.result.replaced[outcome.rmap] = name

    # -- rules

    def new_rmaps(self) -> list[Path]:
        """The rmaps the new context takes: refactored copies, or the submitted rmaps."""
        self.map_dir.mkdir(parents=True, exist_ok=True)
        if self.kind is SubmissionKind.MAPPINGS:
            return [Path(outcome.path) for _, outcome in self.uploads]
        if self.kind is SubmissionKind.DELETE:
            return self.delete_from_rmaps()
        groups: dict[str, list[str]] = {}
        for _, outcome in self.uploads:
            groups.setdefault(outcome.rmap, []).append(outcome.path)
        made = []
        for old in sorted(groups):
            new = self._next_name(old)
            self.say(f"Inserting {', '.join(os.path.basename(p) for p in groups[old])} into "
                     f"{old} producing {new}")
            done = insert_references(self.mappings_dir / old, self.map_dir / new, groups[old],
                                     substitutions=self._substitutions)
            made.append(self._refactored(old, new, done))
        return made

    def delete_from_rmaps(self) -> list[Path]:
        wanted = [os.path.basename(name) for name in self.request.delete_references]
        imap = self.pipeline().imap(self.instrument)
        holders: dict[str, list[str]] = {}
        rmaps = imap.rmaps()
        for name in wanted:
            found = [(filekind, rmap.name) for filekind, rmap in sorted(rmaps.items())
                     if name in rmap.reference_names()]
            outcome = FileOutcome(original_name=name, official_name=name, kind="deleted",
                                  instrument=self.instrument)
            self.result.files.append(outcome)
            if not found:
                outcome.error(f"{name} is not in the {self.instrument.upper()} rules of "
                              f"{self.pmap_path.name}")
            for filekind, rmap_name in found:
                holders.setdefault(rmap_name, []).append(name)
                outcome.rmap, outcome.filekind = rmap_name, filekind
        self.stop_if_bad()
        made = []
        for old in sorted(holders):
            new = self._next_name(old)
            self.say(f"Deleting {', '.join(holders[old])} from {old} producing {new}")
            done = delete_references(self.mappings_dir / old, self.map_dir / new, holders[old])
            made.append(self._refactored(old, new, done))
        return made

    def _next_name(self, old: str) -> str:
        assert self.names is not None
        return self.names.mapping_name(old)

    def _refactored(self, old: str, new: str, done) -> Path:
        """The refactored rmap named `new` in its header, with a fresh checksum."""
        self.result.messages.extend(f"   {level}: {text}" for level, text in done.log.messages)
        if done.log.errors or done.text is None:
            problems = "; ".join(text for level, text in done.log.messages if level == "ERROR")
            raise RuntimeError(f"cannot rewrite {old}: {problems}")
        parsed = parse_mapping(done.text, new)
        header = dict(parsed.header)
        header["name"] = new
        text = rewrite_text(dataclasses.replace(parsed, header=header))
        path = self.map_dir / new
        path.write_text(text, encoding="utf-8")
        self.result.replaced[old] = new
        self._generated(new, path, text)
        return path

    def _generated(self, name: str, path: Path, text: str) -> None:
        self.result.generated_mappings[name] = text
        self.result.outputs[name] = str(path)

    def make_context(self, updates: list[Path]) -> None:
        """New imaps and pmap. new_context names them past the names in its directories;
        placeholders for taken names that are not in the store keep it from reusing them."""
        assert self.names is not None
        self.say(f"Generating new context from {self.pmap_path.name}")
        scratch = self.work / ".newcontext"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        try:
            for name in self.names.taken:
                if name.endswith((".pmap", ".imap")) and not (self.mappings_dir / name).exists():
                    (scratch / name).touch()
            made = new_context(self.pmap_path, [str(p) for p in updates], output_dir=scratch,
                               mappings_dir=self.mappings_dir)
            for old, new in sorted(made.names.items()):
                self.names.take(new)
                target = self.map_dir / new
                shutil.move(made.paths[new], target)
                self.result.replaced[old] = new
                self._generated(new, target, made.texts[new])
                self.say(f"{old} -> {new}")
            self.result.new_context = made.new_pmap
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def certify_rules(self) -> None:
        assert self.result.new_context is not None
        names = list(self.result.replaced.values())
        self.say(f"Certifying the new rules: {', '.join(names)}")
        paths = [self.map_dir / name for name in names]
        found = certify_files(paths, context=self.map_dir / self.result.new_context,
                              comparison_context=self.pmap_path, mappings_dir=self.mappings_dir,
                              tpn_dir=self.request.tpn_dir)
        bad = []
        seen: set[str] = set()
        for name, item in zip(names, found, strict=True):
            self.result.rules_certify[name] = item.to_dict()
            for message in item.warnings:  # a rule change shows in rmap, imap and pmap
                if message.reason not in seen:
                    seen.add(message.reason)
                    self.result.warnings.append(f"{name}: {message.reason}")
            if item.errors:
                bad.append(f"{name}: " + "; ".join(m.reason for m in item.errors))
        if bad:
            raise RuntimeError("the generated rules do not certify: " + " | ".join(bad))

    def check_collisions(self) -> None:
        hook = self.request.collisions
        if hook is None:
            return
        # As CRDS's collision check: every replaced mapping (rmap, imap, pmap) another
        # pending submission also derives from; one warning per other submission, at the
        # most specific mapping they share (sharing an rmap implies its imap and pmap).
        warned: set[str] = set()
        order = {".rmap": 0, ".imap": 1, ".pmap": 2}
        for old, new in sorted(self.result.replaced.items(),
                               key=lambda item: (order.get(Path(item[0]).suffix, 3), item)):
            others = list(hook(old))
            if others:
                self.result.collisions[old] = others
            fresh = [other for other in others if other not in warned]
            if fresh:
                warned.update(fresh)
                warning = (f"{old} was also the base of submission(s) {', '.join(fresh)}; "
                           f"{new} does not include their changes (whichever is confirmed "
                           f"later is rebased onto the other)")
                self.result.warnings.append(warning)
                self.say(f"WARNING: {warning}")

    def compute_diffs(self) -> None:
        assert self.result.new_context is not None
        self.say("Computing differences")
        old = MappingTree.load(self.pmap_path, name=self.pmap_path.name,
                               mappings_dir=[self.mappings_dir])
        new_path = self.map_dir / self.result.new_context
        new = MappingTree.load(new_path, name=new_path.name,
                               mappings_dir=[self.map_dir, self.mappings_dir])
        for diff in mapping_diffs(old, new):
            self.result.diffs.append({"text": format_diff(diff), "action": diff_action(diff),
                                      "tuple": _json_safe(diff)})
        for old_name, new_name in sorted(self.result.replaced.items()):
            old_text = _read_or_empty(self.mappings_dir / old_name)
            new_text = _read_or_empty(self.map_dir / new_name)
            self.result.text_diffs[new_name] = context_diff(
                old_text.splitlines(True), new_text.splitlines(True), old_name, new_name)


def _path_or_none(value: object) -> str | os.PathLike | None:
    return value if isinstance(value, (str, os.PathLike)) else None


def _read_or_empty(path: Path) -> str:
    return read_mapping_text(path) if path.is_file() else ""


def _json_safe(value: object) -> object:
    if isinstance(value, (tuple, list)):
        return [_json_safe(item) for item in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)

