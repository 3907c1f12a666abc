"""Is the delivery directory the one we deliver to? Its marker, and safe looks at its files.

"The manifest is gone" means "archived" only if the directory looked at is verifiably ours:
an unmounted NFS share (an empty mount point), a directory replaced by an empty one, or one
that is missing altogether would otherwise read as "every delivery archived". So the server
writes a marker, ``.crds-events-delivery-id`` holding a random id, into the directory the
first time it uses it, and records the id in the log (`DeliveryDirectoryMarked`); from then
on `check_directory` must find that marker, with that id, before anything is concluded
from what is (not) in the directory. Hidden names are never touched by the archive poller.

Everything here looks at the disk without ever blocking on a read: only regular files are
read (lstat + S_ISREG, then the opened descriptor checked again), and they are opened with
O_NONBLOCK, so a FIFO named like a manifest is reported, not waited on. No function here
opens a write transaction around its file I/O: callers gather disk state first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import stat
from pathlib import Path

from crds_events import events as ev
from crds_events.config import Settings
from crds_events.errors import CrdsEventsError
from crds_events.store.interface import NO_STREAM, ConcurrencyError, EventReader, EventStore

__all__ = [
    "MARKER_NAME",
    "DirectoryState",
    "NotRegularFileError",
    "check_directory",
    "directory_state",
    "ensure_marker",
    "read_regular",
]

log = logging.getLogger(__name__)

MARKER_NAME = ".crds-events-delivery-id"
MAX_READ = 1 << 20  # a manifest or marker larger than this is not read whole


class NotRegularFileError(CrdsEventsError, OSError):
    """A name that should be a regular file is something else (a FIFO, a directory ...)."""


def read_regular(path: Path, limit: int = MAX_READ) -> str:
    """The text of regular file ``path`` (at most ``limit`` bytes), never blocking.

    ``NotRegularFileError`` for anything that is not a regular file (not followed through
    a symlink); ``OSError`` (e.g. ``FileNotFoundError``) as the system says.
    """
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode):
        raise NotRegularFileError(f"{path.name}: not a regular file")
    # O_NONBLOCK: if the name was swapped for a FIFO since the lstat, open does not wait.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFileError(f"{path.name}: not a regular file")
        data = os.read(fd, limit)
    finally:
        os.close(fd)
    return data.decode("utf-8", errors="replace")


@dataclasses.dataclass(frozen=True)
class DirectoryState:
    """The delivery directory as the log tells it: its marker id ('' before the first
    start), whether an outage is open, and the stream's version (for optimistic checks)."""

    marker: str = ""
    unavailable: bool = False
    reason: str = ""
    version: int = 0


def directory_state(log: EventReader, observatory: str) -> DirectoryState:
    """Fold the ``delivery-directory:<obs>`` stream (``log``: a store or a transaction)."""
    marker, unavailable, reason, version = "", False, "", 0
    for record in log.read_stream(ev.delivery_directory_stream(observatory)):
        version = record.version
        event = record.event
        if isinstance(event, ev.DeliveryDirectoryMarked):
            marker = marker or event.marker  # the first marker recorded is the one
        elif isinstance(event, ev.DeliveryDirectoryUnavailable):
            unavailable, reason = True, event.reason
        elif isinstance(event, ev.DeliveryDirectoryRestored):
            unavailable, reason = False, ""
    return DirectoryState(marker, unavailable, reason, version)


def check_directory(directory: Path, marker: str) -> str:
    """'' when ``directory`` is a directory holding our ``marker``; else why not (a sentence
    for the operators' e-mail)."""
    try:
        info = os.stat(directory)  # a symlink to the real directory is a fine setup
    except FileNotFoundError:
        return f"the delivery directory {directory} does not exist"
    except OSError as exc:
        return f"the delivery directory {directory} cannot be examined: {exc.strerror}"
    if not stat.S_ISDIR(info.st_mode):
        return f"the delivery directory {directory} is not a directory"
    try:
        found = read_regular(directory / MARKER_NAME, 4096).strip()
    except FileNotFoundError:
        return (f"the delivery directory {directory} holds no marker {MARKER_NAME}: it is "
                f"not the directory this server delivers to (empty or replaced, e.g. an "
                f"unmounted share)")
    except OSError as exc:
        return f"the delivery directory's marker {MARKER_NAME} cannot be read: {exc}"
    if found != marker:
        return (f"the delivery directory {directory} holds marker {found[:40]!r}, not this "
                f"server's {marker!r}: it is another directory (replaced or another "
                f"server's)")
    return ""


def _write_marker(directory: Path) -> str:
    """Write a new marker unless one is there; the marker's id either way."""
    path = directory / MARKER_NAME
    with contextlib.suppress(FileNotFoundError):
        found = read_regular(path, 4096).strip()
        if found:
            return found
    marker = secrets.token_hex(16)
    temp = directory / f"{MARKER_NAME}.{secrets.token_hex(6)}.tmp"
    with open(temp, "x", encoding="ascii") as handle:
        handle.write(marker + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(temp, path)  # never replaces a marker another process wrote meanwhile
    except FileExistsError:
        marker = read_regular(path, 4096).strip()
    finally:
        temp.unlink()
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return marker


def ensure_marker(settings: Settings, store: EventStore) -> str:
    """The marker id of the delivery directory, writing and recording it on first use.

    First use (no `DeliveryDirectoryMarked` in the log: a new root, or a server upgraded
    from before markers): the directory is created if missing, the marker written (or an
    existing one adopted) and its id recorded. Afterwards this only reads the log: it never
    creates a directory or a marker again, so a vanished directory stays a fault. '' when
    the directory cannot be marked (the checks then report why).
    """
    observatory = settings.observatory
    state = directory_state(store, observatory)
    if state.marker:
        return state.marker
    directory = Path(settings.delivery)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        marker = _write_marker(directory)
    except OSError as exc:  # e.g. a file in its place: no marker, so every check fails
        log.error("delivery directory %s cannot be marked: %s", directory, exc)
        return ""
    # Another process recording first is fine: the log's marker is the one.
    with contextlib.suppress(ConcurrencyError):
        store.append(ev.delivery_directory_stream(observatory),
                     ev.DeliveryDirectoryMarked(observatory=observatory,
                                                directory=str(directory), marker=marker),
                     NO_STREAM, meta={"actor": "server"},
                     idempotency_key=f"delivery-directory:{observatory}:marked")
    recorded = directory_state(store, observatory).marker
    if recorded != marker:
        log.error("delivery directory %s: marker %s in the log, %s on disk", directory,
                  recorded, marker)
    else:
        log.info("delivery directory %s marked %s", directory, marker)
    return recorded
