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
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from crds_events import events as ev
from crds_events.config import Settings
from crds_events.contexts.pointers import context_pointers
from crds_events.errors import CrdsEventsError
from crds_events.files.checksums import sha1_file
from crds_events.store.artifacts import ArtifactStore
from crds_events.store.filestore import FileStore
from crds_events.store.interface import EventReader, EventStore
from crds_events.submissions.dropbox import uploads_dir, work_dir
from crds_events.submissions.processing import ProcessingRequest, process_submission

__all__ = [
    "OUTCOMES",
    "FINAL",
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


class SubmissionError(CrdsEventsError, RuntimeError):
    """A submission cannot be processed (e.g. its derive-from context is unknown)."""


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


def known_files(store: EventReader) -> tuple[dict[str, str], set[str]]:
    """``(sha1 -> name, names)`` of every file cataloged or certified in a submission that
    is still alive (not rejected, failed or cancelled)."""
    dead: set[str] = set()
    certified: list[ev.FileCertified] = []
    sha1s: dict[str, str] = {}
    names: set[str] = set()
    types = [ev.FileCataloged.type, ev.FileCertified.type, ev.SubmissionRejected.type,
             ev.SubmissionFailed.type, ev.SubmissionCancelled.type]
    for record in store.iter_all(types=types):
        event = record.event
        if isinstance(event, ev.FileCataloged):
            sha1s.setdefault(event.sha1, event.name)
            names.add(event.name)
        elif isinstance(event, ev.FileCertified):
            certified.append(event)
        else:
            dead.add(event.submission_id)
    for event in certified:
        if event.submission_id not in dead and event.status != "error":
            sha1s.setdefault(event.sha1, event.name)
            names.add(event.name)
    return sha1s, names


# --- one submission ------------------------------------------------------------------------


def process(store: EventStore, settings: Settings, submission_id: str) -> ev.Event | None:
    """Process one submission unless it already has an outcome; the outcome event (None:
    no such submission, or decided before)."""
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
        store.record(ev.SubmissionProgress(submission_id=submission_id, message=message),
                     meta=meta, idempotency_key=f"{submission_id}:progress:{n}:{digest}")

    artifacts = ArtifactStore.for_root(settings.root)
    try:
        result = _run_processing(store, settings, event, progress)
    except Exception as exc:  # noqa: BLE001 - recorded as FAIL, with the traceback
        if isinstance(exc, SubmissionError):  # a known cause: one line says it all
            log.warning("submission %s failed: %s", submission_id, exc)
        else:
            log.exception("submission %s failed", submission_id)
        error = f"{type(exc).__name__}: {exc}"
        detail = {"status": "FAILED", "errors": [error], "traceback": traceback.format_exc()}
        digest = artifacts.put_json(detail)
        failed = ev.SubmissionFailed(submission_id=submission_id, error=error,
                                     files=event.files, result_digest=digest)
        _append_outcome(store, submission_id, [], failed, meta)
        return failed
    digest = artifacts.put_json(result.to_dict())
    certified, outcome = outcome_events(event, result, digest)
    _append_outcome(store, submission_id, certified, outcome, meta)
    return outcome


def _run_processing(store: EventStore, settings: Settings, event: ev.SubmissionStarted,
                    progress: Callable[..., None]) -> Any:
    sid = event.submission_id
    mappings_dir = FileStore.from_settings(settings).directory_for("mapping")
    derive_from = resolve_context(store, event.observatory, event.derive_from, mappings_dir)
    uploads = uploads_dir(settings, sid)
    output = work_dir(settings, sid) / "processing"
    shutil.rmtree(output, ignore_errors=True)  # a resumed run starts clean
    sha1s, names = known_files(store)
    files = tuple(uploads / name for name in event.files)
    missing = [p.name for p in files if not p.is_file()]
    if missing:
        raise SubmissionError(f"uploaded copies missing from {uploads}: {missing}")
    request = ProcessingRequest(
        observatory=event.observatory, instrument=event.instrument, kind=event.kind,
        files=files, derive_from=derive_from, mappings_dir=mappings_dir,
        work_dir=output, known_sha1s=sha1s, known_names=frozenset(names),
        auto_rename=event.auto_rename, change_level=event.change_level,
        description=event.description, substitutions=settings.substitutions,
    )
    return process_submission(request, progress)


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
        name = outcome.official_name or outcome.original_name
        certified.append(ev.FileCertified(
            submission_id=sid, name=name, original_name=outcome.original_name,
            sha1=outcome.sha1, size=outcome.size, kind=outcome.kind,
            instrument=outcome.instrument or event.instrument, filekind=outcome.filekind,
            useafter=outcome.useafter,
            status=_CERTIFY_STATUS.get(outcome.status, outcome.status.lower()),
            summary=_summary(outcome), report_digest=digest,
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
            summary="\n".join(notes), report_digest=digest,
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
        reason = "; ".join(result.errors) or result.summary
        outcome_event = ev.SubmissionRejected(
            submission_id=sid, reason=reason, files=names, bad_files=bad,
            duplicates=duplicates, result_digest=digest)
    else:
        error = "; ".join(result.errors) or "processing failed"
        outcome_event = ev.SubmissionFailed(submission_id=sid, error=error, files=names,
                                            result_digest=digest)
    return certified, outcome_event


def _append_outcome(store: EventStore, sid: str, certified: Iterable[ev.FileCertified],
                    outcome: ev.Event, meta: dict) -> None:
    with store.transaction() as tx:
        for event in certified:
            tx.record(event, meta=meta,
                      idempotency_key=f"{sid}:certified:{event.original_name}:{event.name}")
        tx.record(outcome, meta=meta, idempotency_key=f"{sid}:outcome")
