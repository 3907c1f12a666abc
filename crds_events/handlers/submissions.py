"""The submission pipeline in a running server: SubmissionStarted -> READY / BAD FILES / FAIL.

* `SubmissionStartedHandler` (run by the handler runner, inside its write transaction) only
  hands the submission id to the worker: certifying and generating rules takes seconds to
  minutes and must never hold the log's write lock.
* `SubmissionWorker` (its own threads and log connection) runs
  `crds_events.submissions.pipeline.process` for each id: processing, progress events, the
  outcome; instruments in parallel, one submission at a time per instrument. On start it resumes every submission that has a `SubmissionStarted` but no
  outcome in the log (the server was killed mid-processing); the pipeline's idempotency
  keys make a second run append nothing twice.

The server's ``submissions`` part (`crds_events.server.parts`) runs the handler, the worker
and the ingest watcher.
"""

from __future__ import annotations

import logging
import threading

from crds_events import events as ev
from crds_events.config import Settings
from crds_events.handlers.worker import QueueWorker
from crds_events.store import EventStore, log_target
from crds_events.store.handler import Handler
from crds_events.store.interface import RecordedEvent, Transaction
from crds_events.submissions.contained import CertifyInterrupted, CertifyLimits, stop_all
from crds_events.submissions.pipeline import pending_submissions, process

__all__ = ["SubmissionStartedHandler", "SubmissionWorker"]

log = logging.getLogger(__name__)


class SubmissionStartedHandler(Handler):
    """Hands each started submission to the worker (cheap: the runner's transaction)."""

    name = "submissions:processing"
    consumes = frozenset({ev.SubmissionStarted.type})

    def __init__(self, worker: SubmissionWorker):
        self.worker = worker

    def handle(self, tx: Transaction, record: RecordedEvent) -> None:
        self.worker.enqueue(record.event.submission_id)


class SubmissionWorker(QueueWorker):
    """Processes submissions off a queue in ``threads`` background threads.

    Submissions of different instruments run in parallel (one user's stuck submission
    never blocks another's); those of one instrument run one after the other, in the order
    they came (a second one waits in that instrument's line, not in a thread).

    Certify of each upload runs in a child process under ``certify_limits``; `stop` kills
    those children first, so the server stops in seconds whatever is being certified (the
    interrupted submissions stay pending and resume at the next start).
    """

    thread_name = "crds-events-submissions-{n}"
    # Certify children are killed on stop, and the other steps take seconds: stopping
    # never waits long (SIGTERM must stop the server within 10 s).
    stop_timeout = 5.0

    def __init__(self, settings: Settings, *, store: EventStore | None = None,
                 threads: int = 4, certify_limits: CertifyLimits | None = None):
        super().__init__(log_target(settings), store=store, threads=threads)
        self.settings = settings
        self.certify_limits = certify_limits
        self._cancel = threading.Event()
        self._busy: set[str] = set()
        self._lines: dict[str, list[str]] = {}  # instrument -> submissions waiting for it
        self._busy_lock = threading.Lock()

    # --- the queue -------------------------------------------------------------------------

    def start(self) -> None:
        self._cancel = threading.Event()  # a stopped worker can be started again
        super().start()

    def stop(self) -> None:
        stop_all(self._cancel)  # sets the event: no new certify, running ones killed
        super().stop()

    def resume(self) -> None:
        for sid in pending_submissions(self.store):  # killed mid-processing: resume
            self.enqueue(sid)

    def enqueue(self, submission_id: str) -> None:
        self.put(submission_id)

    def _instrument(self, submission_id: str) -> str:
        for record in self.store.read_stream(ev.submission_stream(submission_id), limit=1):
            return str(record.data.get("instrument") or "")
        return ""

    def handle(self, item: str) -> None:
        line = self._instrument(item)
        with self._busy_lock:
            if item in self._busy or any(item in queued for queued in self._lines.values()):
                return
            if line in self._lines:  # that instrument is being processed: wait in line
                self._lines[line].append(item)
                return
            self._lines[line] = []
            self._busy.add(item)
        try:
            while item is not None:
                if self._cancel.is_set():
                    return  # stopping: what is left stays pending for the next start
                try:
                    self.process(item)
                except CertifyInterrupted:
                    log.info("submission %s interrupted by the stop; resumes at the next "
                             "start", item)
                    return
                except Exception:  # noqa: BLE001 - one bad item must not stop its line
                    log.exception("%s failed", self.describe(item))
                with self._busy_lock:
                    self._busy.discard(item)
                    item = self._lines[line].pop(0) if self._lines[line] else None
                    if item is not None:
                        self._busy.add(item)
        finally:
            with self._busy_lock:
                if item is not None:
                    self._busy.discard(item)
                self._lines.pop(line, None)

    def describe(self, item: str) -> str:
        return f"processing submission {item}"

    # --- one submission --------------------------------------------------------------------

    def process(self, submission_id: str) -> ev.Event | None:
        """Process one submission unless it already has an outcome; the outcome event."""
        return process(self.store, self.settings, submission_id,
                       limits=self.certify_limits, cancel=self._cancel)
