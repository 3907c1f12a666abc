"""Delivery in a running server: SubmissionConfirmed/Forced -> ``.cat`` -> archive states.

* `DeliveryRequestHandler` (in the runner's write transaction) makes sure every confirmed or
  forced submission has its delivery name (`crds_events.delivery.publish.allocate`: the review
  normally allocated it in the confirm's own transaction, so this only finds it again;
  a confirm recorded without one, e.g. by older code, gets it here) and hands the name to
  the worker. Nothing slow happens in the transaction.
  A redelivery (`DeliveryRedelivered`, `crds_events.delivery.redeliver`) is requested in
  its own transaction; the handler only hands its new name to the worker.
* `DeliveryWorker` (its own thread and connection) publishes each delivery
  (`crds_events.delivery.publish.publish`: links, ``.cat`` written last, `DeliveryCreated`) and then
  asks the watcher to look at it. On start, and every ``resume_interval`` seconds, it
  publishes every delivery requested but not created (killed mid-publish, or enqueued
  before the handler's transaction committed).
* `crds_events.watch.delivery.DeliveryWatcher` turns the archive's renames into events.

The server's ``delivery`` part (`crds_events.server.parts`) runs all three, the worker
telling the watcher about each delivery it creates.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable

from crds_events import events as ev
from crds_events.config import Settings
from crds_events.delivery.publish import DeliveryError, allocate, pending_deliveries, publish_many
from crds_events.handlers.worker import STOP, QueueWorker
from crds_events.store import EventStore, log_target
from crds_events.store.handler import Handler
from crds_events.store.interface import RecordedEvent, Transaction, caused_by

__all__ = ["DeliveryRequestHandler", "DeliveryWorker"]

log = logging.getLogger(__name__)

BATCH = 200  # deliveries published per fsync round and transaction


class DeliveryWorker(QueueWorker):
    """Publishes deliveries off a queue in one background thread."""

    thread_name = "crds-events-delivery-worker"
    stop_timeout = 120.0

    def __init__(self, settings: Settings, *, store: EventStore | None = None,
                 resume_interval: float | None = 30.0,
                 on_created: Callable[[str], None] | None = None):
        super().__init__(log_target(settings), store=store)
        self.settings = settings
        self.resume_interval = resume_interval or None
        self.on_created = on_created
        self.failures: dict[str, str] = {}  # delivery -> last error (for tests and the CLI)

    def enqueue(self, name: str, position: int = 0) -> None:
        """Publish ``name`` soon; ``position``: the log position its request is at (the
        worker waits until it is committed: the handler enqueues inside its transaction)."""
        self.put((name, position))

    def publish(self, names: list[str]) -> dict[str, ev.DeliveryCreated | DeliveryError | None]:
        """Publish deliveries now (idempotent); see `crds_events.delivery.publish.publish_many`."""
        results = publish_many(self.settings, self.store, names)
        for name, result in results.items():
            if isinstance(result, DeliveryError):
                self.failures[name] = str(result)
                log.error("%s", result)
            elif result is not None:
                self.failures.pop(name, None)
                if self.on_created is not None:
                    self.on_created(name)
        return results

    def run(self) -> None:
        next_resume = time.monotonic()  # resume at start-up
        retry: dict[str, int] = {}  # not yet visible in the log: look again a few times
        while True:
            now = time.monotonic()
            if next_resume is not None and now >= next_resume:
                for name in pending_deliveries(self.store):
                    self.enqueue(name)
                next_resume = now + self.resume_interval if self.resume_interval else None
            timeout = 0.1 if retry else None
            if next_resume is not None:
                wait = max(0.0, next_resume - time.monotonic())
                timeout = wait if timeout is None else min(timeout, wait)
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                for name in list(retry):
                    self.enqueue(name)
                continue
            batch: dict[str, int] = {}  # name -> position of its request
            waited = False
            while True:
                # A burst becomes one batch: one fsync round, one transaction.
                while item is not None and len(batch) < BATCH:
                    if item is STOP:
                        return
                    batch[item[0]] = max(batch.get(item[0], 0), item[1])
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        item = None
                if item is not None:
                    self._queue.put(item)
                    item = None
                position = max(batch.values())
                if waited or not position or self.store.head() >= position:
                    break
                # The handler enqueues inside its transaction: wait for the commit (more of
                # the burst arrives meanwhile, then joins this batch).
                self.store.wait_for(position, timeout=10.0)
                waited = True
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = None
            try:
                results = self.publish(list(batch))
            except Exception:  # noqa: BLE001 - the resume pass retries them
                log.exception("publishing deliveries %s failed", ", ".join(list(batch)[:5]))
                continue
            for name, result in results.items():
                if result is None:  # the handler's transaction has not committed yet
                    retry[name] = retry.get(name, 0) + 1
                    if retry[name] > 50:
                        retry.pop(name)
                else:
                    retry.pop(name, None)


class DeliveryRequestHandler(Handler):
    """Allocates (or finds) the delivery of each confirmed or forced submission."""

    name = "delivery:request"
    consumes = frozenset({ev.SubmissionConfirmed.type, ev.SubmissionForced.type,
                          ev.DeliveryRedelivered.type})

    def __init__(self, settings: Settings, worker: DeliveryWorker | None = None):
        self.settings = settings
        self.worker = worker

    def handle(self, tx: Transaction, record: RecordedEvent) -> None:
        event = record.event
        if isinstance(event, ev.DeliveryRedelivered):
            # Requested in the redeliver's own transaction: only the publishing is left.
            if self.worker is not None:
                self.worker.enqueue(event.redelivery, tx.head())
            return
        if not event.files:
            return
        name = allocate(tx, self.settings, event.submission_id, event.files,
                        meta=caused_by(record))
        if self.worker is not None:
            self.worker.enqueue(name, tx.head())

