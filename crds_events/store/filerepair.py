"""Repair of the file store at server start: what a crash or a lost race can leave behind.

`crds_events.store.filestore.FileStore.put` writes a hidden ``.incoming-*`` file and links
it to its name; a process killed in between leaves the temporary file. Review puts a
submission's files in the store *before* its decision is recorded and never removes them
(a racing decision may be storing the same names), so a crash or a lost race there can
leave stored files that no event names yet. Both are harmless (the same bytes, put again
atomically by the next confirm), and this repair tidies them:

* ``.incoming-*`` files not written to for ``stale_after`` seconds are deleted (a put in
  progress in another process, e.g. a gunicorn web worker, keeps its file fresh);
* stored files that no event names are *reported*, never deleted: a confirm in another
  process may be about to record them, and nothing here may remove a file the log names.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from crds_events.store.filestore import KINDS, FileStore
from crds_events.store.interface import EventReader

if TYPE_CHECKING:
    from crds_events.config import Settings

__all__ = ["FileStoreRepair", "named_by_events", "repair_file_store"]

log = logging.getLogger(__name__)

TEMP_PREFIX = ".incoming-"


@dataclasses.dataclass
class FileStoreRepair:
    """What `repair_file_store` did: temporary files removed, stored names no event names."""

    removed_temps: list[str] = dataclasses.field(default_factory=list)
    unnamed: list[str] = dataclasses.field(default_factory=list)


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def named_by_events(reader: EventReader, names: Iterable[str]) -> set[str]:
    """Those of ``names`` that some event of the log names (anywhere in its payload)."""
    wanted = set(names)
    found: set[str] = set()
    if not wanted:
        return found
    for record in reader.iter_all():
        for text in _strings(record.data):
            if text in wanted:
                found.add(text)
                wanted.discard(text)
        if not wanted:
            break
    return found


def repair_file_store(settings: Settings, reader: EventReader, *,
                      stale_after: float = 900.0, now: float | None = None
                      ) -> FileStoreRepair:
    """Remove stale ``.incoming-*`` files; report stored files that no event names."""
    store = FileStore.from_settings(settings)
    now = time.time() if now is None else now
    report = FileStoreRepair()
    stored: list[str] = []
    for kind in KINDS:
        directory = store.directory_for(kind)
        if not directory.is_dir():
            continue
        for entry in directory.iterdir():
            if entry.name.startswith(TEMP_PREFIX):
                _remove_if_stale(entry, now - stale_after, report)
            elif not entry.name.startswith(".") and entry.is_file():
                stored.append(entry.name)
    named = named_by_events(reader, stored)
    report.unnamed = sorted(set(stored) - named)
    if report.removed_temps:
        log.info("file store: removed %d abandoned temporary file(s)",
                 len(report.removed_temps))
    if report.unnamed:
        log.warning("file store: %d stored file(s) that no event names (left by an "
                    "interrupted or lost confirm; kept): %s", len(report.unnamed),
                    ", ".join(report.unnamed[:20]))
    return report


def _remove_if_stale(path: Path, cutoff: float, report: FileStoreRepair) -> None:
    try:
        # lstat: never follow a link out of the store; only regular files are ours
        info = path.lstat()
        if info.st_mtime <= cutoff and path.is_file() and not path.is_symlink():
            path.unlink()
            report.removed_temps.append(path.name)
    except FileNotFoundError:
        pass  # finished or removed meanwhile
