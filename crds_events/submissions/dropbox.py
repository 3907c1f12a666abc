"""The drop box: the ingest layout, from dropped files to ``SubmissionStarted``.

Two layouts, one manifest (``submission.yaml``, written last) per submission:

* a per-submission directory ``<ingest>/<user>/<submission-id>/`` (files + manifest):
  what `drop_submission` (``crds-events submit``) and `drop_uploads` (the web form and the
  upload API, which check the manifest first) make. They fill a hidden staging directory
  (a unique ``tempfile`` name beside the target), fsync every file and the manifest, then
  rename it to a fresh id and fsync the user directory: the id is returned only once the
  drop is durable and complete, and drops close together never share a file;
* the classic flat drop directory ``<ingest>/<user>/`` (files + manifest), for people who
  drop by hand (a hand-made subdirectory with its own manifest works the same way).

Taking a manifest (`take_manifest`, called by the ingest watcher once the directory has
settled): read it without blocking (a regular file only: a FIFO named ``submission.yaml``
never hangs the worker), validate it (`crds_events.submissions.manifest`), copy the files
into ``<root>/work/<id>/uploads/`` (all file I/O before any append), take the instrument
lock and append ``SubmissionStarted``, then rename the manifest to
``.submission.yaml.<id>.started`` so it is not seen again.

The append carries an idempotency key: for a per-submission directory, its name (the id,
`drop_key`); for the flat layout, the user, the manifest's sha1 and its mtime
(`ingest_key`). A crash anywhere in between, or a rescan, finds the key recorded and only
finishes the rename, so one manifest is one submission. A bad manifest or a locked
instrument is a ``SubmissionRejected`` (same key rule) naming the field, or the lock holder
and expiry; its manifest becomes ``.submission.yaml.<id>.rejected``. No message names a
server path: they reach submitters by e-mail and over the web.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from crds_events import events as ev
from crds_events.accounts import locks, users
from crds_events.config import Settings
from crds_events.errors import CrdsEventsError
from crds_events.events.limits import truncate_text
from crds_events.store.interface import NO_STREAM, EventStore
from crds_events.submissions.manifest import (
    DEFAULT_MAX_FILE_SIZE,
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    load_manifest,
    read_manifest,
    write_manifest,
)

__all__ = [
    "IngestOutcome",
    "LockRefusedError",
    "Upload",
    "drop_directory",
    "drop_key",
    "drop_submission",
    "drop_uploads",
    "ingest_key",
    "is_drop_id",
    "new_submission_id",
    "remove_finished_drop",
    "remove_stale_staging",
    "submission_id_for",
    "take_lock",
    "take_manifest",
    "uploads_dir",
    "work_dir",
]


def work_dir(settings: Settings, submission_id: str) -> Path:
    """Where a submission's temporary copies and generated files live until confirmed."""
    return settings.root / "work" / submission_id


def uploads_dir(settings: Settings, submission_id: str) -> Path:
    """Where a taken submission's copies of the dropped files are."""
    return work_dir(settings, submission_id) / "uploads"


def ingest_key(user: str, manifest_sha1: str, mtime_ns: int) -> str:
    """The idempotency key of one manifest: one manifest (content + time) = one submission."""
    digest = hashlib.sha1(f"{user}\0{manifest_sha1}\0{mtime_ns}".encode()).hexdigest()
    return f"ingest:{digest}"


def submission_id_for(key: str, mtime_ns: int) -> str:
    """A readable id derived from the key alone (so a retry names the same submission)."""
    stamp = datetime.fromtimestamp(mtime_ns / 1e9, UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{key.split(':', 1)[1][:6]}"


# The name of a per-submission drop directory: a UTC stamp and 32 random bits (the flat
# layout's derived ids have 6 hex digits, so the two can never be mistaken for each other).
_DROP_ID = re.compile(r"^\d{8}T\d{6}-[0-9a-f]{8}$")


def new_submission_id() -> str:
    """A fresh id for a per-submission drop directory."""
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}"


def is_drop_id(name: str) -> bool:
    """Whether ``name`` is a per-submission directory's name (and so the submission's id)."""
    return bool(_DROP_ID.match(name))


def drop_key(submission_id: str) -> str:
    """The idempotency key of a per-submission directory: its name alone, so the same
    directory seen again (a rescan, a copy, another user's directory of that name) is the
    same submission, never a second one."""
    digest = hashlib.sha1(f"drop\0{submission_id}".encode()).hexdigest()
    return f"ingest:{digest}"


