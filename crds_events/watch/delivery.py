"""The delivery directory watched: the archive's renames of ``.cat`` manifests -> events.

Threads (watchdog style, one role each): the observer (inotify, or polling per
``settings.watcher_mode``) only puts delivery names on a queue; one worker drains the
queue and reconciles those deliveries in batches (one write transaction per batch), runs a
full `DeliveryWatcher.reconcile` at start-up and every ``scan_interval`` seconds (inotify
drops events under bursts; the scan is the truth). What a reconciliation records is
`crds_events.delivery.reconcile`'s business.

The directory is the one the server marked (`crds_events.delivery.directory`): on first
start the marker is written and recorded; afterwards a missing directory is not created
again (that would make an empty mount point look like ours), the observer simply waits,
and it is started afresh on the directory that comes back (an inotify watch would still
be on the old one).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from crds_events.config import Settings
from crds_events.delivery.directory import ensure_marker
from crds_events.delivery.publish import manifest_name_of
from crds_events.delivery.reconcile import Reconciler, ReconcileReport
from crds_events.handlers.worker import STOP, QueueWorker
from crds_events.store import EventStore, log_target, open_store
from crds_events.watch.observer import start_observer, stop_observer

__all__ = ["DeliveryWatcher"]

log = logging.getLogger(__name__)


def _delivery_of(path: str) -> str | None:
    """The delivery whose manifest ``path`` is (None: not a manifest)."""
    found = manifest_name_of(os.path.basename(path))
    return found[0] if found is not None else None


class DeliveryWatcher(QueueWorker):
    """Watches ``settings.delivery`` and records the archive's progress.

    ``store``: the log (default: its own connection, opened by `start`, closed by `stop`).
    ``scan_interval``: seconds between full reconciliations (None or 0: only at start-up and
    when `reconcile` is called, e.g. by the scheduler).
    """

    thread_name = "crds-events-delivery-watcher"
    stop_timeout = 60.0

    def __init__(self, settings: Settings, *, store: EventStore | None = None,
                 scan_interval: float | None = 60.0):
        super().__init__(log_target(settings), store=store)
        self.settings = settings
        self.directory = Path(settings.delivery)
        self.scan_interval = scan_interval or None
        self._observer = None
        self._lock = threading.Lock()  # one reconciliation at a time
        self._reconciler: Reconciler | None = None
        self._started = False
        self.reports: list[ReconcileReport] = []  # the last few, for tests and the CLI

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the observer, then the worker (whose first act is a full reconciliation)."""
        ensure_marker(self.settings, self.store)  # first start: the directory and its marker
        self._reconciler = Reconciler(self.settings, self.store)
        self._started = True
        self._start_observer()
        super().start()

    def _start_observer(self) -> None:
        if not self.directory.is_dir():
            # Not even tried: a failed watchdog start leaves its inotify threads behind.
            log.error("delivery directory %s not watched: not a directory (yet)",
                      self.directory)
            self._observer = None
            return
        try:
            self._observer = start_observer(
                self.directory, _delivery_of, self.put, self.settings, recursive=False,
                name="crds-events-delivery-observer")
        except OSError as exc:  # gone (an outage): the scans record it and retry
            log.error("delivery directory %s not watched: %s", self.directory, exc)
            self._observer = None

    def _restart_observer(self) -> None:
        """Watch the directory that came back (called under ``self._lock``)."""
        if not self._started:
            return
        stop_observer(self._observer)
        self._observer = None
        self._start_observer()

    def stop(self) -> None:
        """Stop the observer first (nothing more is queued), then the worker."""
        self._started = False
        stop_observer(self._observer)
        self._observer = None
        super().stop()
        self._reconciler = None

    def enqueue(self, name: str) -> None:
        """Look at delivery ``name`` again soon (e.g. after `DeliveryCreated`)."""
        self.put(name)

    # --- reconciling ---------------------------------------------------------------------

    def reconcile(self, names: Iterable[str] | None = None) -> ReconcileReport:
        """Reconcile every delivery (or ``names``) now; thread-safe (the scheduler's job)."""
        with self._lock:
            if self._reconciler is not None:
                report = self._reconciler.run(names)
            elif self._store is not None:  # a store given by the caller
                report = Reconciler(self.settings, self._store).run(names)
            else:  # not started (or stopped): a connection for this run only
                with open_store(self.settings) as store:
                    report = Reconciler(self.settings, store).run(names)
            if report.restored or (self._started and self._observer is None
                                   and not report.unavailable):
                self._restart_observer()
        for name in report.retry:  # changed while we looked: look again
            self.put(name)
        if report.recorded or report.problems:
            log.info("delivery reconcile: %d recorded, %d problems", len(report.recorded),
                     len(report.problems))
        self.reports = [*self.reports[-9:], report]
        return report

    def run(self) -> None:
        next_scan = time.monotonic()  # the start-up scan
        while True:
            timeout = None
            if next_scan is not None:
                timeout = max(0.0, next_scan - time.monotonic())
            names: set[str] = set()
            stopping = False
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            while item is not None:  # drain: a burst becomes one batch
                if item is STOP:
                    stopping = True
                    break
                names.add(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = None
            if stopping:
                return
            try:
                if next_scan is not None and time.monotonic() >= next_scan:
                    self.reconcile()
                    next_scan = (time.monotonic() + self.scan_interval
                                 if self.scan_interval else None)
                elif names:
                    self.reconcile(names)
            except Exception:  # noqa: BLE001 - keep watching; the next scan retries
                log.exception("delivery reconcile failed")
                time.sleep(0.5)
                if names:
                    for name in names:
                        self._queue.put(name)

