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

Acting on a stable manifest: validate it (`crds_events.submissions.manifest`), copy the
files into ``<root>/work/<id>/uploads/``, take the instrument lock and append
``SubmissionStarted`` in one transaction, then rename the manifest to
``.submission.yaml.<id>.taken`` so it is not seen again. The append carries an idempotency
key made from the user, the manifest's sha1 and its mtime: a crash anywhere in between, or
a rescan, finds the key recorded and only finishes the rename, so one manifest is one
submission. A bad manifest or a locked instrument is a ``SubmissionRejected`` (same key
rule) naming the field, or the lock holder and expiry; its manifest becomes
``.submission.yaml.<id>.rejected``.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import logging
import os
import queue
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crds_events import events as ev
from crds_events.config import Settings
from crds_events.store.eventlog import SQLiteEventStore
from crds_events.store.interface import NO_STREAM
from crds_events.submissions.manifest import (
    DEFAULT_MAX_FILE_SIZE,
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    load_manifest,
)
from crds_events.watch.observer import STOP, start_observer, stop_observer, stop_worker

__all__ = [
    "IngestOutcome",
    "IngestWatcher",
    "drop_submission",
    "ingest_key",
    "submission_id_for",
    "work_dir",
    "uploads_dir",
]

log = logging.getLogger(__name__)

def work_dir(settings: Settings, submission_id: str) -> Path:
    """Where a submission's temporary copies and generated files live until confirmed."""
    return settings.root / "work" / submission_id


def uploads_dir(settings: Settings, submission_id: str) -> Path:
    return work_dir(settings, submission_id) / "uploads"


def ingest_key(user: str, manifest_sha1: str, mtime_ns: int) -> str:
    """The idempotency key of one manifest: one manifest (content + time) = one submission."""
    digest = hashlib.sha1(f"{user}\0{manifest_sha1}\0{mtime_ns}".encode()).hexdigest()
    return f"ingest:{digest}"