def drop_directory(settings: Settings, user: str, submission_id: str) -> Path:
    """Where ``user`` dropped ``submission_id``: its own directory, else the flat one."""
    own = Path(settings.ingest) / user / submission_id
    return own if _real_dir(own) else Path(settings.ingest) / user


def remove_finished_drop(settings: Settings, user: str, submission_id: str) -> bool:
    """Remove ``submission_id``'s own drop directory once nothing but its set-aside
    manifest is left in it (the uploads removed after a confirm); whether it was."""
    own = Path(settings.ingest) / user / submission_id
    if not is_drop_id(submission_id) or not _real_dir(own):
        return False
    try:
        names = os.listdir(own)
        if any(not name.startswith(f".{MANIFEST_NAME}.") for name in names):
            return False  # something the user put (or replaced) there: leave it
        for name in names:
            os.unlink(own / name)
        os.rmdir(own)
    except OSError:
        return False
    return True


def _real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _identity(settings: Settings, user: str, directory: Path, raw: bytes,
              mtime_ns: int) -> tuple[str, str]:
    """(idempotency key, submission id) of the manifest in ``directory``."""
    if directory.parent == Path(settings.ingest) / user and is_drop_id(directory.name):
        return drop_key(directory.name), directory.name
    key = ingest_key(user, hashlib.sha1(raw).hexdigest(), mtime_ns)
    return key, submission_id_for(key, mtime_ns)


@dataclasses.dataclass(frozen=True)
class IngestOutcome:
    """What reconciling one drop (a user's flat directory, or a submission's own) did."""

    user: str
    state: str  # started | rejected | duplicate | unsettled | empty
    submission_id: str = ""
    reason: str = ""
    position: int = 0


class LockRefusedError(CrdsEventsError):
    """The instrument is locked by someone else (message names the holder and expiry)."""


def take_lock(store: EventStore, settings: Settings, instrument: str, user: str,
              submission_id: str) -> None:
    """Take or renew ``user``'s lock on ``instrument``; `LockRefusedError` (naming the holder
    and the expiry) when another user holds it or ``user`` holds another instrument."""
    try:
        locks.acquire_lock(store, instrument, user, timeout=settings.lock_timeout,
                           submission_id=submission_id)
    except locks.LockHeldError as exc:
        raise LockRefusedError(
            f"{exc}; try again after that, or ask {exc.lock.owner} to release it"
        ) from None
    except locks.LockError as exc:
        raise LockRefusedError(str(exc)) from None


# --- taking a manifest (the server side) -------------------------------------------------


def take_manifest(store: EventStore, settings: Settings, user: str, directory: Path, *,
                  max_file_size: int = DEFAULT_MAX_FILE_SIZE) -> IngestOutcome:
    """Turn the manifest in ``directory`` (``ingest/<user>/`` or a per-submission directory
    below it, settled) into a submission: ``started``, ``rejected`` (with the reason),
    ``duplicate`` (taken before) or ``empty`` (the manifest vanished, or is not a regular
    file: that is never opened for reading, let alone read)."""
    manifest_path = directory / MANIFEST_NAME
    try:
        info = os.lstat(manifest_path)
        if not stat.S_ISREG(info.st_mode):
            return IngestOutcome(user, "empty", reason="submission.yaml is not a regular file")
        raw = read_manifest(manifest_path)  # non-blocking, and regular once opened too
    except (OSError, ManifestError):
        return IngestOutcome(user, "empty")
    key, submission_id = _identity(settings, user, directory, raw, info.st_mtime_ns)
    earlier = store.find_key(key)
    if earlier is not None:  # taken before a crash or by another scanner
        state = "rejected" if isinstance(earlier.event, ev.SubmissionRejected) else "started"
        _set_aside(manifest_path, submission_id, state)
        return IngestOutcome(user, "duplicate", submission_id)
    try:
        manifest = load_manifest(directory, observatory=settings.observatory,
                                 max_file_size=max_file_size, raw=raw)
    except ManifestError as exc:
        return _reject(store, user, manifest_path, submission_id, key, _problems(exc))
    refusal = _refuse_user(store, user)
    if refusal:
        return _reject(store, user, manifest_path, submission_id, key, refusal)
    try:  # every byte copied before the first append: no file I/O inside a transaction
        _copy_uploads(manifest, raw, uploads_dir(settings, submission_id))
    except _NotRegularError as exc:
        shutil.rmtree(work_dir(settings, submission_id), ignore_errors=True)
        return _reject(store, user, manifest_path, submission_id, key, str(exc))
    try:
        position = _record_start(store, settings, user, manifest, submission_id, key)
    except LockRefusedError as exc:
        shutil.rmtree(work_dir(settings, submission_id), ignore_errors=True)
        return _reject(store, user, manifest_path, submission_id, key, str(exc))
    _set_aside(manifest_path, submission_id, "started")
    return IngestOutcome(user, "started", submission_id, position=position)


