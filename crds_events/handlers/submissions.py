"""The submission pipeline in a running server: SubmissionStarted -> READY / BAD FILES / FAIL.

* `SubmissionStartedHandler` (run by the handler runner, inside its write transaction) only
  hands the submission id to the worker: certifying and generating rules takes seconds to
  minutes and must never hold the log's write lock.
* `SubmissionWorker` (its own thread and log connection) runs
  `crds_events.submissions.processing.process_submission` for each id, turns every progress
  line into a `SubmissionProgress` event, stores the result dict as an artifact, and appends
  `FileCertified` for each file plus the outcome (`SubmissionReady`, `SubmissionRejected`,
  `SubmissionFailed`) in one transaction.

Crash safety: every append carries an idempotency key derived from the submission (and for
progress lines, the line's text), so processing a submission again after a crash appends
nothing twice. On start the worker resumes every submission that has a `SubmissionStarted`
but no outcome in the log (the server was killed mid-processing): it is processed again
from its uploads, which are copies nobody else touches.

`register(server)` wires the handler, the worker and the ingest watcher into a `Server`.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import shutil
import threading
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crds_events import events as ev
from crds_events.config import Settings
from crds_events.handlers import Handler
from crds_events.store.eventlog import SQLiteEventStore, SQLiteTransaction
from crds_events.store.interface import RecordedEvent
from crds_events.watch.ingest import IngestWatcher, uploads_dir, work_dir

if TYPE_CHECKING:
    from crds_events.server.core import Server

__all__ = [
    "OUTCOMES",
    "SubmissionStartedHandler",
    "SubmissionWorker",
    "pending_submissions",
    "resolve_context",
    "register",
]

log = logging.getLogger(__name__)

OUTCOMES = (ev.SubmissionReady, ev.SubmissionRejected, ev.SubmissionFailed)
FINAL = (*OUTCOMES, ev.SubmissionConfirmed, ev.SubmissionForced, ev.SubmissionCancelled)
_FINAL_TYPES = frozenset(cls.type for cls in FINAL)
_CERTIFY_STATUS = {"OK": "ok", "WARNINGS": "warning", "ERRORS": "error"}
_STOP = object()


class SubmissionError(RuntimeError):
    """A submission cannot be processed (e.g. its derive-from context is unknown)."""


def pending_submissions(store: SQLiteEventStore) -> list[str]:
    """Ids of submissions started but without an outcome, oldest first."""
    started: dict[str, None] = {}
    for record in store.iter_all(types=[ev.SubmissionStarted.type, *_FINAL_TYPES]):
        sid = record.data["submission_id"]
        if record.type == ev.SubmissionStarted.type:
            started[sid] = None
        else:
            started.pop(sid, None)
    return list(started)


def context_pointers(store: SQLiteEventStore, observatory: str) -> dict[str, str]:
    """The context pointers (``edit``, ``latest``, ...) as the log has them now."""
    pointers: dict[str, str] = {}
    for record in store.read_stream(ev.context_stream(observatory)):
        if record.type == ev.ContextSet.type:
            event = record.event
            pointers[event.kind] = event.context
    return pointers


def resolve_context(store: SQLiteEventStore, observatory: str, derive_from: str,
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


def known_files(store: SQLiteEventStore) -> tuple[dict[str, str], set[str]]:
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


def _summary(outcome: Any) -> str:
    lines = list(outcome.errors)
    for message in (outcome.certify or {}).get("messages", []):
        if message.get("level") == "warning":
            keyword = f"{message['keyword']}: " if message.get("keyword") else ""
            lines.append(f"warning: {keyword}{message.get('reason', '')}")
    return "\n".join(lines)


class SubmissionStartedHandler(Handler):
    """Hands each started submission to the worker (cheap: the runner's transaction)."""

    name = "submissions:processing"
    consumes = frozenset({ev.SubmissionStarted.type})

    def __init__(self, worker: SubmissionWorker):
        self.worker = worker

    def handle(self, tx: SQLiteTransaction, record: RecordedEvent) -> None:
        self.worker.enqueue(record.event.submission_id)


class SubmissionWorker:
    """Processes submissions off a queue in ``threads`` background threads."""

    def __init__(self, settings: Settings, *, store: SQLiteEventStore | None = None,
                 threads: int = 1):
        self.settings = settings
        self._store = store
        self._own_store = store is None
        self.threads = threads
        self._queue: queue.Queue = queue.Queue()
        self._busy: set[str] = set()
        self._busy_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    @property
    def store(self) -> SQLiteEventStore:
        if self._store is None:
            self._store = SQLiteEventStore(self.settings.db_path)
        return self._store

    @property
    def mappings_dir(self) -> Path:
        from crds_events.store.filestore import FileStore

        return FileStore.from_settings(self.settings).directory_for("mapping")

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        for sid in pending_submissions(self.store):  # killed mid-processing: resume
            self.enqueue(sid)
        for n in range(self.threads):
            thread = threading.Thread(target=self._run, name=f"crds-events-submissions-{n}")
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(120)
        self._threads = []
        if self._own_store and self._store is not None:
            self._store.close()
            self._store = None

    def enqueue(self, submission_id: str) -> None:
        self._queue.put(submission_id)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            with self._busy_lock:
                if item in self._busy:
                    continue
                self._busy.add(item)
            try:
                self.process(item)
            except Exception:  # noqa: BLE001 - one bad submission must not stop the worker
                log.exception("processing submission %s failed", item)
            finally:
                with self._busy_lock:
                    self._busy.discard(item)

    # --- one submission --------------------------------------------------------------------

    def process(self, submission_id: str) -> ev.Event | None:
        """Process one submission unless it already has an outcome; the outcome event."""
        store = self.store
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

        try:
            result = self._run_processing(event, progress)
        except Exception as exc:  # noqa: BLE001 - recorded as FAIL, with the traceback
            if isinstance(exc, SubmissionError):  # a known cause: one line says it all
                log.warning("submission %s failed: %s", submission_id, exc)
            else:
                log.exception("submission %s failed", submission_id)
            error = f"{type(exc).__name__}: {exc}"
            detail = {"status": "FAILED", "errors": [error],
                      "traceback": traceback.format_exc()}
            digest = self._artifacts().put_json(detail)
            failed = ev.SubmissionFailed(submission_id=submission_id, error=error,
                                         files=event.files, result_digest=digest)
            self._append_outcome(submission_id, [], failed, meta, digest)
            return failed
        return self._record_result(event, result, meta)

    def _artifacts(self):
        from crds_events.store.artifacts import ArtifactStore

        return ArtifactStore.for_root(self.settings.root)

    def _run_processing(self, event: ev.SubmissionStarted, progress) -> Any:
        from crds_events.submissions.processing import ProcessingRequest, process_submission

        store = self.store
        sid = event.submission_id
        mappings_dir = self.mappings_dir
        derive_from = resolve_context(store, event.observatory, event.derive_from, mappings_dir)
        uploads = uploads_dir(self.settings, sid)
        output = work_dir(self.settings, sid) / "processing"
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
            description=event.description, substitutions=self.settings.substitutions,
        )
        return process_submission(request, progress)

    def _record_result(self, event: ev.SubmissionStarted, result: Any,
                       meta: dict) -> ev.Event:
        sid = event.submission_id
        data = result.to_dict()
        digest = self._artifacts().put_json(data)
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
            sha1, size = _sha1_size(path) if path.is_file() else ("", 0)
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
        self._append_outcome(sid, certified, outcome_event, meta, digest)
        return outcome_event

    def _append_outcome(self, sid: str, certified: Iterable[ev.FileCertified],
                        outcome: ev.Event, meta: dict, digest: str) -> None:
        with self.store.transaction() as tx:
            for event in certified:
                tx.record(event, meta=meta,
                          idempotency_key=f"{sid}:certified:{event.original_name}:{event.name}")
            tx.record(outcome, meta=meta, idempotency_key=f"{sid}:outcome")


