"""The server's file cache, laid out as a CRDS cache: ``mappings/<obs>/`` and ``references/<obs>/``.

Files enter only through `FileStore.put`, which is atomic and write-once:

* the content is written to a hidden temporary file in the target directory, hashed on the
  way, ``fsync``'d and made read-only;
* it is then *linked* to its final name (``os.link`` fails if the name exists, so two writers
  can never overwrite each other), the temporary name removed and the directory synced;
* a name that already holds the same bytes is a no-op; different bytes are refused.

Names are plain basenames: anything with a path separator, ``..``, a leading dot, an
absolute path or a control character is refused, so no name can point outside the store.
Names coming from outside (uploads, download URLs) must also pass the stricter CRDS rule
`is_safe_name`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from crds_events.errors import CrdsEventsError
from crds_events.files.checksums import sha1_file
from crds_events.rules.naming import MAPPING_KINDS

if TYPE_CHECKING:
    from crds_events.config import Settings

__all__ = ["FileStore", "FileStoreError", "SAFE_NAME", "check_name", "file_kind",
           "fsync_path", "is_safe_name"]

KINDS = ("mapping", "reference")
_CHUNK = 1 << 20
_READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


class FileStoreError(CrdsEventsError, ValueError):
    """A name or content the file store refuses (the message names the file and why)."""


def check_name(name: object) -> str:
    """``name`` if it is a plain, visible basename; `FileStoreError` otherwise."""
    if not isinstance(name, str) or not name:
        raise FileStoreError(f"file name {name!r}: must be a non-empty string")
    if "/" in name or "\\" in name or os.sep in name or (os.altsep and os.altsep in name):
        raise FileStoreError(f"file name {name!r}: must be a plain name, not a path")
    if name in (".", "..") or name.startswith("."):
        raise FileStoreError(f"file name {name!r}: hidden and relative names are not allowed")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise FileStoreError(f"file name {name!r}: contains control characters")
    if len(name.encode("utf-8")) > 255:
        raise FileStoreError(f"file name {name[:40]!r}...: longer than 255 bytes")
    return name


# The names a file may have when it comes from outside (an upload, a download URL): CRDS
# file names are letters, digits and ``_ . + -``, starting with a letter, digit or ``_``.
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,254}$")


def is_safe_name(name: str) -> bool:
    """Is ``name`` a plain CRDS file name (`SAFE_NAME`, no ``..``)? The one rule for the
    names of uploaded files, submission ids in URLs and files asked for by download."""
    return bool(SAFE_NAME.match(name)) and ".." not in name


def file_kind(name: str) -> str:
    """``mapping`` for .pmap/.imap/.rmap names, else ``reference``."""
    return "mapping" if os.path.splitext(name)[1] in MAPPING_KINDS else "reference"


def fsync_path(path: str | os.PathLike) -> None:
    """fsync a file or a directory (a directory: so the names created in it are durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileStore:
    """The file cache of one observatory under ``directory`` (``settings.store``)."""

    def __init__(self, directory: str | os.PathLike | Settings, observatory: str | None = None):
        """``FileStore(settings)`` or ``FileStore(directory, observatory)``."""
        if observatory is None:
            if not hasattr(directory, "store"):
                raise TypeError("FileStore(directory, observatory) or FileStore(settings)")
            directory, observatory = directory.store, directory.observatory
        self.directory = Path(directory)
        self.observatory = observatory

    @classmethod
    def from_settings(cls, settings: Settings) -> FileStore:
        return cls(settings.store, settings.observatory)

    @property
    def mappings_dir(self) -> Path:
        return self.directory_for("mapping")

    @property
    def references_dir(self) -> Path:
        return self.directory_for("reference")

    def directory_for(self, kind: str) -> Path:
        if kind not in KINDS:
            raise FileStoreError(f"kind {kind!r}: must be one of {', '.join(KINDS)}")
        return self.directory / f"{kind}s" / self.observatory

    def path_for(self, name: str, kind: str | None = None) -> Path:
        """Where ``name`` lives (or would live); the kind defaults to the name's extension."""
        check_name(name)
        return self.directory_for(kind or file_kind(name)) / name

    def exists(self, name: str, kind: str | None = None) -> bool:
        return self.path_for(name, kind).is_file()

    def sha1_of(self, name: str, kind: str | None = None) -> str:
        """The sha1 of a stored file (`FileNotFoundError` if absent)."""
        return sha1_file(self.path_for(name, kind))[0]

    def names(self, kind: str) -> list[str]:
        """Stored names of one kind, sorted (temporary files excluded)."""
        directory = self.directory_for(kind)
        if not directory.is_dir():
            return []
        return sorted(p.name for p in directory.iterdir()
                      if not p.name.startswith(".") and p.is_file())

    def put(self, source: str | os.PathLike | bytes, name: str,
            kind: str | None = None) -> tuple[str, int]:
        """Store ``source`` (a path or the bytes) as ``name``; return ``(sha1, size)``.

        Storing the same bytes under a name again is harmless; different bytes under an
        existing name raise `FileStoreError` and leave the stored file as it was.
        """
        check_name(name)
        kind = kind or file_kind(name)
        target = self.path_for(name, kind)
        if isinstance(source, (str, os.PathLike)) and not Path(source).is_file():
            raise FileStoreError(f"{name}: source {os.fspath(source)!r} is not a file")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=".incoming-", dir=target.parent)
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                sha1, size = self._copy(source, out)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temp, _READ_ONLY)
            try:
                os.link(temp, target)  # fails rather than replace an existing file
            except FileExistsError:
                existing = sha1_file(target)[0]
                if existing != sha1:
                    raise FileStoreError(
                        f"{name}: already stored with different content (sha1 {existing}, "
                        f"new {sha1}); stored files are never replaced"
                    ) from None
            fsync_path(target.parent)
        finally:
            temp.unlink(missing_ok=True)
        return sha1, size

    @staticmethod
    def _copy(source: str | os.PathLike | bytes, out: BinaryIO) -> tuple[str, int]:
        digest = hashlib.sha1()
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            digest.update(data)
            out.write(data)
            return digest.hexdigest(), len(data)
        size = 0
        with open(source, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
        return digest.hexdigest(), size

    def copy_out(self, name: str, destination: str | os.PathLike, kind: str | None = None) -> Path:
        """Copy a stored file to ``destination`` (a directory or a file path)."""
        return Path(shutil.copy(self.path_for(name, kind), destination))

    # Short names, as the submission flow calls them.
    def add(self, source: str | os.PathLike | bytes, name: str,
            kind: str | None = None) -> tuple[str, int]:
        return self.put(source, name, kind)

    def path(self, name: str, kind: str | None = None) -> Path:
        return self.path_for(name, kind)