def _refuse_user(store: EventStore, user: str) -> str:
    """Why ``user`` may not submit ('' if they may). Unknown users are accepted: the
    existence of their drop directory is the administrator's say-so."""
    record = users.get_user(store, user)
    if record is not None and not users.can(record, "submit"):
        return f"user {user!r} may not submit (disabled or no submitter role)"
    return ""


def _problems(exc: ManifestError) -> str:
    """A manifest's problems without its path (the reason reaches the submitter)."""
    return "; ".join(f"field {field!r}: {reason}" for field, reason in exc.problems)


class _NotRegularError(CrdsEventsError):
    """A listed file stopped being a regular file between the check and the copy."""


def _copy_regular(source: Path, target: Path) -> None:
    """Copy ``source`` only if, once open, it is a regular file: opened non-blocking so a
    FIFO swapped in after the manifest check cannot hang the ingest worker."""
    fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb") as src:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _NotRegularError(f"field 'files': {source.name!r} is not a regular file")
        with open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)


def _copy_uploads(manifest: Manifest, raw: bytes, uploads: Path) -> None:
    # Copies, not links: the user may rewrite a file in place after dropping it, and the
    # submission must keep what was there when the manifest was taken.
    uploads.mkdir(parents=True, exist_ok=True)
    for name in manifest.uploads:  # none for a delete submission: it names references
        _copy_regular(manifest.directory / name, uploads / name)
    (uploads / MANIFEST_NAME).write_bytes(raw)  # the bytes validated, not a second read


def _record_start(store: EventStore, settings: Settings, user: str, manifest: Manifest,
                  submission_id: str, key: str) -> int:
    started = ev.SubmissionStarted(
        submission_id=submission_id, observatory=settings.observatory,
        deliverer=manifest.deliverer, instrument=manifest.instrument,
        description=manifest.description, files=manifest.files,
        change_level=manifest.change_level, other_emails=manifest.other_emails,
        redcat=dict(manifest.redcat), user=user, kind=manifest.kind,
        derive_from=manifest.derive_from, auto_rename=manifest.auto_rename,
        manifest_sha1=manifest.sha1,
    )
    # The lock first, in its own append (locks decide on their stream's version); if we
    # crash before SubmissionStarted, the rescan re-acquires, which only renews it.
    take_lock(store, settings, manifest.instrument, user, submission_id)
    result = store.record(started, NO_STREAM, meta={"actor": user}, idempotency_key=key)
    return result.position


def _reject(store: EventStore, user: str, manifest_path: Path, submission_id: str, key: str,
            reason: str) -> IngestOutcome:
    event = ev.SubmissionRejected(submission_id=submission_id, reason=truncate_text(reason))
    result = store.record(event, meta={"actor": user}, idempotency_key=key)
    _set_aside(manifest_path, submission_id, "rejected")
    return IngestOutcome(user, "rejected", submission_id, reason, result.position)


def _set_aside(manifest_path: Path, submission_id: str, state: str) -> None:
    """Rename the manifest out of the watcher's way (hidden), keeping it for the record."""
    taken = manifest_path.with_name(f".{MANIFEST_NAME}.{submission_id}.{state}")
    with contextlib.suppress(FileNotFoundError):
        os.replace(manifest_path, taken)


# --- dropping a submission (the `crds-events submit` and web side) ------------------------

# Staging directories are hidden (the watcher skips hidden entries); one older than this is
# what a killed drop left behind.
STALE_STAGING_SECONDS = 24 * 3600
_STAGING_PREFIXES = (".drop-", ".upload-", ".web-upload-", ".crds-submit-")


