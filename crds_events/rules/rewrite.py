"""Checking and rewriting the sha1sum of mapping files on disk (`crds checksum` for rules).

`rewrite_mapping_checksum` does what `crds checksum FILE` does for a mapping: refuse a file
with duplicate header or selector keys (rewriting would silently drop all but the last),
otherwise load it without verifying the checksum and write it back in canonical form with
a fresh sha1sum. `verify_mapping_checksum` does what `crds checksum --verify` does: load
the mapping with its checksum verified and report the outcome.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from crds_events.rules import document
from crds_events.rules.canonical import rewrite_text
from crds_events.rules.checksum import mapping_checksum, read_mapping_text, stored_checksum
from crds_events.rules.parse import (
    ChecksumError,
    MappingError,
    MappingFormatError,
    duplicate_keys,
    parse_mapping,
)

__all__ = ["ChecksumStatus", "rewrite_mapping_checksum", "verify_mapping_checksum"]


@dataclass(frozen=True)
class ChecksumStatus:
    path: str
    status: str  # 'OK', 'mismatch' (wrong or missing sha1sum) or 'error' (does not load)
    message: str = ""
    stored: str | None = None
    computed: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "OK"

    def __str__(self) -> str:
        return f"{self.path}: {self.status}" + (f" ({self.message})" if self.message else "")


def verify_mapping_checksum(path: str | os.PathLike) -> ChecksumStatus:
    """Load the mapping at `path` with its checksum verified; say how that went."""
    name = os.fspath(path)
    try:
        doc = document.load_mapping(Path(path), name=name)
    except ChecksumError as exc:
        text = read_mapping_text(path)
        header = parse_mapping(text, name).header
        return ChecksumStatus(name, "mismatch", str(exc), stored_checksum(header),
                              mapping_checksum(text))
    except (MappingError, OSError) as exc:
        return ChecksumStatus(name, "error", f"{type(exc).__name__}: {exc}")
    return ChecksumStatus(name, "OK", "", doc.stored_sha1, doc.computed_sha1)


def _refuse_duplicates(parsed, name: str) -> None:
    dups = [f"header key {key!r}" for key in parsed.header_duplicates]
    for call in parsed.selector.walk():
        for key, lines in duplicate_keys(call).items():
            where = ", ".join(map(str, lines))
            dups.append(f"{call.name} key {key!r} (lines {where})")
    if dups:
        raise MappingFormatError(
            "not rewritten, all but the last of each would be lost: "
            + "; ".join(dups),
            filename=name, construct="duplicate keys",
        )


def rewrite_mapping_checksum(path: str | os.PathLike) -> str:
    """Rewrite the mapping at `path` in canonical form with a fresh sha1sum; return the sum.

    Raises MappingError (file untouched) for text that does not load as a mapping or has
    duplicate keys, and OSError where the file cannot be read or replaced.
    """
    path = Path(path)
    name = os.fspath(path)
    text = read_mapping_text(path)
    parsed = parse_mapping(text, name)
    _refuse_duplicates(parsed, name)
    # Like `crds checksum` (a generic Mapping load): selector shape and the base header keys.
    doc = document.load_mapping_text(text, name, ignore_checksum=True, generic=True)
    new_text = rewrite_text(doc.parsed)
    if not os.access(path, os.W_OK):
        raise PermissionError(f"{name}: file is not writable")
    _replace_file(path, new_text)
    return mapping_checksum(new_text)


def _replace_file(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (a reader never sees half a mapping)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
