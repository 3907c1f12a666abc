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
A repeated dataset is recognised before any conditioning, by the header's own values
(see `Context._raw_key`): a few microseconds instead of tens.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from crds_events.errors import CrdsEventsError
from crds_events.rules.conditioning import (
    condition_value,
    condition_values,
    is_na_value,
    upper_keys,
)
from crds_events.rules.context import MappingStore, PipelineContext
from crds_events.rules.index import NOT_APPLICABLE, ReferenceIndex, _env
from crds_events.rules.jwst_keywords import fits_to_datamodel
from crds_events.rules.plans import InstrumentPlan

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


class DatasetError(CrdsEventsError):
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
        # (instrument, types, conditioned values) -> answer; see `_answer` for its form.
        self._cache: dict[tuple, tuple[dict[str, object], tuple[str, ...]]] = {}
        # The same answers keyed on the raw header values (see `_raw_key`).
        self._raw_cache: dict[tuple, tuple[dict[str, object], tuple[str, ...]]] = {}
        # Raw instrument value -> (instrument, the keys its rules read, padding for get()).
        self._raw_instruments: dict[str, tuple[str, tuple[str, ...], tuple[object, ...]]] = {}
        self._imaps: dict[str, object] = {}
        self._all_rmaps: dict[str, list[tuple[str, ReferenceIndex | str | None]]] = {}
        self._raw_ok = self.observatory != "jwst"  # JWST renames keys before minimizing
        # (instrument, types) -> the plan answering new datasets (see `plans`).
        self._plans: dict[tuple, InstrumentPlan] = {}
        # Raw instrument value -> its plan of all types (see `_header_plan`).
        self._all_types_plans: dict[str, InstrumentPlan] = {}
        #: False: every call computes its answer (no header-level cache; benchmarks).
        self.cache_results = True
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
        try:
            return self._imaps[instrument]
        except KeyError:
            pass
        imap = self._load_imap(instrument)
        self._imaps[instrument] = imap
        return imap

    def _load_imap(self, instrument: str):
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
        wanted = tuple(sorted({t.lower() for t in types})) if types is not None else None
        use_cache = self.cache_results
        if not use_cache and self._raw_ok:
            # A new dataset in a known mode, its values strings, its date the usual one:
            # read from the header itself (no key of its values to make for a cache).
            plan = self._header_plan(header, wanted)
            found = plan.answer_header(header) if plan is not None else None
            if found is not None:
                results = found[0]
                for filekind in found[1]:
                    results[filekind] = list(results[filekind])  # type: ignore[arg-type]
                return results  # type: ignore[return-value]
        raw_key = self._raw_key(header, wanted) if self._raw_ok else None
        if raw_key is not None:
            cached = self._raw_cache.get(raw_key) if use_cache else None
            if cached is not None:
                return _answer(cached)
            # A new dataset of a known instrument: its plan works on the raw values.
            cached = self._plan(raw_key[0], wanted).answer_raw(raw_key[2], raw_key[3])
            results = cached[0]
            if not use_cache:  # nobody else holds `results`: hand it out as it is
                for filekind in cached[1]:
                    results[filekind] = list(results[filekind])  # type: ignore[arg-type]
                return results  # type: ignore[return-value]
            with self._lock:
                if len(self._raw_cache) > _CACHE_LIMIT:
                    self._raw_cache.clear()
                self._raw_cache[raw_key] = cached
            return _answer(cached)
        instrument, minimized = self.minimized_header(header)
        self._learn_instrument(header, instrument)
        key = (instrument, wanted, tuple(minimized.values()))
        cached = self._cache.get(key) if use_cache else None
        if cached is None:
            cached = self._compute(instrument, minimized, wanted)
            if not use_cache:
                return _answer(cached)
            with self._lock:
                if len(self._cache) > _CACHE_LIMIT:
                    self._cache.clear()
                self._cache[key] = cached
        return _answer(cached)

    def best_references_many(
        self,
        headers: Iterable[Mapping[str, object]],
        types: Iterable[str] | Callable[[Mapping[str, object]], Iterable[str] | None] | None = None,
    ) -> list[BestRefs | DatasetError]:
        """`best_references` of many datasets, in order: each an answer, or the
        `DatasetError` that dataset failed with (the others are answered regardless).
        `types`: the types for every dataset, or a function giving each dataset's.

        The datasets share the instrument plans (see `plans`): each mode (the parameters
        but the dates) is worked out once, then every dataset in it costs a date bisect
        per type.
        """
        per_dataset = callable(types)
        wanted = None if per_dataset or types is None else list(types)  # type: ignore[arg-type]
        answers: list[BestRefs | DatasetError] = []
        for header in headers:
            try:
                chosen = types(header) if per_dataset else wanted  # type: ignore[operator]
                answers.append(self.best_references(header, chosen))
            except DatasetError as exc:
                answers.append(exc)
        return answers

    def _header_plan(
        self, header: Mapping[str, object], wanted: tuple[str, ...] | None
    ) -> InstrumentPlan | None:
        """The plan answering `header` from its own values, where `_raw_key` could key it."""
        try:
            joined = "".join(header)
        except TypeError:  # a key that is not a string
            return None
        if joined.upper() != joined:
            return None
        value = header.get(self.instrument_key)
        if type(value) is not str:
            return None
        if wanted is None:  # all types, the usual question: one lookup
            plan = self._all_types_plans.get(value)
            if plan is not None:
                return plan
        known = self._raw_instruments.get(value)
        if known is None:
            return None
        plan = self._plan(known[0], wanted)
        if wanted is None:
            self._all_types_plans[value] = plan  # as many as `_raw_instruments`
        return plan

    def _raw_key(self, header: Mapping[str, object], wanted: tuple[str, ...] | None):
        """A cache key made of the header's own values, or None where that is not safe.

        Safe when every key is already upper case (so no two spellings of a key compete),
        the instrument value was seen before (so the keys the rules read are known), and
        every value read is a str, int, float, bool or None: equal values of one of those
        types condition alike, except the float zeros (0.0 == -0.0), refused here. The key
        holds the values' types too, since True == 1 == 1.0 but they condition differently.
        """
        try:
            joined = "".join(header)
        except TypeError:  # a key that is not a string
            return None
        if joined.upper() != joined:
            return None
        value = header.get(self.instrument_key)
        plan = self._raw_instruments.get(value) if type(value) is str else None
        if plan is None:
            return None
        instrument, keys, padding = plan
        raw = tuple(map(header.get, keys, padding))
        kinds = tuple(map(type, raw))
        if not _RAW_TYPES.issuperset(kinds):
            return None
        if float in kinds and 0.0 in raw:  # 0.0 == -0.0, but they condition apart
            return None
        return (instrument, wanted, raw, kinds)

    def _learn_instrument(self, header: Mapping[str, object], instrument: str) -> None:
        """Remember which keys a raw instrument value leads to (for `_raw_key`)."""
        if not self._raw_ok:
            return
        value = header.get(self.instrument_key)
        if type(value) is not str or value in self._raw_instruments:
            return
        # Only where this value alone decides the instrument (not one that conditions to
        # UNDEFINED, leaving the choice to another keyword).
        if condition_value(value).upper() != instrument:
            return
        keys = (*self._imap(instrument).required_parkeys, self.instrument_key)
        if len(self._raw_instruments) < 1000:
            self._raw_instruments[value] = (instrument, keys, (_MISSING,) * len(keys))

    def _compute(
        self, instrument: str, header: dict[str, str], wanted: tuple[str, ...] | None
    ) -> tuple[dict[str, object], tuple[str, ...]]:
        """(every wanted type's answer, the types answered by a tuple of files), through
        the instrument's plan (see `plans`)."""
        return self._plan(instrument, wanted).answer(header, _env(header))

    def _plan(self, instrument: str, wanted: tuple[str, ...] | None) -> InstrumentPlan:
        plan = self._plans.get((instrument, wanted))
        if plan is None:
            imap = self._imap(instrument)
            kinds = self._kinds(imap, wanted)
            keys = (*imap.required_parkeys, self.instrument_key)  # as `_learn_instrument`
            plan = InstrumentPlan(kinds, keys, _condition_raws, _MISSING)
            with self._lock:
                if len(self._plans) > 256:  # many distinct `types` lists: start again
                    self._plans.clear()
                self._plans[(instrument, wanted)] = plan
        return plan

    def _kinds(self, imap, wanted: tuple[str, ...] | None) -> list:
        return self._rmaps(imap) if wanted is None else [(t, self._rmap(imap, t)) for t in wanted]

    def compute_plain(
        self, instrument: str, header: dict[str, str], wanted: tuple[str, ...] | None = None
    ) -> dict[str, object]:
        """`_compute` without plans: each rmap's own lookup (what the plans must equal)."""
        imap = self._imap(instrument)
        env = _env(header)
        results: dict[str, object] = {}
        kinds = self._kinds(imap, wanted)
        for filekind, rmap in kinds:
            if rmap is None:
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


    @staticmethod
    def _rmap(imap, filekind: str) -> ReferenceIndex | str | None:
        """The rmap (or N/A / OMIT) of a type; None for a type the instrument lacks."""
        try:
            return imap.rmap(filekind)
        except KeyError:
            return None

    def _rmaps(self, imap) -> list[tuple[str, ReferenceIndex | str | None]]:
        """(type, rmap) for every type of the instrument, in order (looked up once)."""
        found = self._all_rmaps.get(imap.name)
        if found is None:
            found = [(filekind, self._rmap(imap, filekind)) for filekind in imap.filekinds]
            self._all_rmaps[imap.name] = found
        return found


_MISSING = object()
_RAW_TYPES = frozenset({str, int, float, bool, type(None), type(_MISSING)})


def _condition_raws(values: tuple) -> list[str]:
    return condition_values(values, _MISSING)


def _answer(cached: tuple[dict[str, object], tuple[str, ...]]) -> BestRefs:
    """A fresh copy of a cached answer (tuples of files become lists)."""
    results, lists = cached
    answer = dict(results)
    for filekind in lists:
        answer[filekind] = list(answer[filekind])  # type: ignore[arg-type]
    return answer  # type: ignore[return-value]


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
