"""Delivery in a running server: SubmissionConfirmed/Forced -> ``.cat`` -> archive states.

* `DeliveryRequestHandler` (in the runner's write transaction) makes sure every confirmed or
  forced submission has its delivery name (`crds_events.delivery.publish.allocate`: the review
  normally allocated it in the confirm's own transaction, so this only finds it again;
  a confirm recorded without one, e.g. by older code, gets it here) and hands the name to
  the worker. Nothing slow happens in the transaction.
* `DeliveryWorker` (its own thread and connection) publishes each delivery
  (`crds_events.delivery.publish.publish`: links, ``.cat`` written last, `DeliveryCreated`) and then
  asks the watcher to look at it. On start, and every ``resume_interval`` seconds, it
  publishes every delivery requested but not created (killed mid-publish, or enqueued
  before the handler's transaction committed).
* `crds_events.watch.delivery.DeliveryWatcher` turns the archive's renames into events.

`register(server)` wires all three into a `Server`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING

from crds_events import events as ev
from crds_events.config import Settings
from crds_events.delivery.publish import DeliveryError, allocate, pending_deliveries, publish_many
from crds_events.handlers import Handler
from crds_events.store.eventlog import SQLiteEventStore, SQLiteTransaction
from crds_events.store.interface import RecordedEvent, caused_by
from crds_events.watch.delivery import DeliveryWatcher, ReconcileReport

if TYPE_CHECKING:
    from collections.abc import Callable

    from crds_events.server.core import Server

__all__ = ["RECONCILE_JOB", "DeliveryRequestHandler", "DeliveryService", "DeliveryWorker",
           "register", "schedule_reconcile"]

log = logging.getLogger(__name__)

_STOP = object()
RECONCILE_JOB = "delivery-reconcile"
BATCH = 200  # deliveries published per fsync round and transaction


class DeliveryWorker:
    """Publishes deliveries off a queue in one background thread."""

    def __init__(self, settings: Settings, *, store: SQLiteEventStore | None = None,
                 resume_interval: float | None = 30.0,
                 on_created: Callable[[str], None] | None = None):
        self.settings = settings
        self.resume_interval = resume_interval or None
        self.on_created = on_created
        self._store = store
        self._own_store = store is None
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self.failures: dict[str, str] = {}  # delivery -> last error (for tests and the CLI)

    @property
    def store(self) -> SQLiteEventStore:
        if self._store is None:
            self._store = SQLiteEventStore(self.settings.db_path)
        return self._store

    def start(self) -> None:
        self.store  # noqa: B018 - open the connection on this thread, before the worker
        self._thread = threading.Thread(target=self._run, name="crds-events-delivery-worker")
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(120)
            self._thread = None
        if self._own_store and self._store is not None:
            self._store.close()
            self._store = None

    def enqueue(self, name: str, position: int = 0) -> None:
        """Publish ``name`` soon; ``position``: the log position its request is at (the
        worker waits until it is committed: the handler enqueues inside its transaction)."""
        self._queue.put((name, position))

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

    def _run(self) -> None:
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
                    if item is _STOP:
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
    consumes = frozenset({ev.SubmissionConfirmed.type, ev.SubmissionForced.type})

    def __init__(self, settings: Settings, worker: DeliveryWorker | None = None):
        self.settings = settings
        self.worker = worker

    def handle(self, tx: SQLiteTransaction, record: RecordedEvent) -> None:
        event = record.event
        if not event.files:
            return
        name = allocate(tx, self.settings, event.submission_id, event.files,
                        meta=caused_by(record))
        if self.worker is not None:
            self.worker.enqueue(name, tx.head())


class DeliveryService:
    """The delivery parts of a server: the worker, the watcher, and `reconcile` (the job the
    scheduler runs)."""

    def __init__(self, worker: DeliveryWorker, watcher: DeliveryWatcher):
        self.worker = worker
        self.watcher = watcher

    def reconcile(self) -> ReconcileReport:
        """A full reconciliation of the delivery directory against the log."""
        return self.watcher.reconcile()


def register(server: Server, *, scan_interval: float | None = 60.0,
             resume_interval: float | None = 30.0) -> DeliveryService:
    """Wire delivery into ``server`` (before it starts): the request handler joins the
    runner; the publishing worker and the delivery-directory watcher become components.

    ``scan_interval``: seconds between full reconciliations run by the watcher itself
    (None: leave them to the scheduler, which calls ``service.reconcile``).
    Also sets ``server.delivery`` to the returned `DeliveryService`.
    """
    if server.runner.running:
        raise RuntimeError("register delivery before the server starts")
    settings = server.settings
    watcher = DeliveryWatcher(settings, scan_interval=scan_interval)
    worker = DeliveryWorker(settings, resume_interval=resume_interval,
                            on_created=watcher.enqueue)
    if DeliveryRequestHandler.name not in {h.name for h in server.runner.handlers}:
        server.runner.handlers.append(DeliveryRequestHandler(settings, worker))
    # The watcher starts first: a .cat published by the worker is then always watched.
    server.add_component("delivery-watcher", watcher.start, watcher.stop)
    server.add_component("delivery-worker", worker.start, worker.stop)
    service = DeliveryService(worker, watcher)
    server.delivery = service  # type: ignore[attr-defined]
    return service


def schedule_reconcile(server: Server, seconds: float = 60.0) -> None:
    """Hand the periodic full reconciliation to the server's scheduler
    (`crds_events.server.scheduler`, registered before this call): the job ``delivery-reconcile``
    runs `DeliveryService.reconcile` every ``seconds``, and the watcher's own timer is
    switched off (it keeps its start-up scan)."""
    from crds_events.server.scheduler import scheduler_of

    service: DeliveryService | None = getattr(server, "delivery", None)
    if service is None:
        raise RuntimeError("register delivery (crds_events.handlers.delivery.register) first")
    service.watcher.scan_interval = None
    scheduler_of(server).add_job(RECONCILE_JOB, service.reconcile, seconds)
