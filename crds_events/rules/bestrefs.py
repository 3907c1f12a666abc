"""Best references: which reference file of each type a dataset should be calibrated with.

    context = load_context("mappings/hst_0001.pmap")
    context.best_references({"INSTRUME": "ACS", "DETECTOR": "WFC", ...})
    -> {"biasfile": "...fits", "darkfile": "NOT FOUND No match found.", "spottab": "NOT FOUND n/a", ...}

The answers are CRDS's (`crds.core.heavy_client.hv_best_references`), computed the same way:

1. header keys are upper-cased and values conditioned (see `conditioning`);
2. the instrument comes from the context's instrument key (`INSTRUME`,
   `META.INSTRUMENT.NAME`, ...) or CRDS's other instrument keywords; `WFII` is WFPC2;
   no instrument or one the context lacks fails the whole dataset (`DatasetError`);
3. for JWST, FITS keywords are renamed to data model paths;
4. the header is cut down to the keys the instrument's rules need (missing: UNDEFINED);
5. each type is looked up in its rmap (see `index.ReferenceIndex`): a file name, a list of
   files (several equally good matches), `NOT FOUND n/a`, `NOT FOUND <reason>`, or left
   out (OMIT).

Results are cached per distinct tuple of those needed values, so millions of datasets
sharing a few thousand parameter combinations cost about as much as those combinations.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from crds_events.rules.conditioning import condition_value, is_na_value, upper_keys
from crds_events.rules.context import MappingStore, PipelineContext
from crds_events.rules.index import NOT_APPLICABLE, ReferenceIndex, _env
from crds_events.rules.jwst_keywords import fits_to_datamodel

__all__ = [
    "NOT_APPLICABLE",
    "Context",
    "DatasetError",
    "UnknownInstrumentError",
    "load_context",
]

# CRDS's instrument keywords, tried after the context's own instrument key.
INSTRUMENT_KEYWORDS = (
    "INSTRUME",
    "META.INSTRUMENT.NAME",
    "META_INSTRUMENT_NAME",
    "INSTRUMENT",
    "ROMAN.META.INSTRUMENT.NAME",
    "META.INSTRUMENT.TYPE",
    "META_INSTRUMENT_TYPE",
)
INSTRUMENT_ALIASES = {"wfii": "wfpc2"}
_CACHE_LIMIT = 200_000

BestRefs = dict[str, "str | list[str]"]


class DatasetError(Exception):
    """The dataset as a whole cannot be looked up; `str()` is the `NOT FOUND <reason>` text
    without the prefix."""

    @property
    def not_found(self) -> str:
        return "NOT FOUND " + str(self)


class MissingInstrumentError(DatasetError):
    """The header names no instrument."""


class UnknownInstrumentError(DatasetError):
    """The header's instrument is not in the context."""


class Context:
    """A loaded pipeline context answering best-references questions."""

    def __init__(self, pipeline: PipelineContext):
        self.pipeline = pipeline
        self.name = pipeline.name
        self.observatory = pipeline.observatory
        self._cache: dict[tuple, dict[str, object]] = {}
        self._lock = threading.Lock()

    # -- the hierarchy

    @property
    def instrument_key(self) -> str:
        return self.pipeline.instrument_key

    def load_all(self) -> None:
        """Load and compile every mapping of the context now."""
        self.pipeline.load_all()

    def mapping_names(self) -> list[str]:
        return self.pipeline.mapping_names()

    def reference_names(self) -> list[str]:
        return self.pipeline.reference_names()

    def filekinds(self, instrument: str) -> list[str]:
        return self._imap(instrument).filekinds

    def rmap(self, instrument: str, filekind: str) -> ReferenceIndex | str:
        return self._imap(instrument).rmap(filekind)

    def required_parkeys(self, instrument: str) -> list[str]:
        """The header keys best references for `instrument` read (plus the instrument key)."""
        return [*self._imap(instrument).required_parkeys, self.instrument_key]

    # -- best references

    def instrument_of(self, header: Mapping[str, object]) -> str:
        """The instrument a header names (upper case); `MissingInstrumentError` if none."""
        return self._instrument(upper_keys(header))

    def _instrument(self, upper: Mapping[str, object]) -> str:
        for key in (self.instrument_key, self.instrument_key.lower(), *INSTRUMENT_KEYWORDS):
            if key in upper:
                value = condition_value(upper[key]).upper()
                if value != "UNDEFINED":
                    return value
        raise MissingInstrumentError(
            f"Missing {self.instrument_key!r} keyword in header for determining instrument."
        )

    def _imap(self, instrument: str):
        name = instrument.lower()
        name = INSTRUMENT_ALIASES.get(name, name)
        try:
            return self.pipeline.imap(name)
        except KeyError:
            raise UnknownInstrumentError(
                f"Unknown instrument {name!r} for context {self.name!r}"
            ) from None

    def minimized_header(self, header: Mapping[str, object]) -> tuple[str, dict[str, str]]:
        """(instrument, the conditioned header cut down to what its rules read)."""
        upper = upper_keys(header)
        self._imap(self._instrument(upper))  # CRDS checks the header's own keys first
        if self.observatory == "jwst":
            upper = fits_to_datamodel(upper)
        imap = self._imap(self._instrument(upper))
        keys = [*imap.required_parkeys, self.instrument_key]
        minimized = {
            key: condition_value(upper[key]) if key in upper else "UNDEFINED" for key in keys
        }
        instrument = self._instrument(minimized)
        return instrument, minimized

    def best_references(
        self, header: Mapping[str, object], types: Iterable[str] | None = None
    ) -> BestRefs:
        """Best references for a dataset header: lowercase type -> file name, list of file
        names, or `NOT FOUND ...`; OMIT types are left out. `types` limits the types.

        Raises `DatasetError` when the dataset fails as a whole.
        """
        instrument, minimized = self.minimized_header(header)
        wanted = tuple(sorted({t.lower() for t in types})) if types is not None else None
        key = (instrument, wanted, tuple(minimized.values()))
        cached = self._cache.get(key)
        if cached is None:
            cached = self._compute(instrument, minimized, wanted)
            with self._lock:
                if len(self._cache) > _CACHE_LIMIT:
                    self._cache.clear()
                self._cache[key] = cached
        return {
            filekind: list(value) if isinstance(value, tuple) else value
            for filekind, value in cached.items()
        }

    def _compute(
        self, instrument: str, header: dict[str, str], wanted: tuple[str, ...] | None
    ) -> dict[str, object]:
        imap = self._imap(instrument)
        env = _env(header)
        results: dict[str, object] = {}
        for filekind in wanted if wanted is not None else imap.filekinds:
            try:
                rmap = imap.rmap(filekind)
            except KeyError:
                results[filekind] = f"NOT FOUND Unknown reference type {filekind!r}"
                continue
            if isinstance(rmap, str):  # N/A or OMIT at the instrument level
                if is_na_value(rmap):
                    results[filekind] = NOT_APPLICABLE
                continue
            value = rmap.best_ref(header, env)
            if value is not None:
                results[filekind] = value
        return results


def load_context(
    pmap_path: str | os.PathLike, ignore_checksum: bool = False, load_all: bool = False
) -> Context:
    """Load the pipeline context at `pmap_path`; children come from the same directory.

    Children load on first use; `load_all=True` loads and compiles everything now.
    """
    path = Path(pmap_path)
    store = MappingStore(path.parent, ignore_checksum=ignore_checksum)
    context = Context(PipelineContext(store.document(path.name), store))
    if load_all:
        context.load_all()
    return context
