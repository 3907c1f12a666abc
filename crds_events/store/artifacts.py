"""Content-addressed blobs for results too large for an event (certify reports, diffs,
generated mappings, lists of dataset ids).

A blob is stored once under ``<root>/artifacts/<first 2 hex>/<sha256 hex>``; its digest (the
64-character SHA-256 hex) is what events carry. Writes are atomic (temporary file, fsync,
link into place) and blobs are read-only, so a reader sees a whole blob or none. Reads check
the digest again, so a damaged blob is reported instead of served.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

from crds_events.errors import CrdsEventsError

__all__ = ["ArtifactStore", "ArtifactError", "ArtifactNotFound", "json_bytes"]

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class ArtifactError(CrdsEventsError, ValueError):
    """A malformed digest or a blob whose content no longer matches its digest."""


class ArtifactNotFound(ArtifactError, KeyError):
    """No blob with that digest is stored."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def json_bytes(value: Any) -> bytes:
    """The canonical JSON of ``value`` (sorted keys, compact), so equal values share a blob."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class ArtifactStore:
    """Blobs under ``directory`` (normally ``<root>/artifacts``)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    @classmethod
    def for_root(cls, root: str | os.PathLike) -> ArtifactStore:
        return cls(Path(root) / "artifacts")

    def path_for(self, digest: str) -> Path:
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise ArtifactError(f"artifact digest {digest!r}: expected 64 lower-case hex digits")
        return self.directory / digest[:2] / digest

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).is_file()

    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; return its digest (storing it again changes nothing)."""
        data = bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        target = self.path_for(digest)
        if target.is_file():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=".incoming-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(temp_name, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            # FileExistsError: a concurrent writer stored the same content
            with contextlib.suppress(FileExistsError):
                os.link(temp_name, target)
            dir_fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        finally:
            Path(temp_name).unlink(missing_ok=True)
        return digest

    def put_json(self, value: Any) -> str:
        return self.put_bytes(json_bytes(value))

    def put_text(self, text: str) -> str:
        return self.put_bytes(text.encode("utf-8"))

    def put(self, value: Any) -> str:
        """Bytes are stored as they are; str as UTF-8; anything else as canonical JSON."""
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self.put_bytes(bytes(value))
        if isinstance(value, str):
            return self.put_text(value)
        return self.put_json(value)

    def get(self, digest: str) -> bytes:
        return self.get_bytes(digest)

    def get_bytes(self, digest: str, *, verify: bool = True) -> bytes:
        path = self.path_for(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactNotFound(f"artifact {digest}: not stored in {self.directory}") from None
        if verify and hashlib.sha256(data).hexdigest() != digest:
            raise ArtifactError(f"artifact {digest}: content does not match its digest ({path})")
        return data

    def get_json(self, digest: str) -> Any:
        return json.loads(self.get_bytes(digest))

    def get_text(self, digest: str) -> str:
        return self.get_bytes(digest).decode("utf-8")
