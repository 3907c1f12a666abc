"""The drop directories: ``submission.yaml`` + files -> ``SubmissionStarted``.

A *drop* is a directory holding a manifest: a per-submission directory
``ingest/<user>/<submission-id>/`` (what uploads and ``crds-events submit`` make; any
non-hidden subdirectory with a manifest counts) or the classic flat ``ingest/<user>/``
itself (people dropping by hand). Each is settled and taken on its own, so drops close
together never hide each other.

Threads and their roles (watchdog style: one role per thread, a queue between them):

* the watchdog observer (inotify, or polling per ``settings.watcher_mode``) only puts the
  user directory of whatever changed on a queue (changes inside hidden entries, such as a
  drop's staging directory, are skipped: their rename into place is the event);
* one worker takes user directories off the queue and *reconciles* each of their drops: it
  looks at a drop twice, ``settle`` seconds apart, and acts only when the manifest and
  every file are unchanged between the looks (so files still being written are not taken);
* the same worker runs `IngestWatcher.scan` at start-up and every ``scan_interval`` seconds:
  inotify can drop events under bursts, so the scan is the truth and events only make the
  reaction quicker.

Hostile entries never block the single worker: only ``lstat`` is used to look (never
``open``), a manifest counts only if it is a regular file (a FIFO, socket, device or
symlink named ``submission.yaml`` is ignored), symlinked user or drop directories are not
followed, and the drop box reads with ``O_NONBLOCK`` after checking again on the open file.

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
import stat
import threading
import time
from pathlib import Path

from crds_events.config import Settings
from crds_events.handlers.worker import STOP, QueueWorker
from crds_events.store import EventStore, log_target
from crds_events.submissions.dropbox import (
    IngestOutcome,
    remove_stale_staging,
    take_manifest,
)
from crds_events.submissions.manifest import DEFAULT_MAX_FILE_SIZE, MANIFEST_NAME
from crds_events.watch.observer import start_observer, stop_observer

__all__ = ["IngestWatcher"]

log = logging.getLogger(__name__)


Drop = tuple[str, str]
"""A drop: (user, subdirectory name; "" for the flat ``ingest/<user>/`` itself)."""


def _is_dir(path: Path) -> bool:
    """A real directory (a symlink to one is not followed)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _has_manifest(directory: Path) -> bool:
    """Whether ``directory`` holds a manifest that is a regular file (lstat only)."""
    try:
        return stat.S_ISREG(os.lstat(directory / MANIFEST_NAME).st_mode)
    except OSError:
        return False


