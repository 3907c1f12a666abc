"""Adopt an existing CRDS cache: catalog a context's files as archived history.

`import_cache` loads a pipeline context (every mapping, checksums verified, each child
checked against its parent), copies each mapping and each reference that is present into
the server's file store, and records them as already archived and released:

* ``FileCataloged`` on the stream ``delivery:import:<pmap>`` (no ``DeliveryCreated``: these
  files were never delivered by this server, so no delivery row appears), then
* ``FileReleased`` on ``file:<name>``: the files projection shows them ``archived`` and
  available, with sha1, size, instrument and filekind;
* ``ContextSet`` for each requested pointer (``latest``, ``edit``, ...), with ``previous``.

A GEIS reference is its header (``x.r1h``, the name the rules give) and its data file
(``x.r1d``) beside it: the data file is cataloged and released with the header (same
instrument and type), after `crds_events.files.geis.check_pair` (present, a regular file
staying in the directory, as long as the header says); one that is absent is counted with
the absent references, one that fails the check is an error naming it.

Each event carries an idempotency key derived from the file's name and sha1 (or the pointer
transition), and files already cataloged with the same sha1 are skipped, so importing the
same context twice adds nothing, and importing a second context adds only its new files.
A file already cataloged with *different* content is an error, and nothing is recorded.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from crds_events import events as ev
from crds_events.config import Settings
from crds_events.contexts.pointers import context_pointers
from crds_events.errors import CrdsEventsError
from crds_events.files.errors import ReferenceFileError
from crds_events.files.geis import check_pair, geis_data_name, is_geis_data, is_geis_header
from crds_events.rules.conditioning import is_na_value, is_omit_value
from crds_events.rules.context import ContextLoadError, MappingStore, PipelineContext
from crds_events.rules.parse import MappingError
from crds_events.store.filestore import FileStore, FileStoreError, check_name
from crds_events.store.interface import EventReader, EventStore, Transaction

__all__ = ["ImportCacheError", "ImportResult", "CatalogEntry",
           "import_cache", "plan_import"]

POINTERS = ("latest", "edit", "versions", "build")
_BATCH = 2000  # files per write transaction: bounded lock hold time on big caches

# (stage, done, total): stage is "loading", "storing" or "recording"
Progress = Callable[[str, int, int], None]


class ImportCacheError(CrdsEventsError, ValueError):
    """The cache cannot be imported (the message names the file and the reason)."""


@dataclasses.dataclass(frozen=True)
class CatalogEntry:
    name: str
    path: Path
    kind: str  # mapping | reference
    instrument: str
    filekind: str


@dataclasses.dataclass
class ImportResult:
    context: str
    mappings: int = 0  # mappings in the context
    references: int = 0  # references present and imported (GEIS headers, not their data)
    data_files: int = 0  # GEIS data files imported with their headers
    missing_references: int = 0  # named by the context but absent from references_dir
    cataloged: int = 0  # files newly cataloged by this run
    pointers_set: list[str] = dataclasses.field(default_factory=list)
    events: int = 0  # events appended by this run

    def summary(self) -> str:
        pointers = ", ".join(self.pointers_set) or "none changed"
        data = f" + {self.data_files} GEIS data files" if self.data_files else ""
        return (f"{self.context}: {self.mappings} mappings, {self.references} references{data} "
                f"({self.missing_references} named but absent); {self.cataloged} newly "
                f"cataloged, {self.events} events; pointers: {pointers}")


def _text(value: object) -> str:
    return "" if value is None else str(value).lower()


def plan_import(mappings_dir: str | os.PathLike, context: str,
                references_dir: str | os.PathLike | None = None,
                observatory: str | None = None) -> tuple[list[CatalogEntry], int]:
    """The files to import (mappings first, pmap first) and the number of absent references.

    Loads the whole context with checksums verified; `ImportCacheError` names the bad file.
    """
    mappings_dir = Path(mappings_dir)
    if not mappings_dir.is_dir():
        raise ImportCacheError(f"--mappings {mappings_dir}: not a directory")
    if references_dir is not None and not Path(references_dir).is_dir():
        raise ImportCacheError(f"--references {references_dir}: not a directory")
    try:
        check_name(context)
    except FileStoreError as exc:
        raise ImportCacheError(f"--context: {exc}") from None
    if not context.endswith(".pmap"):
        raise ImportCacheError(f"--context {context!r}: must name a .pmap")
    # one listing instead of a stat per name: a context names ~10^4-10^5 references
    present = set(os.listdir(references_dir)) if references_dir is not None else set()
    store = MappingStore(mappings_dir)
    try:
        pmap = PipelineContext(store.document(context), store)
        if observatory is not None and pmap.observatory.lower() != observatory:
            raise ImportCacheError(
                f"{context}: observatory {pmap.observatory!r}, but this server manages "
                f"{observatory!r}"
            )
        entries = [CatalogEntry(pmap.name, mappings_dir / pmap.name, "mapping", "", "")]
        references: dict[str, CatalogEntry] = {}
        missing: set[str] = set()
        for instrument in pmap.instruments:
            value = pmap.selections[instrument]
            if isinstance(value, str) and (is_na_value(value) or is_omit_value(value)):
                continue  # an instrument this context does not serve
            imap = pmap.imap(instrument)
            entries.append(CatalogEntry(imap.name, mappings_dir / imap.name, "mapping",
                                        instrument, ""))
            for filekind, rmap in sorted(imap.rmaps().items()):
                entries.append(CatalogEntry(rmap.name, mappings_dir / rmap.name, "mapping",
                                            instrument, filekind))
                for name in rmap.reference_names():
                    if references_dir is None or name in references:
                        continue
                    path = Path(references_dir) / name
                    if name in present and "/" not in name and path.is_file():
                        references[name] = CatalogEntry(name, path, "reference",
                                                        instrument, filekind)
                        if is_geis_header(name):
                            _add_geis_data(references[name], present, references, missing)
                    else:
                        missing.add(name)
    except (ContextLoadError, MappingError, OSError) as exc:
        raise ImportCacheError(f"{mappings_dir / context}: {exc}") from None
    # one mapping may be shared by instruments (not in CRDS, but harmless): keep the first
    unique = {}
    for entry in entries:
        unique.setdefault(entry.name, entry)
    return [*unique.values(), *(references[n] for n in sorted(references))], len(missing)


def _add_geis_data(header: CatalogEntry, present: set[str],
                   references: dict[str, CatalogEntry], missing: set[str]) -> None:
    """The data file of the GEIS ``header`` into ``references`` (or ``missing``)."""
    name = geis_data_name(header.name)
    if name not in present:
        missing.add(name)
        return
    try:
        check_pair(header.path)
    except ReferenceFileError as exc:  # "<file>: <why>", the file's name, not its path
        raise ImportCacheError(f"GEIS reference {header.name}: {exc}") from None
    references[name] = dataclasses.replace(header, name=name, path=header.path.with_name(name))


def _cataloged(store: EventReader) -> dict[str, str]:
    """name -> sha1 of every file the log has cataloged."""
    return {r.data["name"]: r.data["sha1"]
            for r in store.read_all(types=[ev.FileCataloged.type])}


def import_cache(
    settings: Settings,
    store: EventStore,
    mappings_dir: str | os.PathLike,
    references_dir: str | os.PathLike | None = None,
    context: str = "",
    set_pointers: Sequence[str] = ("latest", "edit"),
    *,
    actor: str | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Import ``context`` (a pmap name in ``mappings_dir``) into the file store and the log.

    See the module docstring. ``progress(stage, done, total)`` reports each stage.
    """
    pointers = list(dict.fromkeys(p.strip() for p in set_pointers if p.strip()))
    for pointer in pointers:
        if pointer not in POINTERS:
            raise ImportCacheError(f"--set {pointer!r}: must be one of {', '.join(POINTERS)}")
    if progress:
        progress("loading", 0, 1)
    entries, missing = plan_import(mappings_dir, context, references_dir, settings.observatory)
    if progress:
        progress("loading", 1, 1)
    result = ImportResult(context=context, missing_references=missing,
                          mappings=sum(e.kind == "mapping" for e in entries),
                          references=sum(e.kind == "reference" and not is_geis_data(e.name)
                                         for e in entries),
                          data_files=sum(e.kind == "reference" and is_geis_data(e.name)
                                         for e in entries))

    known = _cataloged(store)
    files = FileStore.from_settings(settings)
    stored: list[tuple[CatalogEntry, str, int]] = []
    for done, entry in enumerate(entries, 1):
        try:
            sha1, size = files.put(entry.path, entry.name, entry.kind)
        except (FileStoreError, OSError) as exc:
            raise ImportCacheError(f"{entry.path}: cannot store: {exc}") from None
        if entry.name in known and known[entry.name] != sha1:
            raise ImportCacheError(
                f"{entry.path}: {entry.name} is already cataloged with sha1 "
                f"{known[entry.name]}, this file has {sha1}"
            )
        stored.append((entry, sha1, size))
        if progress:
            progress("storing", done, len(entries))

    new = [(e, sha1, size) for e, sha1, size in stored if e.name not in known]
    delivery = f"import:{context}"
    meta = {"actor": actor} if actor else None
    for start in range(0, len(new), _BATCH):
        with store.transaction() as tx:
            for entry, sha1, size in new[start:start + _BATCH]:
                result.events += _record_file(tx, settings.observatory, delivery, entry, sha1,
                                              size, meta)
                result.cataloged += 1
        if progress:
            progress("recording", min(start + _BATCH, len(new)), len(new))
    result.pointers_set = _set_pointers(store, settings.observatory, context, pointers, meta,
                                        result)
    return result