def _sha1_size(path: Path) -> tuple[str, int]:
    digest = hashlib.sha1()
    size = 0
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _filekind_of(name: str) -> str:
    """``ipc`` for ``jwst_miri_ipc_0003.rmap``; '' for imaps and pmaps."""
    stem = name.rsplit(".", 1)[0]
    parts = stem.split("_")
    return parts[2] if name.endswith(".rmap") and len(parts) >= 4 else ""


def register(server: Server, *, settle: float = 0.5, scan_interval: float = 60.0,
             threads: int = 1) -> SubmissionWorker:
    """Wire submissions into ``server`` (before it starts): the handler joins the runner,
    the worker and the ingest watcher become components."""
    if server.runner.running:
        raise RuntimeError("register submissions before the server starts")
    worker = SubmissionWorker(server.settings, threads=threads)
    if SubmissionStartedHandler.name not in {h.name for h in server.runner.handlers}:
        server.runner.handlers.append(SubmissionStartedHandler(worker))
    watcher = IngestWatcher(server.settings, settle=settle, scan_interval=scan_interval)
    server.add_component("submission-worker", worker.start, worker.stop)
    server.add_component("ingest-watcher", watcher.start, watcher.stop)
    server.submission_worker = worker  # type: ignore[attr-defined]
    server.ingest_watcher = watcher  # type: ignore[attr-defined]
    return worker
