"""Best references with an instrument mapping (``.imap``) or a reference mapping (``.rmap``)
as the context, as CRDS computes them (``crds.core.rmap.get_best_references`` on a mapping
that is not a pmap).

CRDS lets any mapping stand for the context: an imap answers every type it files (or those
asked for), an rmap its one type. The header is conditioned and cut down to the keys the
mapping's rules read, exactly as for a pmap (`crds_events.rules.bestrefs`), but the
instrument is the mapping's own: the header's instrument keyword is not consulted. An rmap
asked for other types than its own fails the request, as CRDS's does
(``can only compute bestrefs for type ...``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from crds_events.rules.bestrefs import NOT_APPLICABLE, BestRefs, DatasetError
from crds_events.rules.conditioning import condition_value, is_na_value, upper_keys
from crds_events.rules.context import InstrumentContext, MappingStore
from crds_events.rules.index import ReferenceIndex, header_string
from crds_events.rules.jwst_keywords import fits_to_datamodel

__all__ = ["MappingLookup", "load_mapping_lookup"]

_INSTRUMENT_KEYS = {"hst": "INSTRUME", "jwst": "META.INSTRUMENT.NAME",
                    "roman": "ROMAN.META.INSTRUMENT.NAME"}


class MappingLookup:
    """An imap or rmap answering best-references questions like a loaded pmap `Context`."""

    def __init__(self, name: str, observatory: str, instrument: ReferenceIndex | InstrumentContext):
        self.name = name
        self.observatory = observatory
        self._mapping = instrument

    def _minimized(self, header: Mapping[str, object], keys: Iterable[str]) -> dict[str, str]:
        upper = upper_keys(header)
        if self.observatory == "jwst":
            upper = fits_to_datamodel(upper)
        minimized = {key: condition_value(upper[key]) if key in upper else "UNDEFINED"
                     for key in keys}
        # the mapping's own instrument, whatever the header says (CRDS does not look)
        minimized[_INSTRUMENT_KEYS.get(self.observatory, "INSTRUME")] = \
            self._mapping.instrument.upper()
        return minimized

    def instrument_of(self, header: Mapping[str, object]) -> str:
        """The mapping's own instrument (upper case), whatever the header names."""
        return self._mapping.instrument.upper()

    def filekinds(self, instrument: str | None = None) -> list[str]:
        """The types this mapping answers."""
        mapping = self._mapping
        if isinstance(mapping, ReferenceIndex):
            return [mapping.filekind.lower()]
        return mapping.filekinds

    def best_references(self, header: Mapping[str, object],
                        types: Iterable[str] | None = None) -> BestRefs:
        """lowercase type -> file name, list of names or ``NOT FOUND ...`` (OMIT left out)."""
        mapping = self._mapping
        if isinstance(mapping, ReferenceIndex):
            filekind = mapping.filekind.lower()
            wanted = None if types is None else [t.lower() for t in types]
            if wanted is not None and filekind not in wanted:
                raise DatasetError(f"ReferenceMapping {self.name!r} can only compute bestrefs "
                                   f"for type {filekind!r} not {list(types or ())!r}")
            value = mapping.best_ref(self._minimized(header, mapping.required_parkeys))
            return {} if value is None else {filekind: _listed(value)}
        minimized = self._minimized(header, mapping.required_parkeys)
        kinds = mapping.filekinds if types is None else [t.lower() for t in types]
        results: BestRefs = {}
        for filekind in kinds:
            try:
                rmap = mapping.rmap(filekind)
            except KeyError:
                results[filekind] = f"NOT FOUND Unknown reference type {filekind!r}"
                continue
            if isinstance(rmap, str):  # N/A or OMIT for the whole type
                if is_na_value(rmap):
                    results[filekind] = NOT_APPLICABLE
                continue
            value = rmap.best_ref(minimized)
            if value is not None:
                results[filekind] = _listed(value)
        return results


def _listed(value: object) -> str | list[str]:
    return list(value) if isinstance(value, tuple) else value  # type: ignore[return-value]


def load_mapping_lookup(store: MappingStore, name: str) -> MappingLookup:
    """The lookup of the imap or rmap ``name`` in ``store`` (its rmaps load on first use)."""
    document = store.document(name)
    observatory = str(header_string(document.header, "observatory")).lower()
    if document.kind == "instrument":
        return MappingLookup(document.name, observatory, InstrumentContext(document, store))
    if document.kind == "reference":
        return MappingLookup(document.name, observatory, ReferenceIndex(document))
    raise DatasetError(f"{document.name!r} is a {document.kind} mapping: load a pmap as a "
                       f"Context")
