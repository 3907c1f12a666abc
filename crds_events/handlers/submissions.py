"""The submission pipeline in a running server: SubmissionStarted -> READY / BAD FILES / FAIL.

* `SubmissionStartedHandler` (run by the handler runner, inside its write transaction) only
  hands the submission id to the worker: certifying and generating rules takes seconds to
  minutes and must never hold the log's write lock.
* `SubmissionWorker` (its own thread(s) and log connection) runs
  `crds_events.submissions.pipeline.process` for each id: processing, progress events, the
  outcome. On start it resumes every submission that has a `SubmissionStarted` but no
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
from crds_events.store.eventlog import SQLiteEventStore
from crds_events.store.handler import Handler
from crds_events.store.interface import RecordedEvent, Transaction
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
    """Processes submissions off a queue in ``threads`` background threads."""

    thread_name = "crds-events-submissions-{n}"
    stop_timeout = 120.0

    def __init__(self, settings: Settings, *, store: SQLiteEventStore | None = None,
                 threads: int = 1):
        super().__init__(settings.db_path, store=store, threads=threads)
        self.settings = settings
        self._busy: set[str] = set()
        self._busy_lock = threading.Lock()

    # --- the queue -------------------------------------------------------------------------

    def resume(self) -> None:
        for sid in pending_submissions(self.store):  # killed mid-processing: resume
            self.enqueue(sid)

    def enqueue(self, submission_id: str) -> None:
        self.put(submission_id)

    def handle(self, item: str) -> None:
        with self._busy_lock:
            if item in self._busy:
                return
            self._busy.add(item)
        try:
            self.process(item)
        finally:
            with self._busy_lock:
                self._busy.discard(item)

    def describe(self, item: str) -> str:
        return f"processing submission {item}"

    # --- one submission --------------------------------------------------------------------

    def process(self, submission_id: str) -> ev.Event | None:
        """Process one submission unless it already has an outcome; the outcome event."""
        return process(self.store, self.settings, submission_id)
