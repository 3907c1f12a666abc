"""The pmap -> imap -> rmap hierarchy, loaded lazily from a mappings directory.

A pipeline context (`.pmap`) maps instruments to instrument contexts (`.imap`), which map
reference types to rmaps (or to `N/A` / `OMIT`). Children are files in the same directory,
found by basename (a child named `test/data/hst/hst_acs.imap` is `hst_acs.imap`). Each file
is loaded at most once, on first use, with its sha1sum verified (unless told otherwise),
and checked against its parent as CRDS checks it: same observatory, the instrument the
parent files it under, the reference type the imap files it under, the right kind of file.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from crds_events.errors import CrdsEventsError
from crds_events.rules.conditioning import is_na_value, is_omit_value
from crds_events.rules.document import MappingDocument, load_mapping
from crds_events.rules.index import ReferenceIndex, header_string


class ContextLoadError(CrdsEventsError, ValueError):
    """A context whose files are missing, malformed or inconsistent with each other."""


class MappingStore:
    """Loads mapping files by basename from one directory, each once (thread-safe)."""

    def __init__(self, directory: str | os.PathLike, ignore_checksum: bool = False):
        self.directory = Path(directory)
        self.ignore_checksum = ignore_checksum
        self._documents: dict[str, MappingDocument] = {}
        self._objects: dict[str, object] = {}
        self._lock = threading.RLock()

    def document(self, name: str) -> MappingDocument:
        basename = os.path.basename(name)
        with self._lock:
            if basename not in self._documents:
                path = self.directory / basename
                if not path.is_file():
                    raise ContextLoadError(f"mapping {basename!r} not found in {self.directory}")
                self._documents[basename] = load_mapping(path, self.ignore_checksum)
            return self._documents[basename]

    def loaded(self, name: str, build):
        """The object built from mapping `name` by `build(document)`, built once."""
        basename = os.path.basename(name)
        with self._lock:
            if basename not in self._objects:
                self._objects[basename] = build(self.document(basename))
            return self._objects[basename]


def _expect_kind(document: MappingDocument, kind: str, parent: str) -> None:
    if document.kind != kind:
        raise ContextLoadError(
            f"{document.name!r} named by {parent!r} is a {document.kind} mapping, "
            f"expected {kind}"
        )


def _expect_same(field: str, parent_value: object, child: MappingDocument, parent: str) -> None:
    value = header_string(child.header, field)
    if str(value).lower() != str(parent_value).lower():
        raise ContextLoadError(
            f"{child.name!r} has {field} {value!r} but {parent!r} files it under "
            f"{parent_value!r}"
        )


class InstrumentContext:
    """An `.imap`: reference type -> rmap (loaded on first use), `N/A` or `OMIT`."""

    def __init__(self, document: MappingDocument, store: MappingStore):
        self.document = document
        self.name = document.name
        self.observatory = str(header_string(document.header, "observatory"))
        self.instrument = str(header_string(document.header, "instrument"))
        self.parkey = tuple(document.header.get("parkey", ()))
        self._store = store
        # CRDS looks the types up in lower case; the last of two spellings wins.
        self.selections: dict[str, object] = {
            str(key).lower(): value for key, value in document.selector.entries
        }
        self._required: list[str] | None = None
        self._rmaps: dict[str, ReferenceIndex | str] = {}

    @property
    def filekinds(self) -> list[str]:
        return sorted(self.selections)

    def rmap(self, filekind: str) -> ReferenceIndex | str:
        """The rmap of `filekind`, or its special value (`N/A`, `OMIT`); KeyError if unknown."""
        try:
            return self._rmaps[filekind]
        except KeyError:
            pass
        found = self._find_rmap(filekind)
        self._rmaps[filekind] = found
        return found

    def _find_rmap(self, filekind: str) -> ReferenceIndex | str:
        value = self.selections[filekind.lower()]
        if not isinstance(value, str):
            raise ContextLoadError(f"{self.name!r}: {filekind!r} maps to {value!r}, not a file name")
        if is_na_value(value) or is_omit_value(value):
            return value
        return self._store.loaded(value, lambda doc: self._child(doc, filekind))

    def _child(self, document: MappingDocument, filekind: str) -> ReferenceIndex:
        _expect_kind(document, "reference", self.name)
        _expect_same("observatory", self.observatory, document, self.name)
        _expect_same("instrument", self.instrument, document, self.name)
        _expect_same("filekind", filekind, document, self.name)
        return ReferenceIndex(document)

    def rmaps(self) -> dict[str, ReferenceIndex]:
        """Every rmap of this instrument, loading them all."""
        found = {}
        for filekind in self.filekinds:
            rmap = self.rmap(filekind)
            if isinstance(rmap, ReferenceIndex):
                found[filekind] = rmap
        return found

    @property
    def required_parkeys(self) -> list[str]:
        """Every header key any of this instrument's rmaps needs (sorted; loads them all)."""
        if self._required is None:
            names = {str(name) for name in self.parkey}
            names.update(str(name) for name in self.document.header.get("extra_keys", ()))
            for rmap in self.rmaps().values():
                names.update(rmap.required_parkeys)
            self._required = sorted(names)
        return self._required

    def __repr__(self) -> str:
        return f"InstrumentContext({self.name!r})"