def _record_file(tx: Transaction, observatory: str, delivery: str, entry: CatalogEntry, sha1: str,
                 size: int, meta) -> int:
    appended = 0
    cataloged = tx.record(
        ev.FileCataloged(name=entry.name, delivery=delivery, observatory=observatory,
                         sha1=sha1, size=size, kind=entry.kind, instrument=entry.instrument,
                         filekind=entry.filekind),
        meta=meta, idempotency_key=f"import-cache:cataloged:{entry.name}:{sha1}",
    )
    appended += not cataloged.duplicate
    released = tx.record(
        ev.FileReleased(name=entry.name, delivery=delivery),
        meta=meta, idempotency_key=f"import-cache:released:{entry.name}:{sha1}",
    )
    appended += not released.duplicate
    return appended


def _set_pointers(store: EventStore, observatory: str, context: str, pointers: Iterable[str], meta,
                  result: ImportResult) -> list[str]:
    changed = []
    with store.transaction() as tx:
        current = context_pointers(tx, observatory)
        for pointer in pointers:
            previous = current.get(pointer)
            if previous == context:
                continue
            appended = tx.record(
                ev.ContextSet(observatory=observatory, kind=pointer, context=context,
                              previous=previous, description="imported from a CRDS cache"),
                meta=meta,
                idempotency_key=f"import-cache:context:{observatory}:{pointer}:"
                                f"{previous}->{context}",
            )
            if not appended.duplicate:
                changed.append(f"{pointer}={context}")
                result.events += 1
    return changed
