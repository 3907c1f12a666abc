"""The drop directories: ``ingest/<user>/`` + ``submission.yaml`` -> ``SubmissionStarted``.

Threads and their roles (watchdog style: one role per thread, a queue between them):

* the watchdog observer (inotify, or polling per ``settings.watcher_mode``) only puts the
  user directory of whatever changed on a queue;
* one worker takes directories off the queue and *reconciles* each: it looks at the
  directory twice, ``settle`` seconds apart, and acts only when the manifest and every file
  are unchanged between the looks (so files still being written are not taken);
* the same worker runs `IngestWatcher.scan` at start-up and every ``scan_interval`` seconds:
  inotify can drop events under bursts, so the scan is the truth and events only make the
  reaction quicker.

Acting on a stable manifest is the drop box's job
(`crds_events.submissions.dropbox.take_manifest`): validate, copy the uploads, lock, append
``SubmissionStarted`` or ``SubmissionRejected`` with an idempotency key, set the manifest
aside.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import threading
import time
from pathlib import Path

from crds_events.config import Settings
from crds_events.handlers.worker import STOP, QueueWorker
from crds_events.store.eventlog import SQLiteEventStore
from crds_events.submissions.dropbox import IngestOutcome, take_manifest
from crds_events.submissions.manifest import DEFAULT_MAX_FILE_SIZE, MANIFEST_NAME
from crds_events.watch.observer import start_observer, stop_observer

__all__ = ["IngestWatcher"]

log = logging.getLogger(__name__)


def _snapshot(directory: Path) -> tuple | None:
    """Sizes and mtimes of the manifest and every visible entry (None: no manifest)."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return None
    seen = []
    has_manifest = False
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue  # vanished between listing and stat: the next look decides
        has_manifest |= entry.name == MANIFEST_NAME
        seen.append((entry.name, info.st_size, info.st_mtime_ns))
    return tuple(seen) if has_manifest else None


class IngestWatcher(QueueWorker):
    """Watches ``settings.ingest`` and turns stable manifests into submissions.

    ``store``: the log to append to (default: its own connection, opened by `start` and
    closed by `stop`). ``settle``: seconds between the two looks at a directory.
    ``scan_interval``: seconds between reconciliation scans. ``outcomes``: the last
    `IngestOutcome` of each directory acted on (tests, the CLI).
    """

    thread_name = "crds-events-ingest-worker"
    stop_timeout = 30.0

    def __init__(
        self,
        settings: Settings,
        *,
        store: SQLiteEventStore | None = None,
        settle: float = 0.5,
        scan_interval: float = 60.0,
        max_file_size: int | None = None,
    ):
        super().__init__(settings.db_path, store=store)
        self.settings = settings
        self.root = Path(settings.ingest)
        self.settle = settle
        self.scan_interval = scan_interval
        self.max_file_size = max_file_size or getattr(
            settings, "max_file_size", DEFAULT_MAX_FILE_SIZE)
        self._looks: dict[str, tuple[tuple, float]] = {}  # user -> (snapshot, first seen)
        self._due: dict[str, float] = {}  # user -> when to look again
        self._observer = None
        self._lock = threading.Lock()  # one reconcile at a time (worker vs. explicit scan)
        self.outcomes: collections.deque[IngestOutcome] = collections.deque(maxlen=1000)

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the observer, then the worker (whose first act is the start-up scan)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.store  # noqa: B018 - open the connection before the threads need it
        self._observer = start_observer(
            self.root, self._user_of, self.put, self.settings, recursive=True,
            name="crds-events-ingest-observer")
        super().start()

    def stop(self) -> None:
        """Stop the observer first (nothing more is queued), then the worker."""
        stop_observer(self._observer)
        self._observer = None
        super().stop()

    def _user_of(self, path: str) -> str | None:
        """The user directory ``path`` is in (None: the root itself, or a hidden entry)."""
        try:
            relative = Path(path).relative_to(self.root)
        except ValueError:
            return None
        parts = relative.parts
        if not parts or parts[0].startswith("."):
            return None
        return parts[0]

    # --- the worker ------------------------------------------------------------------------

    def run(self) -> None:
        next_scan = time.monotonic()  # the start-up scan
        while True:
            now = time.monotonic()
            if now >= next_scan:
                for user in self._users_with_manifest():
                    self._due.setdefault(user, now)
                next_scan = now + self.scan_interval
            wake = min([next_scan, *self._due.values()])
            try:
                item = self._queue.get(timeout=max(0.0, wake - time.monotonic()))
            except queue.Empty:
                item = None
            if item is STOP:
                return
            if item is not None:
                self._due[item] = min(self._due.get(item, float("inf")), time.monotonic())
                continue  # drain the queue before acting
            now = time.monotonic()
            for user in [u for u, due in self._due.items() if due <= now]:
                del self._due[user]
                try:
                    outcome = self.reconcile(user)
                except Exception:  # noqa: BLE001 - keep watching; the next scan retries
                    log.exception("ingest: reconciling %s failed", user)
                    self._due[user] = time.monotonic() + max(self.settle, 1.0)
                    continue
                if outcome.state == "unsettled":
                    self._due[user] = time.monotonic() + self.settle

    def _users_with_manifest(self) -> list[str]:
        try:
            entries = sorted(os.scandir(self.root), key=lambda e: e.name)
        except OSError:
            return []
        return [e.name for e in entries if not e.name.startswith(".") and e.is_dir()
                and (Path(e.path) / MANIFEST_NAME).exists()]

    def scan(self, *, wait: bool = True, timeout: float = 60.0) -> list[IngestOutcome]:
        """Reconcile every user directory holding a manifest. With ``wait``, directories
        that are still changing are looked at again until they settle (or vanish), for at
        most ``timeout`` seconds (then they are reported ``unsettled``)."""
        outcomes = []
        deadline = time.monotonic() + timeout
        pending = self._users_with_manifest()
        while pending:
            again = []
            for user in pending:
                outcome = self.reconcile(user)
                if outcome.state == "unsettled" and wait and time.monotonic() < deadline:
                    again.append(user)
                else:
                    outcomes.append(outcome)
            if again:
                time.sleep(self.settle)
            pending = again
        return outcomes

    # --- reconciling one directory --------------------------------------------------------

    def reconcile(self, user: str) -> IngestOutcome:
        """Look at ``ingest/<user>/``; act if its manifest and files are stable."""
        with self._lock:
            outcome = self._reconcile(user)
        if outcome.state not in ("unsettled", "empty"):
            self.outcomes.append(outcome)
            log.info("ingest %s: %s %s %s", user, outcome.state, outcome.submission_id,
                     outcome.reason)
        return outcome

    def _reconcile(self, user: str) -> IngestOutcome:
        directory = self.root / user
        snapshot = _snapshot(directory)
        if snapshot is None:
            self._looks.pop(user, None)
            return IngestOutcome(user, "empty")
        now = time.monotonic()
        earlier = self._looks.get(user)
        if earlier is None or earlier[0] != snapshot:
            self._looks[user] = (snapshot, now)
            return IngestOutcome(user, "unsettled")
        if now - earlier[1] < self.settle:
            return IngestOutcome(user, "unsettled")
        del self._looks[user]
        return self._take(user, directory)

    def _take(self, user: str, directory: Path) -> IngestOutcome:
        return take_manifest(self.store, self.settings, user, directory,
                             max_file_size=self.max_file_size)
