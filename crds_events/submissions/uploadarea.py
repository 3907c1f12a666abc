"""A user's upload area: files uploaded one by one (``crds submit``) before a submission form
takes them all, as CRDS's per-user ingest directory works.

The area is ``<ingest>/<user>/.crds-uploads/``: hidden, so the ingest watcher never takes it
for a drop, and on the ingest file system, so a submission links its files instead of
copying them. Only complete files ever appear under their own name there:

* a whole-file upload is written to a private partial file and renamed into place;
* a chunked upload (``Content-Range: bytes START-END/TOTAL``) appends each chunk to its own
  partial file ``.partial/<session>.<name>`` (per uploading session, so two uploads of the
  same name at once never write into one file) and is renamed into place once TOTAL bytes
  are there. The last complete upload of a name wins, whole.

`claim` moves every complete file into a private claim directory with one rename each, so
two submissions posted at once never both take a file; `release` puts the files of a
submission that was refused back (unless a newer upload of the name arrived meanwhile),
`discard` removes them once the submission is dropped.

Names follow the project's one rule (`crds_events.store.filestore.is_safe_name`); sizes are
bounded by the submission file limit (`crds_events.submissions.manifest.DEFAULT_MAX_FILE_SIZE`
unless the settings say ``max_file_size``). Errors never name a server path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import re
import secrets
import shutil
import stat
import time
from pathlib import Path
from typing import BinaryIO

from crds_events.config import Settings
from crds_events.errors import CrdsEventsError
from crds_events.store.filestore import is_safe_name
from crds_events.submissions.manifest import DEFAULT_MAX_FILE_SIZE

__all__ = [
    "AREA_NAME",
    "AreaFile",
    "UploadAreaError",
    "area_dir",
    "claim",
    "delete_file",
    "discard",
    "list_files",
    "max_file_size",
    "parse_content_range",
    "release",
    "save_chunk",
    "save_whole",
]

AREA_NAME = ".crds-uploads"
_PARTIAL = ".partial"
_CLAIM_PREFIX = ".claim-"
STALE_PARTIAL_SECONDS = 24 * 3600  # a partial untouched this long was abandoned
_COPY_BLOCK = 1024 * 1024
_RANGE = re.compile(r"^\s*bytes\s+(\d{1,19})-(\d{1,19})/(\d{1,19})\s*$")
_SESSION = re.compile(r"^[0-9a-f]{16,64}$")


class UploadAreaError(CrdsEventsError, ValueError):
    """An upload refused: ``field`` names what was wrong, ``status`` the HTTP answer."""

    def __init__(self, field: str, reason: str, status: int = 400):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.status = status


@dataclasses.dataclass(frozen=True)
class AreaFile:
    """A complete file in the area."""

    name: str
    size: int


def max_file_size(settings: Settings) -> int:
    """The largest file the area (and a submission) takes."""
    return int(getattr(settings, "max_file_size", 0) or DEFAULT_MAX_FILE_SIZE)


def _check_user(user: str) -> str:
    if not user or "/" in user or "\\" in user or "\0" in user or user.startswith("."):
        raise UploadAreaError("user", f"{user!r} is not a user name")
    return user


def check_name(name: str) -> str:
    """``name`` if it is a plain file name, else `UploadAreaError` naming the rule."""
    if not isinstance(name, str) or len(name) > 255 or not is_safe_name(name):
        raise UploadAreaError("files", f"{str(name)[:80]!r} is not a plain file name "
                                       f"(letters, digits, '_.+-'; no path, no '..')")
    return name


def area_dir(settings: Settings, user: str, *, create: bool = False) -> Path:
    """The area of ``user`` (made, with its partial directory, when ``create``)."""
    path = Path(settings.ingest) / _check_user(user) / AREA_NAME
    if create:
        (path / _PARTIAL).mkdir(parents=True, exist_ok=True)
    return path


def _regular(path: Path) -> os.stat_result | None:
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return info if stat.S_ISREG(info.st_mode) else None


def list_files(settings: Settings, user: str) -> list[AreaFile]:
    """The complete files of ``user``'s area, by name (partials and claims are hidden)."""
    area = area_dir(settings, user)
    try:
        entries = list(os.scandir(area))
    except OSError:
        return []
    files = []
    for entry in entries:
        if entry.name.startswith(".") or not is_safe_name(entry.name):
            continue
        info = _regular(Path(entry.path))
        if info is not None:
            files.append(AreaFile(entry.name, info.st_size))
    return sorted(files, key=lambda f: f.name)


def delete_file(settings: Settings, user: str, name: str) -> bool:
    """Remove ``name`` from the area; whether it was there."""
    path = area_dir(settings, user) / check_name(name)
    if _regular(path) is None:
        return False
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
        return True
    return False


def parse_content_range(header: str) -> tuple[int, int, int]:
    """``(start, end, total)`` of ``bytes START-END/TOTAL`` (`UploadAreaError` otherwise)."""
    match = _RANGE.match(header or "")
    if not match:
        raise UploadAreaError("Content-Range", f"{header[:80]!r}: expected 'bytes "
                                               f"START-END/TOTAL'")
    start, end, total = (int(g) for g in match.groups())
    if not start <= end < total:
        raise UploadAreaError("Content-Range", f"{header[:80]!r}: needs START <= END < TOTAL")
    return start, end, total