def _snapshot(directory: Path) -> tuple | None:
    """Type, size and mtime of every visible non-directory entry (None: no regular manifest).

    Subdirectories are left out: in the flat layout they are other drops."""
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
        if stat.S_ISDIR(info.st_mode):
            continue
        has_manifest |= entry.name == MANIFEST_NAME and stat.S_ISREG(info.st_mode)
        seen.append((entry.name, stat.S_IFMT(info.st_mode), info.st_size, info.st_mtime_ns))
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
        store: EventStore | None = None,
        settle: float = 0.5,
        scan_interval: float = 60.0,
        max_file_size: int | None = None,
    ):
        super().__init__(log_target(settings), store=store)
        self.settings = settings
        self.root = Path(settings.ingest)
        self.settle = settle
        self.scan_interval = scan_interval
        self.max_file_size = max_file_size or getattr(
            settings, "max_file_size", DEFAULT_MAX_FILE_SIZE)
        self._looks: dict[Drop, tuple[tuple, float]] = {}  # drop -> (snapshot, first seen)
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
        """The user directory ``path`` is in (None: the root itself, or inside a hidden
        entry: a staging directory's writes matter only once it is renamed into place,
        and that rename's destination is visible)."""
        try:
            relative = Path(path).relative_to(self.root)
        except ValueError:
            return None
        parts = relative.parts
        if not parts or parts[0].startswith("."):
            return None
        if len(parts) > 2 and parts[1].startswith("."):
            return None
        return parts[0]

    # --- the worker ------------------------------------------------------------------------

    def run(self) -> None:
        next_scan = time.monotonic()  # the start-up scan
        while True:
            now = time.monotonic()
            if now >= next_scan:
                for user in {user for user, _ in self._drops()}:
                    self._due.setdefault(user, now)
                self._remove_stale_staging()
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
                    outcomes = self.reconcile(user)
                except Exception:  # noqa: BLE001 - keep watching; the next scan retries
                    log.exception("ingest: reconciling %s failed", user)
                    self._due[user] = time.monotonic() + max(self.settle, 1.0)
                    continue
                if any(outcome.state == "unsettled" for outcome in outcomes):
                    self._due[user] = time.monotonic() + self.settle

    def _users(self) -> list[str]:
        """The user directories (real directories, not hidden, not symlinks)."""
        try:
            entries = sorted(os.scandir(self.root), key=lambda e: e.name)
        except OSError:
            return []
        return [e.name for e in entries
                if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]

    def _drops_of(self, user: str) -> list[Drop]:
        """``user``'s drops holding a regular manifest: the flat directory first, then
        each per-submission directory in name (time) order."""
        directory = self.root / user
        if not _is_dir(directory):
            return []
        drops: list[Drop] = [(user, "")] if _has_manifest(directory) else []
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return drops
        for entry in entries:
            if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False) \
                    and _has_manifest(Path(entry.path)):
                drops.append((user, entry.name))
        return drops

    def _drops(self) -> list[Drop]:
        return [drop for user in self._users() for drop in self._drops_of(user)]

    def _remove_stale_staging(self) -> None:
        for user in self._users():
            for name in remove_stale_staging(self.root / user):
                log.warning("ingest %s: removed %s, left by an interrupted drop", user, name)

    def scan(self, *, wait: bool = True, timeout: float = 60.0) -> list[IngestOutcome]:
        """Reconcile every drop holding a manifest. With ``wait``, drops that are still
        changing are looked at again until they settle (or vanish), for at most
        ``timeout`` seconds (then they are reported ``unsettled``)."""
        outcomes = []
        deadline = time.monotonic() + timeout
        pending = self._drops()
        while pending:
            again = []
            for drop in pending:
                outcome = self.reconcile_drop(drop)
                if outcome.state == "unsettled" and wait and time.monotonic() < deadline:
                    again.append(drop)
                else:
                    outcomes.append(outcome)
            if again:
                time.sleep(self.settle)
            pending = again
        return outcomes

    # --- reconciling drops ----------------------------------------------------------------

    def reconcile(self, user: str) -> list[IngestOutcome]:
        """Look at each of ``user``'s drops; act on those whose manifest and files are
        stable. One outcome per drop (none: nothing to take)."""
        outcomes = []
        for drop in self._drops_of(user):
            outcomes.append(self.reconcile_drop(drop))
        # forget the looks of drops that are gone (taken elsewhere, removed)
        current = set(self._drops_of(user))
        for drop in [d for d in self._looks if d[0] == user and d not in current]:
            self._looks.pop(drop, None)
        return outcomes

    def reconcile_drop(self, drop: Drop) -> IngestOutcome:
        """Look at one drop; act if its manifest and files are stable."""
        user = drop[0]
        with self._lock:
            outcome = self._reconcile(drop)
        if outcome.state not in ("unsettled", "empty"):
            self.outcomes.append(outcome)
            log.info("ingest %s: %s %s %s", user, outcome.state, outcome.submission_id,
                     outcome.reason)
        return outcome

    def _reconcile(self, drop: Drop) -> IngestOutcome:
        user, name = drop
        directory = self.root / user / name if name else self.root / user
        snapshot = _snapshot(directory)
        if snapshot is None:
            self._looks.pop(drop, None)
            return IngestOutcome(user, "empty")
        now = time.monotonic()
        earlier = self._looks.get(drop)
        if earlier is None or earlier[0] != snapshot:
            self._looks[drop] = (snapshot, now)
            return IngestOutcome(user, "unsettled")
        if now - earlier[1] < self.settle:
            return IngestOutcome(user, "unsettled")
        del self._looks[drop]
        return self._take(user, directory)

    def _take(self, user: str, directory: Path) -> IngestOutcome:
        return take_manifest(self.store, self.settings, user, directory,
                             max_file_size=self.max_file_size)