class PipelineContext:
    """A `.pmap`: instrument -> instrument context (loaded on first use)."""

    def __init__(self, document: MappingDocument, store: MappingStore):
        if document.kind != "pipeline":
            raise ContextLoadError(f"{document.name!r} is a {document.kind} mapping, not a pmap")
        self.document = document
        self.name = document.name
        self.observatory = str(header_string(document.header, "observatory"))
        parkey = tuple(document.header.get("parkey", ()))
        if not parkey or not isinstance(parkey[0], str):
            raise ContextLoadError(f"{self.name!r}: parkey {parkey!r} should name the instrument key")
        self.instrument_key = parkey[0].upper()
        self._store = store
        self.selections: dict[str, object] = {
            str(key).lower(): value for key, value in document.selector.entries
        }

    @property
    def instruments(self) -> list[str]:
        return sorted(self.selections)

    def imap(self, instrument: str) -> InstrumentContext:
        """The instrument context of `instrument` (any case); KeyError if not in the context."""
        instrument = instrument.lower()
        value = self.selections[instrument]
        if not isinstance(value, str) or is_na_value(value) or is_omit_value(value):
            raise ContextLoadError(f"{self.name!r}: instrument {instrument!r} has no imap ({value!r})")
        return self._store.loaded(value, lambda doc: self._child(doc, instrument))

    def _child(self, document: MappingDocument, instrument: str) -> InstrumentContext:
        _expect_kind(document, "instrument", self.name)
        _expect_same("observatory", self.observatory, document, self.name)
        _expect_same("instrument", instrument, document, self.name)
        return InstrumentContext(document, self._store)

    def load_all(self) -> None:
        """Load every imap and rmap now and compile every selector completely (what CRDS
        does for a full context load: it builds its Match matchers when it loads)."""
        for instrument in self.instruments:
            for rmap in self.imap(instrument).rmaps().values():
                rmap.selector.compile()

    def mapping_names(self) -> list[str]:
        """The names of this context's mappings (loads everything)."""
        names = {self.name}
        for instrument in self.instruments:
            imap = self.imap(instrument)
            names.add(imap.name)
            names.update(rmap.name for rmap in imap.rmaps().values())
        return sorted(names)

    def reference_names(self) -> list[str]:
        """Every reference file the context names (loads everything)."""
        names: set[str] = set()
        for instrument in self.instruments:
            for rmap in self.imap(instrument).rmaps().values():
                names.update(rmap.reference_names())
        return sorted(names)

    def __repr__(self) -> str:
        return f"PipelineContext({self.name!r})"