def _too_large(settings: Settings, size: int) -> UploadAreaError:
    return UploadAreaError("files", f"{size} bytes is over the upload limit of "
                                    f"{max_file_size(settings)} bytes per file", 413)


def _copy(source: BinaryIO, target: BinaryIO, limit: int) -> int:
    """Copy at most ``limit`` bytes (one more is read: that says "too long"); bytes copied."""
    copied = 0
    while True:
        block = source.read(min(_COPY_BLOCK, limit - copied + 1))
        if not block:
            return copied
        copied += len(block)
        if copied > limit:
            return copied
        target.write(block)


def _publish(partial: Path, final: Path) -> None:
    """Make the complete partial file the area's file of its name (one atomic rename)."""
    with open(partial, "rb") as stream:
        os.fsync(stream.fileno())
    os.replace(partial, final)


def remove_stale_partials(settings: Settings, user: str,
                          older_than: float = STALE_PARTIAL_SECONDS) -> None:
    """Remove the partial files and claims that killed uploads or requests left behind."""
    area = area_dir(settings, user)
    cutoff = time.time() - older_than
    for directory, prefix in ((area / _PARTIAL, ""), (area, _CLAIM_PREFIX)):
        with contextlib.suppress(OSError):
            for entry in os.scandir(directory):
                if not entry.name.startswith(prefix):
                    continue
                with contextlib.suppress(OSError):
                    info = entry.stat(follow_symlinks=False)
                    if info.st_mtime >= cutoff:
                        continue
                    if stat.S_ISDIR(info.st_mode):
                        shutil.rmtree(entry.path)
                    else:
                        os.unlink(entry.path)


def save_whole(settings: Settings, user: str, name: str, source: BinaryIO) -> AreaFile:
    """Store an upload sent in one piece as ``name`` (replacing an earlier one, whole)."""
    check_name(name)
    area = area_dir(settings, user, create=True)
    partial = area / _PARTIAL / f"whole-{secrets.token_hex(8)}.{name}"
    limit = max_file_size(settings)
    try:
        with open(partial, "xb") as target:
            size = _copy(source, target, limit)
        if size > limit:
            raise _too_large(settings, size)
        if size == 0:
            raise UploadAreaError("files", f"{name!r} is empty")
        _publish(partial, area / name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
    return AreaFile(name, size)


def save_chunk(settings: Settings, user: str, session: str, name: str, source: BinaryIO,
               content_range: str) -> tuple[AreaFile, bool]:
    """Append one chunk of ``name`` sent by ``session``; ``(file so far, complete)``.

    Chunks come in order: START must be 0 (a new upload: an earlier partial of this session
    is dropped) or the partial's size. The chunk's length must be END - START + 1, and TOTAL
    within the file limit. On the last chunk the file replaces the area's file of its name.
    """
    check_name(name)
    if not _SESSION.match(session or ""):
        raise UploadAreaError("session", "no upload session: log in again")
    start, end, total = parse_content_range(content_range)
    if total > max_file_size(settings):
        raise _too_large(settings, total)
    area = area_dir(settings, user, create=True)
    if start == 0:
        remove_stale_partials(settings, user)
    partial = area / _PARTIAL / f"{session}.{name}"
    expected = end - start + 1
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(partial, flags, 0o640)
    with open(fd, "r+b") as target:
        # one writer per partial at a time: a client sending chunks in parallel is told off
        # below rather than interleaving bytes
        fcntl.flock(target.fileno(), fcntl.LOCK_EX)
        have = os.fstat(target.fileno()).st_size
        if start == 0:
            target.truncate(0)
            have = 0
        if start != have:
            if have == 0:  # made by this very request: leave nothing behind
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(partial)
            raise UploadAreaError("Content-Range", f"chunk starts at byte {start} but "
                                                   f"{have} bytes of {name!r} arrived so far "
                                                   f"(send the chunks in order)", 409)
        target.seek(start)
        copied = _copy(source, target, expected)
        if copied != expected:
            target.truncate(start)  # the partial stays as it was before this chunk
            raise UploadAreaError("files", f"chunk of {copied} bytes where Content-Range "
                                           f"says {expected}")
        target.flush()
        complete = end + 1 == total
        if complete:
            os.fsync(target.fileno())
            os.replace(partial, area / name)
    return AreaFile(name, end + 1), complete


def claim(settings: Settings, user: str) -> tuple[Path, list[str]]:
    """Move every complete file of the area into a new private claim directory (one rename
    each: a file is claimed by one submission only); ``(claim directory, names)``."""
    area = area_dir(settings, user, create=True)
    directory = area / f"{_CLAIM_PREFIX}{secrets.token_hex(8)}"
    directory.mkdir()
    names = []
    for item in list_files(settings, user):
        try:
            os.rename(area / item.name, directory / item.name)
        except FileNotFoundError:
            continue  # deleted or claimed by another submission meanwhile
        names.append(item.name)
    return directory, names


def release(settings: Settings, user: str, directory: Path) -> None:
    """Put a refused submission's claimed files back (a newer upload of a name wins)."""
    area = area_dir(settings, user)
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            # link, not rename: it fails when a newer upload of the name arrived meanwhile
            with contextlib.suppress(OSError):
                os.link(entry.path, area / entry.name)
    discard(directory)


def discard(directory: Path) -> None:
    """Remove a claim directory (its files are in a submission's drop now)."""
    shutil.rmtree(directory, ignore_errors=True)