def _user_directory(settings: Settings, user: str) -> Path:
    if not user or "/" in user or "\\" in user or "\0" in user or user.startswith("."):
        raise ValueError(f"user {user!r}: not a user name")
    directory = Path(settings.ingest) / user
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file or a directory: its entries) to disk."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _staging(user_directory: Path, prefix: str) -> Path:
    # A unique hidden name in the target directory: concurrent drops never share a temp
    # name, and the final rename stays on one file system.
    if not prefix.startswith("."):
        raise ValueError(f"staging prefix {prefix!r}: must start with '.' (hidden)")
    return Path(tempfile.mkdtemp(prefix=prefix, dir=user_directory))


def _commit(staging: Path, user_directory: Path, reserved: str | None = None) -> str:
    """Make the complete, fsync'd ``staging`` directory the submission's own directory
    under a fresh id (one rename: the watcher sees all of it or nothing); the id.
    ``reserved``: an id handed out earlier (a jpoll channel opened before the upload is
    keyed by it), tried first; taken already, a fresh id is used instead."""
    _fsync(staging)
    for attempt in range(8):
        submission_id = reserved if attempt == 0 and reserved else new_submission_id()
        try:
            # rename(2) refuses a non-empty target, so a taken id is never overwritten
            os.rename(staging, user_directory / submission_id)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                continue
            raise
        _fsync(user_directory)  # the rename itself is durable before the id is answered
        return submission_id
    raise OSError(errno.EEXIST, "no free submission id; try again")


def _with_files(fields: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The manifest fields with ``files``: the names dropped, or for a delete submission
    (nothing dropped) the reference names ``fields`` lists."""
    if not names and str(fields.get("kind", "")).lower() == "delete":
        return dict(fields)
    return {**fields, "files": names}


def drop_submission(settings: Settings, user: str, files: list[Path],
                    fields: dict[str, Any]) -> str:
    """Copy ``files`` and the manifest into a new ``ingest/<user>/<submission-id>/``
    (staged, fsync'd, renamed into place); return the submission id, which is that
    directory's name."""
    user_directory = _user_directory(settings, user)
    names: list[str] = []
    for path in map(Path, files):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        if path.name in names:
            raise ValueError(f"file {path.name!r}: given twice")
        names.append(path.name)
    staging = _staging(user_directory, ".drop-")
    try:
        for path in map(Path, files):
            shutil.copyfile(path, staging / path.name)
            _fsync(staging / path.name)
        write_manifest(staging, _with_files(fields, names))  # fsyncs the manifest
        return _commit(staging, user_directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


class Upload(Protocol):
    """An uploaded file as a web framework hands it over (werkzeug's ``FileStorage``)."""

    filename: str | None

    def save(self, dst: Path) -> None: ...


def drop_uploads(settings: Settings, user: str, uploads: Sequence[Upload],
                 fields: dict[str, Any], *, staging_prefix: str = ".upload-",
                 submission_id: str | None = None) -> str:
    """Save ``uploads`` in a hidden staging directory beside the target, check the manifest
    there, then rename it into place as ``ingest/<user>/<submission-id>/``; the id.

    The watcher would reject a bad manifest later; checking first answers the uploader at
    once (`ManifestError`, naming every problem) and leaves nothing in the ingest
    directory. The upload names must have been checked (`is_safe_name`) by the caller.
    ``submission_id``: an id reserved earlier (`new_submission_id`), used when still free.
    """
    if submission_id is not None and not is_drop_id(submission_id):
        raise ValueError(f"submission id {submission_id!r}: not a reserved submission id")
    user_directory = _user_directory(settings, user)
    staging = _staging(user_directory, staging_prefix)
    try:
        names = []
        for upload in uploads:
            target = staging / str(upload.filename)
            upload.save(target)
            _fsync(target)
            names.append(target.name)
        write_manifest(staging, _with_files(fields, names))
        load_manifest(staging, observatory=settings.observatory)
        return _commit(staging, user_directory, submission_id)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def remove_stale_staging(user_directory: Path, *,
                         older_than: float = STALE_STAGING_SECONDS) -> list[str]:
    """Remove the staging directories a killed drop left in ``user_directory`` (hidden,
    untouched for ``older_than`` seconds); their names."""
    removed = []
    cutoff = time.time() - older_than
    try:
        entries = list(os.scandir(user_directory))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(_STAGING_PREFIXES):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False) and \
                    entry.stat(follow_symlinks=False).st_mtime < cutoff:
                shutil.rmtree(entry.path)
                removed.append(entry.name)
    return removed