def submission_id_for(key: str, mtime_ns: int) -> str:
    """A readable id derived from the key alone (so a retry names the same submission)."""
    stamp = datetime.fromtimestamp(mtime_ns / 1e9, UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{key.split(':', 1)[1][:6]}"


@dataclasses.dataclass(frozen=True)
class IngestOutcome:
    """What reconciling one user directory did."""

    user: str
    state: str  # started | rejected | duplicate | unsettled | empty
    submission_id: str = ""
    reason: str = ""
    position: int = 0


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


def _recorded(store: SQLiteEventStore, key: str) -> ev.Event | None:
    """The first event appended with idempotency ``key``, if any."""
    row = store.db.conn.execute(
        "SELECT position FROM events WHERE idempotency_key = ?", (key,)
    ).fetchone()
    if row is None:
        return None
    record = store.get(row[0])
    return record.event if record is not None else None


class IngestWatcher:
    """Watches ``settings.ingest`` and turns stable manifests into submissions.

    ``store``: the log to append to (default: its own connection, opened by `start` and
    closed by `stop`). ``settle``: seconds between the two looks at a directory.
    ``scan_interval``: seconds between reconciliation scans. ``on_event``: called with
    each `IngestOutcome` (tests, the CLI).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: SQLiteEventStore | None = None,
        settle: float = 0.5,
        scan_interval: float = 60.0,
        max_file_size: int | None = None,
    ):
        self.settings = settings
        self.root = Path(settings.ingest)
        self.settle = settle
        self.scan_interval = scan_interval
        self.max_file_size = max_file_size or getattr(
            settings, "max_file_size", DEFAULT_MAX_FILE_SIZE)
        self._store = store
        self._own_store = store is None
        self._queue: queue.Queue = queue.Queue()
        self._looks: dict[str, tuple[tuple, float]] = {}  # user -> (snapshot, first seen)
        self._due: dict[str, float] = {}  # user -> when to look again
        self._observer = None
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()  # one reconcile at a time (worker vs. explicit scan)
        self.outcomes: collections.deque[IngestOutcome] = collections.deque(maxlen=1000)

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def store(self) -> SQLiteEventStore:
        if self._store is None:
            self._store = SQLiteEventStore(self.settings.db_path)
        return self._store

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.store  # noqa: B018 - open the connection before the threads need it
        self._observer = start_observer(
            self.root, self._user_of, self._queue.put, self.settings, recursive=True,
            name="crds-events-ingest-observer")
        self._worker = threading.Thread(target=self._run, name="crds-events-ingest-worker")
        self._worker.start()

    def stop(self) -> None:
        stop_observer(self._observer)
        self._observer = None
        stop_worker(self._worker, self._queue.put, 30)
        self._worker = None
        if self._own_store and self._store is not None:
            self._store.close()
            self._store = None

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

    def _run(self) -> None:
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
        manifest_path = directory / MANIFEST_NAME
        try:
            raw = manifest_path.read_bytes()
            mtime_ns = manifest_path.stat().st_mtime_ns
        except OSError:
            return IngestOutcome(user, "empty")
        key = ingest_key(user, hashlib.sha1(raw).hexdigest(), mtime_ns)
        submission_id = submission_id_for(key, mtime_ns)
        earlier = _recorded(self.store, key)
        if earlier is not None:  # taken before a crash or by another scanner
            state = "rejected" if isinstance(earlier, ev.SubmissionRejected) else "started"
            self._set_aside(manifest_path, submission_id, state)
            return IngestOutcome(user, "duplicate", submission_id)
        try:
            manifest = load_manifest(directory, observatory=self.settings.observatory,
                                     max_file_size=self.max_file_size)
        except ManifestError as exc:
            return self._reject(user, manifest_path, submission_id, key, str(exc))
        refusal = self._refuse_user(user)
        if refusal:
            return self._reject(user, manifest_path, submission_id, key, refusal)
        uploads = uploads_dir(self.settings, submission_id)
        self._copy_uploads(manifest, uploads)
        try:
            position = self._record_start(user, manifest, submission_id, key)
        except _LockRefused as exc:
            shutil.rmtree(work_dir(self.settings, submission_id), ignore_errors=True)
            return self._reject(user, manifest_path, submission_id, key, str(exc))
        self._set_aside(manifest_path, submission_id, "started")
        return IngestOutcome(user, "started", submission_id, position=position)

    def _refuse_user(self, user: str) -> str:
        """Why ``user`` may not submit ('' if they may). Unknown users are accepted: the
        existence of their drop directory is the administrator's say-so."""
        try:
            from crds_events.accounts import users
        except ImportError:  # pragma: no cover - accounts not installed
            return ""
        record = users.get_user(self.store, user)
        if record is not None and not users.can(record, "submit"):
            return f"user {user!r} may not submit (disabled or no submitter role)"
        return ""

    @staticmethod
    def _copy_uploads(manifest: Manifest, uploads: Path) -> None:
        # Copies, not links: the user may rewrite a file in place after dropping it, and the
        # submission must keep what was there when the manifest was taken.
        uploads.mkdir(parents=True, exist_ok=True)
        for name in manifest.files:
            shutil.copyfile(manifest.directory / name, uploads / name)
        (uploads / MANIFEST_NAME).write_bytes(manifest.path.read_bytes())

    def _record_start(self, user: str, manifest: Manifest, submission_id: str,
                      key: str) -> int:
        started = ev.SubmissionStarted(
            submission_id=submission_id, observatory=self.settings.observatory,
            deliverer=manifest.deliverer, instrument=manifest.instrument,
            description=manifest.description, files=manifest.files,
            change_level=manifest.change_level, other_emails=manifest.other_emails,
            redcat=dict(manifest.redcat), user=user, kind=manifest.kind,
            derive_from=manifest.derive_from, auto_rename=manifest.auto_rename,
            manifest_sha1=manifest.sha1,
        )
        # The lock first, in its own append (locks decide on their stream's version); if we
        # crash before SubmissionStarted, the rescan re-acquires, which only renews it.
        take_lock(self.store, self.settings, manifest.instrument, user, submission_id)
        result = self.store.record(started, NO_STREAM, meta={"actor": user},
                                   idempotency_key=key)
        return result.position

    def _reject(self, user: str, manifest_path: Path, submission_id: str, key: str,
                reason: str) -> IngestOutcome:
        event = ev.SubmissionRejected(submission_id=submission_id, reason=reason)
        result = self.store.record(event, meta={"actor": user}, idempotency_key=key)
        self._set_aside(manifest_path, submission_id, "rejected")
        return IngestOutcome(user, "rejected", submission_id, reason, result.position)

    @staticmethod
    def _set_aside(manifest_path: Path, submission_id: str, state: str) -> None:
        """Rename the manifest out of the watcher's way (hidden), keeping it for the record."""
        taken = manifest_path.with_name(f".{MANIFEST_NAME}.{submission_id}.{state}")
        with contextlib.suppress(FileNotFoundError):
            os.replace(manifest_path, taken)


class _LockRefused(Exception):
    """The instrument is locked by someone else (message names the holder and expiry)."""


def take_lock(store: Any, settings: Settings, instrument: str, user: str,
              submission_id: str) -> None:
    """Take or renew ``user``'s lock on ``instrument``; `_LockRefused` (naming the holder and
    the expiry) when another user holds it or ``user`` holds another instrument."""
    from crds_events.accounts import locks

    try:
        locks.acquire_lock(store, instrument, user, timeout=settings.lock_timeout,
                           submission_id=submission_id)
    except locks.LockHeldError as exc:
        raise _LockRefused(
            f"{exc}; try again after that, or ask {exc.lock.owner} to release it"
        ) from None
    except locks.LockError as exc:
        raise _LockRefused(str(exc)) from None


# --- dropping a submission (the `crds-events submit` side) ------------------------------


def drop_submission(settings: Settings, user: str, files: list[Path],
                    fields: dict[str, Any]) -> str:
    """Copy ``files`` into ``ingest/<user>/`` and write the manifest last (atomically);
    return the id the server will give the submission (derived from the manifest)."""
    from crds_events.submissions.manifest import write_manifest

    if not user or "/" in user or user.startswith("."):
        raise ValueError(f"user {user!r}: not a user name")
    directory = Path(settings.ingest) / user
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for path in files:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        temp = directory / f".{path.name}.part"
        shutil.copyfile(path, temp)
        os.replace(temp, directory / path.name)  # renamed into place: never half a file
        names.append(path.name)
    manifest = write_manifest(directory, {**fields, "files": names})
    raw = manifest.read_bytes()
    mtime_ns = manifest.stat().st_mtime_ns
    key = ingest_key(user, hashlib.sha1(raw).hexdigest(), mtime_ns)
    return submission_id_for(key, mtime_ns)
