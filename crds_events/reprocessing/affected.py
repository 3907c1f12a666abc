"""Affected datasets: which archived datasets get different best references under a new
context (what ``crds bestrefs --affected-datasets`` answers, without calling it per dataset).

    result = affected_datasets("hst_0001.pmap", "hst_0002.pmap", mappings_dir, store)
    result.ids            # sorted dataset ids whose selection of a changed type differs
    result.changes()      # (id, type, old, new) for each of them
    result.by_instrument, result.by_type, result.errors

How:

1. The logical difference of the two contexts (`crds_events.rules.diff.mapping_diffs`, with
   header differences) names the changed instruments and reference types. For each type
   the earliest UseAfter date among its changed rules is where its effect can start; a
   change that is not under a UseAfter date (an rmap replaced by N/A, a header change, a
   different selector class, a whole instrument added or deleted) affects every date.
   That is CRDS's ``--datasets-since=auto`` reasoning (the minimum USEAFTER of added or
   deleted references; all dates when headers change or files are deleted), taken from the
   rule changes themselves so that a reference moved to a new match case still counts.
2. Candidates: the catalog's datasets of those instruments (`crds_events.reprocessing.datasets`), dated
   at or after the instrument's earliest affected date where every change has one (plus
   any dataset whose date is missing or unparseable).
3. Datasets are grouped by what the changed rmaps read (`crds_events.reprocessing.groups`): the
   conditioned values of their parameters, and the interval their exposure date falls in
   between the UseAfter dates of the rules those parameters can reach. Two datasets in
   one group make every comparison of the rules alike, so best references are computed
   once per group under each context, for the changed types only. (Exposure dates differ
   for every dataset; without the intervals there would be as many groups as datasets.)
   Where an rmap reads the date in a way intervals do not capture (a Match on it, an
   expression, an unknown hook, ClosestTime), the date values themselves join the group
   key: slower, still exact.
4. A dataset is affected when any changed type's result differs: file names, lists,
   ``NOT FOUND n/a`` and other ``NOT FOUND`` reasons included (CRDS's
   ``--undefined-differences-matter --na-differences-matter``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from crds_events.reprocessing.datasets import DATE_KEYS, TABLE
from crds_events.reprocessing.groups import ALL_DATES, instrument_groups, make_plan
from crds_events.rules.bestrefs import Context, DatasetError, load_context
from crds_events.rules.diff import mapping_diffs, remove_boring
from crds_events.rules.index import ReferenceIndex
from crds_events.store.dialect import dialect_of

__all__ = [
    "AffectedDatasets",
    "AffectedGroup",
    "ChangedTypes",
    "affected_datasets",
    "changed_types",
    "pmap_serial",
]

MAX_ERRORS = 20  # unique error messages kept in a result

def pmap_serial(name: str) -> int | None:
    """The serial number of a pipeline context name (``hst_0042.pmap`` -> 42), or None."""
    stem = os.path.basename(name).rsplit(".", 1)[0]
    digits = stem.rsplit("_", 1)[-1]
    return int(digits) if digits.isdigit() else None


# --- what changed ------------------------------------------------------------------------------

ChangedTypes = dict[str, dict[str, "str | None"]]
"""instrument (upper case) -> reference type -> earliest affected date (`ALL_DATES`: any)."""


def _mapping_pairs(diff: tuple) -> list[tuple[int, tuple[str, str]]]:
    return [(i, part) for i, part in enumerate(diff[:-1])
            if isinstance(part, tuple) and len(part) == 2 and all(isinstance(p, str) for p in part)
            and part[0].endswith((".pmap", ".imap", ".rmap"))
            and part[1].endswith((".pmap", ".imap", ".rmap"))]


def _index_names(contexts: Sequence[Context]) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """imap name -> instrument; rmap name -> (instrument, type), over both contexts."""
    imaps: dict[str, str] = {}
    rmaps: dict[str, tuple[str, str]] = {}
    for context in contexts:
        for instrument in context.pipeline.instruments:
            try:
                imap = context.pipeline.imap(instrument)
            except Exception:  # noqa: BLE001 - N/A instruments have no imap
                continue
            imaps[imap.name] = instrument.upper()
            for filekind, value in imap.selections.items():
                if isinstance(value, str) and value.endswith(".rmap"):
                    rmaps[os.path.basename(value)] = (instrument.upper(), filekind.lower())
    return imaps, rmaps


def _instrument_types(contexts: Sequence[Context], instrument: str) -> set[str]:
    types: set[str] = set()
    for context in contexts:
        with contextlib.suppress(DatasetError):
            types.update(context.filekinds(instrument))
    return types


def changed_types(old: Context, new: Context, old_path: Path, new_path: Path,
                  mappings_dir: Path) -> ChangedTypes:
    """The changed instruments and types of two loaded contexts, with the earliest date
    each change can affect (see the module docstring)."""
    diffs = remove_boring(mapping_diffs(old_path, new_path, include_header_diffs=True,
                                        old_mappings_dir=mappings_dir,
                                        new_mappings_dir=mappings_dir))
    imaps, rmaps = _index_names((old, new))
    date_pairs = {pair for pair in DATE_KEYS.get(new.observatory, ())}
    changed: ChangedTypes = {}

    def mark(instrument: str, filekind: str, since: str | None) -> None:
        types = changed.setdefault(instrument, {})
        if filekind in types:
            earlier = types[filekind]
            since = None if earlier is None or since is None else min(earlier, since)
        types[filekind] = since

    def mark_all(instrument: str) -> None:
        for filekind in _instrument_types((old, new), instrument) or {"*"}:
            mark(instrument, filekind, ALL_DATES)

    for diff in diffs:
        pairs = _mapping_pairs(diff)
        message = diff[-1]
        rmap_pair = next(((i, p) for i, p in pairs if p[0].endswith(".rmap")), None)
        if rmap_pair is not None:
            index, (old_rmap, new_rmap) = rmap_pair
            where = rmaps.get(os.path.basename(new_rmap)) or rmaps.get(os.path.basename(old_rmap))
            if where is None:
                raise ValueError(f"difference {diff!r}: rmap not found in either context")
            instrument, filekind = where
            since = _change_date(diff[index + 1:-1], new, old, instrument, filekind,
                                 date_pairs, message)
            mark(instrument, filekind, since)
            continue
        imap_pair = next(((i, p) for i, p in pairs if p[0].endswith(".imap")), None)
        if imap_pair is not None:
            index, (old_imap, new_imap) = imap_pair
            instrument = imaps.get(old_imap) or imaps.get(new_imap) or ""
            keys = diff[index + 1:-1]
            if len(keys) == 1 and isinstance(keys[0], tuple) and len(keys[0]) == 1:
                # A type's rmap replaced (its rule changes follow as rmap differences; an
                # identical rmap changes nothing) or a type turned N/A / OMIT / added / gone.
                filekind = str(keys[0][0]).lower()
                if not _both_rmaps(old, new, instrument, filekind):
                    mark(instrument, filekind, ALL_DATES)
                else:
                    changed.setdefault(instrument, {})
            else:  # an imap header change: anything of the instrument may change
                mark_all(instrument)
            continue
        # pmap level: an instrument added, deleted or replaced, or a pmap header change.
        keys = diff[1:-1]
        if keys and isinstance(keys[0], tuple) and len(keys[0]) == 1:
            instrument = str(keys[0][0]).upper()
            if "replaced" in message and instrument in _pipeline_instruments(old, new):
                continue  # its imap differences follow
            mark_all(instrument)
        else:
            for instrument in _pipeline_instruments(old, new):
                mark_all(instrument)
    return {instrument: types for instrument, types in changed.items() if types}


def _pipeline_instruments(old: Context, new: Context) -> set[str]:
    both = set(old.pipeline.instruments) & set(new.pipeline.instruments)
    return {instrument.upper() for instrument in both}


def _both_rmaps(old: Context, new: Context, instrument: str, filekind: str) -> bool:
    try:
        return (isinstance(old.rmap(instrument, filekind), ReferenceIndex)
                and isinstance(new.rmap(instrument, filekind), ReferenceIndex))
    except (KeyError, DatasetError):
        return False


def _change_date(keys: tuple, new: Context, old: Context, instrument: str, filekind: str,
                 date_pairs: set[tuple[str, str]], message: str) -> str | None:
    """The UseAfter date a rule change sits under, or `ALL_DATES`."""
    if "header" in message or "different" in message:
        return ALL_DATES
    for context in (new, old):
        try:
            rmap = context.rmap(instrument, filekind)
        except (KeyError, DatasetError):
            continue
        if not isinstance(rmap, ReferenceIndex):
            continue
        for level, key in enumerate(keys):
            parameters = rmap.parkey[level] if level < len(rmap.parkey) else ()
            parameters = tuple(parameters) if isinstance(parameters, (tuple, list)) else (parameters,)
            if tuple(str(p).upper() for p in parameters) in date_pairs and isinstance(key, tuple):
                return " ".join(str(part) for part in key)
        return ALL_DATES
    return ALL_DATES


# --- the result --------------------------------------------------------------------------------

Change = tuple[str, object, object]  # (type, old result, new result)


@dataclasses.dataclass
class AffectedGroup:
    """Datasets of one instrument whose changed types changed alike."""

    instrument: str
    changes: tuple[Change, ...]
    ids: list[str]


@dataclasses.dataclass
class AffectedDatasets:
    old_context: str
    new_context: str
    groups: list[AffectedGroup]
    candidates: int  # datasets considered
    distinct: int  # parameter groups whose best references were computed
    changed: ChangedTypes
    errors: dict[str, int]  # unique error messages under the new context -> datasets
    seconds: float = 0.0

    @property
    def ids(self) -> list[str]:
        return sorted(i for group in self.groups for i in group.ids)

    @property
    def count(self) -> int:
        return sum(len(group.ids) for group in self.groups)

    @property
    def by_instrument(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for group in self.groups:
            counts[group.instrument] = counts.get(group.instrument, 0) + len(group.ids)
        return dict(sorted(counts.items()))

    @property
    def by_type(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for group in self.groups:
            for filekind, _, _ in group.changes:
                key = f"{group.instrument.lower()}.{filekind}"
                counts[key] = counts.get(key, 0) + len(group.ids)
        return dict(sorted(counts.items()))

    def changes(self) -> Iterator[tuple[str, str, object, object]]:
        """(dataset id, type, old result, new result) for every change, by id."""
        rows = [(i, change) for group in self.groups for i in group.ids
                for change in group.changes]
        rows.sort(key=lambda row: (row[0], row[1][0]))
        for dataset_id, (filekind, old, new) in rows:
            yield dataset_id, filekind, old, new

    def to_json(self) -> dict[str, Any]:
        return {
            "old_context": self.old_context, "new_context": self.new_context,
            "count": self.count, "candidates": self.candidates, "distinct": self.distinct,
            "by_instrument": self.by_instrument, "by_type": self.by_type,
            "errors": self.errors, "changed": self.changed,
            "groups": [{"instrument": g.instrument, "changes": [list(c) for c in g.changes],
                        "ids": sorted(g.ids)} for g in self.groups],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AffectedDatasets:
        groups = [AffectedGroup(g["instrument"], tuple(tuple(c) for c in g["changes"]),
                                list(g["ids"])) for g in data["groups"]]
        return cls(data["old_context"], data["new_context"], groups, data["candidates"],
                   data.get("distinct", 0), data.get("changed", {}), data.get("errors", {}))


# --- the computation ---------------------------------------------------------------------------


def _connection(datasets: object) -> sqlite3.Connection:
    if isinstance(datasets, sqlite3.Connection):
        return datasets
    db = getattr(datasets, "db", None)  # an SQLiteEventStore
    if db is not None:
        return db.conn
    if dialect_of(datasets).name == "postgresql":  # a store: its execute reads the catalog
        return datasets  # type: ignore[return-value]
    if isinstance(datasets, (str, os.PathLike)):
        return sqlite3.connect(os.fspath(datasets))
    raise TypeError(f"datasets: expected an event store, sqlite3 connection or path, "
                    f"not {type(datasets).__name__}")


def _resolve(pmap: str | os.PathLike, mappings_dir: Path) -> Path:
    path = Path(pmap)
    return path if path.parent != Path(".") or path.is_file() else mappings_dir / path


def affected_datasets(
    old_pmap: str | os.PathLike,
    new_pmap: str | os.PathLike,
    mappings_dir: str | os.PathLike,
    datasets: object,
    *,
    use_dates: bool = True,
) -> AffectedDatasets:
    """The datasets of the catalog whose best references differ between two contexts.

    ``old_pmap`` / ``new_pmap``: context names in ``mappings_dir`` (or paths).
    ``datasets``: the catalog (`crds_events.reprocessing.datasets`): an `SQLiteEventStore`, an sqlite3
    connection, or a database path. ``use_dates=False`` considers every date.
    """
    started = time.perf_counter()
    mappings_dir = Path(mappings_dir)
    old_path, new_path = _resolve(old_pmap, mappings_dir), _resolve(new_pmap, mappings_dir)
    old, new = load_context(old_path), load_context(new_path)
    changed = changed_types(old, new, old_path, new_path, mappings_dir)
    conn = _connection(datasets)
    exists = dialect_of(conn).table_exists(conn, TABLE)
    groups: list[AffectedGroup] = []
    errors: dict[str, int] = {}
    candidates = distinct = 0
    if exists:
        for instrument, types in sorted(changed.items()):
            plan = make_plan(instrument, types, old, new)
            if not use_dates:
                plan.since = ALL_DATES
            found, considered, computed = instrument_groups(conn, plan, old, new, errors)
            groups.extend(AffectedGroup(instrument, changes, ids) for changes, ids in found)
            candidates += considered
            distinct += computed
    top = dict(sorted(errors.items(), key=lambda item: (-item[1], item[0]))[:MAX_ERRORS])
    return AffectedDatasets(old.name, new.name, groups, candidates, distinct, changed, top,
                            time.perf_counter() - started)


