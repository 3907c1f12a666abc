"""What a context contains and which mappings use a file: the rules graph of the file store.

Two questions asked by set-context and mark-bad, answered from the mapping files in the
server's file store (``store/mappings/<obs>/``), parsed with `crds_events.rules`, never
evaluated:

* `context_contents`: every mapping and reference a pmap names, through its imaps and rmaps
  (``N/A`` and ``OMIT`` entries are not files);
* `users_of`: every stored mapping that names a file, directly or through other mappings
  (an rmap naming a reference, the imaps naming that rmap, the pmaps naming those imaps).

Stored files are write-once (`crds_events.store.filestore`), so each mapping's children are
parsed once per process and cached by path.

`file_rows` is the ``files`` catalog as of the log's head (the projection table alone may lag
behind a write this process just made).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from crds_events.errors import CrdsEventsError
from crds_events.rules.conditioning import is_na_value, is_omit_value
from crds_events.rules.document import load_mapping
from crds_events.rules.naming import MAPPING_KINDS
from crds_events.rules.parse import Call, MappingError
from crds_events.store.filestore import FileStore, FileStoreError, check_name
from crds_events.store.folds import FILES, Row
from crds_events.store.interface import EventStore, Transaction
from crds_events.store.projections import current_rows

__all__ = [
    "ContentsError",
    "ContextContents",
    "context_contents",
    "file_rows",
    "is_mapping",
    "mapping_children",
    "users_of",
]


class ContentsError(CrdsEventsError, ValueError):
    """A mapping that is missing from the file store or cannot be read (names it)."""


def is_mapping(name: str) -> bool:
    return os.path.splitext(name)[1] in MAPPING_KINDS


_CACHE: dict[Path, tuple[str, tuple[str, ...]]] = {}
_CACHE_LOCK = threading.Lock()


def _values(value: object) -> Iterable[object]:
    if isinstance(value, tuple | list):
        return value
    if isinstance(value, dict):
        return value.values()
    return (value,)


def _children_of(selector: Call) -> tuple[str, ...]:
    names: set[str] = set()
    for call in selector.walk():
        for _, value in call.entries:
            if isinstance(value, Call):
                continue  # walked on its own
            for item in _values(value):
                if isinstance(item, str) and not (is_na_value(item) or is_omit_value(item)):
                    # HST test pmaps name children by a repository path; files go by basename
                    names.add(os.path.basename(item))
    return tuple(sorted(names))


def mapping_children(files: FileStore, name: str) -> tuple[str, tuple[str, ...]]:
    """``(kind, children)`` of the stored mapping ``name``: kind is pipeline, instrument or
    reference; children are the file names its selector names (mappings or references)."""
    try:
        path = files.path_for(check_name(name), "mapping")
    except FileStoreError as exc:
        raise ContentsError(str(exc)) from None
    with _CACHE_LOCK:
        cached = _CACHE.get(path)
    if cached is not None:
        return cached
    if not path.is_file():
        raise ContentsError(f"mapping {name}: not in the file store ({path.parent})")
    try:
        # stored mappings were verified when they entered the store: skip the sha1sum
        document = load_mapping(path, ignore_checksum=True)
    except (MappingError, OSError, UnicodeDecodeError) as exc:
        raise ContentsError(f"mapping {name}: cannot be read: {exc}") from None
    result = (document.kind, _children_of(document.selector))
    with _CACHE_LOCK:
        _CACHE[path] = result
    return result


@dataclasses.dataclass(frozen=True)
class ContextContents:
    pmap: str
    mappings: tuple[str, ...]  # the pmap first, then its imaps and rmaps, sorted
    references: tuple[str, ...]  # sorted
    parents: dict[str, tuple[str, ...]]  # file -> the mappings of this context naming it

    @property
    def names(self) -> tuple[str, ...]:
        return self.mappings + self.references

    def path_to(self, name: str) -> list[str]:
        """One chain pmap -> ... -> ``name`` (for messages: where a bad file is used)."""
        chain = [name]
        while chain[-1] != self.pmap and self.parents.get(chain[-1]):
            chain.append(self.parents[chain[-1]][0])
        return list(reversed(chain))


def context_contents(files: FileStore, pmap: str) -> ContextContents:
    """Every mapping and reference ``pmap`` names, loaded from the file store.

    `ContentsError` names a missing or unreadable mapping and which mapping names it.
    """
    kind, _ = mapping_children(files, pmap)
    if kind != "pipeline":
        raise ContentsError(f"{pmap}: a {kind} mapping, not a pipeline context (.pmap)")
    parents: dict[str, list[str]] = {}
    mappings: list[str] = [pmap]
    references: set[str] = set()
    seen = {pmap}
    queue = [pmap]
    while queue:
        parent = queue.pop()
        try:
            _, children = mapping_children(files, parent)
        except ContentsError as exc:
            named_by = parents.get(parent)
            where = f" (named by {named_by[0]})" if named_by else ""
            raise ContentsError(f"{exc}{where}") from None
        for child in children:
            parents.setdefault(child, []).append(parent)
            if child in seen:
                continue
            seen.add(child)
            if is_mapping(child):
                mappings.append(child)
                queue.append(child)
            else:
                references.add(child)
    return ContextContents(
        pmap=pmap, mappings=(pmap, *sorted(mappings[1:])), references=tuple(sorted(references)),
        parents={name: tuple(sorted(names)) for name, names in parents.items()},
    )


def users_of(files: FileStore, names: Iterable[str],
             mappings: Iterable[str] | None = None) -> dict[str, set[str]]:
    """For each of ``names``: every mapping among ``mappings`` (default: all stored ones)
    that names it directly or through other mappings. Unreadable mappings are skipped (they
    cannot be part of a context anyone loads)."""
    universe = files.names("mapping") if mappings is None else mappings
    named_by: dict[str, set[str]] = {}
    for mapping in universe:
        try:
            _, children = mapping_children(files, mapping)
        except ContentsError:
            continue
        for child in children:
            named_by.setdefault(child, set()).add(mapping)
    result = {}
    for name in names:
        found: set[str] = set()
        queue = [name]
        while queue:
            for user in named_by.get(queue.pop(), ()):
                if user not in found and user != name:
                    found.add(user)
                    queue.append(user)
        result[name] = found
    return result


def file_rows(store: EventStore | Transaction) -> dict[str, Row]:
    """The ``files`` catalog (name -> row) as of the log's head (a store or a transaction):
    the projection table plus the events after its checkpoint (`current_rows`)."""
    return {key[0]: row for key, row in current_rows(store, FILES).items()}
