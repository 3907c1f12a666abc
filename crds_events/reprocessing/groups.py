"""The grouping engine of `crds_events.reprocessing.affected`: best references once per group of
datasets that every changed rule treats alike.

For one instrument and its changed types (`make_plan`):

1. the catalog's candidates are grouped by ``param_key`` in SQL (equal parameters but the
   date), read as numpy arrays (`_param_sets`);
2. parameter sets are merged by the conditioned values the changed rmaps read (their
   parameters and expressions; the whole minimized header where a hook reads it);
3. each such group is split by the date intervals that matter to it: the UseAfter dates
   of the rules its parameters can reach (the Match candidates a lookup tries, fallbacks
   included; `_reachable_dates`), plus the dates where a hook changes the header;
4. one representative per group is looked up under both contexts (`instrument_groups`).

Where the rules read the date otherwise (a Match on it, an expression, an unknown hook,
ClosestTime), the date values join the group key instead: slower, still exact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from crds_events.reprocessing.datasets import DATE_KEYS, TABLE
from crds_events.rules import hooks
from crds_events.rules.bestrefs import NOT_APPLICABLE, Context, DatasetError
from crds_events.rules.conditioning import condition_value, is_na_value
from crds_events.rules.index import ReferenceIndex
from crds_events.rules.selectors import MatchSelector, Selector, UseAfterSelector
from crds_events.store.dialect import dialect_of

__all__ = ["ALL_DATES", "OMITTED", "Plan", "instrument_groups", "make_plan"]

ALL_DATES: str | None = None  # a change that affects datasets of every date
OMITTED = "OMITTED"  # how a type left out of the results compares

# What CRDS's hooks read of the date, as interval boundaries (see `_date_breakpoints`):
# the ACS bias precondition compares the exposure start with servicing mission 4.
_HOOK_DATE_BREAKPOINTS: dict[Any, tuple[str, ...]] = {
    hooks.precondition_acs_biasfile: (hooks._ACS_SM4,),
    hooks.precondition_wfc3_biasfile: (),
    hooks.fallback_wfpc2_flatfile: (),
}
# hst_do_not_reprocess reads these whatever the rmap's own parameters are.
_DO_NOT_REPROCESS_KEYS = ("DETECTOR", "CCDGAIN")



def _selectors(selector: object) -> Iterator[Selector]:
    if isinstance(selector, Selector):
        yield selector
        for choice in selector.choices():
            yield from _selectors(choice)


@dataclasses.dataclass
class Plan:
    """How one instrument's datasets are grouped for its changed types."""

    instrument: str
    types: tuple[str, ...]
    rmaps: list[ReferenceIndex]  # the changed types' rmaps, old and new
    keys: tuple[str, ...]  # header keys (as minimized) whose values form the group key
    date_keys: tuple[str, ...]  # the exposure date keys, if the rules read them
    breakpoints: list[str] | None  # every date where a choice can change (None: unknown)
    hook_breakpoints: list[str]  # dates where a hook changes the header it passes on
    exact_dates: bool  # the date values themselves are part of the group key
    since: str | None


def make_plan(instrument: str, types: dict[str, str | None], old: Context, new: Context) -> Plan:
    rmaps: list[ReferenceIndex] = []
    for context in (old, new):
        for filekind in types:
            try:
                rmap = context.rmap(instrument, filekind)
            except (KeyError, DatasetError):
                continue
            if isinstance(rmap, ReferenceIndex):
                rmaps.append(rmap)
    keys: set[str] = set()
    hooked = False
    for rmap in rmaps:
        keys.update(str(k).upper() for k in rmap.required_parkeys)
        if rmap.precondition is not None or rmap.fallback is not None:
            hooked = True
        if rmap.do_not_reprocess is not None:
            keys.update(_DO_NOT_REPROCESS_KEYS)
    if hooked:  # a hook may read any key of the minimized header
        for context in (old, new):
            with contextlib.suppress(DatasetError):
                keys.update(k.upper() for k in context.required_parkeys(instrument))
    date_keys: tuple[str, ...] = ()
    for pair in DATE_KEYS.get(new.observatory, ()):
        if set(pair) <= keys:
            date_keys = pair
            break
    since_values = list(types.values())
    since = None if not since_values or any(s is None for s in since_values) else min(since_values)
    plan = Plan(instrument, tuple(types), rmaps, tuple(sorted(keys)), date_keys, None, [],
                 False, since)
    if not date_keys:
        plan.since = ALL_DATES
        return plan
    breakpoints = _date_breakpoints(rmaps, date_keys)
    if breakpoints is None:  # the dates are read in ways intervals do not capture
        plan.exact_dates = True
        return plan
    plan.keys = tuple(sorted(keys - set(date_keys)))
    plan.breakpoints = breakpoints
    plan.hook_breakpoints = sorted({d for r in rmaps for h in (r.precondition, r.fallback)
                                    if h is not None for d in _HOOK_DATE_BREAKPOINTS[h]})
    return plan


def _date_breakpoints(rmaps: Iterable[ReferenceIndex], date_keys: tuple[str, ...]) -> list[str] | None:
    """Every date at which a rule's choice can change, or None when the rules read the
    date keys other than through plain UseAfter comparisons and known hooks."""
    dates: set[str] = set()
    wanted = set(date_keys)
    for rmap in rmaps:
        for hook in (rmap.precondition, rmap.fallback):
            if hook is None:
                continue
            if hook not in _HOOK_DATE_BREAKPOINTS:
                return None
            dates.update(_HOOK_DATE_BREAKPOINTS[hook])
        names: set[str] = set(rmap.relevance.names) | set(rmap.omit.names)
        for expression in rmap.parkey_relevance.values():
            names.update(expression.names)
        if rmap.reffile_switch != "NONE":
            names.add(rmap.reffile_switch)
        names.update(str(k) for k in rmap.extra_keys)
        if {n.upper().replace("_", "-") for n in names} & wanted or {n.upper() for n in names} & wanted:
            return None
        for selector in _selectors(rmap.selector):
            parameters = {str(p).upper() for p in selector.parameters}
            if type(selector) is UseAfterSelector:
                if tuple(str(p).upper() for p in selector.parameters) != date_keys:
                    if parameters & wanted:
                        return None
                    continue
                dates.update(str(key) for key in selector.keys)
            elif type(selector) is MatchSelector:
                if parameters & wanted:
                    return None
            else:
                return None  # ClosestTime, VersionAfter, Bracket, ...: not interval-based
    return sorted(dates)


@dataclasses.dataclass
class _ParamSet:
    """The candidates sharing every parameter but the date (one ``param_key``)."""

    rowids: np.ndarray  # int64
    dates: np.ndarray  # fixed-width bytes, blank-padded (see `_param_sets`); blank: none
    header: dict  # the header of one of them (the date is theirs alone)


def _date_width(plan: Plan) -> int:
    dates = [*(plan.breakpoints or ()), *plan.hook_breakpoints]
    return max([26, *(len(d.encode()) for d in dates)])


def _as_dates(values: Iterable[str], width: int) -> np.ndarray:
    """Dates as the fixed-width, blank-padded bytes `_param_sets` makes of exposure dates
    (blanks sort below every character of a date, so the order is the strings' order)."""
    return np.array([v.encode().ljust(width) for v in values], dtype=f"S{width}")


def _param_sets(conn: sqlite3.Connection, plan: Plan) -> list[_ParamSet]:
    """Candidates grouped by ``param_key`` in SQL. A million rows never become Python
    objects: row ids come back as comma-joined text and dates as one string of
    fixed-width fields, both read straight into numpy arrays."""
    width = _date_width(plan)
    pad = " " * width
    where = f"instrument = ? AND length(exposure_date) <= {width}"
    params: list[object] = [plan.instrument]
    if plan.since is not None:
        where += " AND (exposure_date >= ? OR exposure_date = '')"
        params.append(plan.since)
    if dialect_of(conn).name == "postgresql":  # rowid is a column there (datasets table)
        sql = (f"SELECT string_agg(rowid::text, ',' ORDER BY rowid), "
               f"string_agg(substr(exposure_date || '{pad}', 1, {width}), '' ORDER BY rowid), "
               f"min(rowid) FROM {TABLE} WHERE {where} GROUP BY param_key")
    else:
        sql = (f"SELECT group_concat(rowid, ','), "
               f"group_concat(substr(exposure_date || '{pad}', 1, {width}), ''), min(rowid) "
               f"FROM {TABLE} WHERE {where} GROUP BY param_key")
    found = []
    for rowids, dates, first in conn.execute(sql, params):
        found.append((np.fromstring(rowids, dtype=np.int64, sep=","),
                      np.frombuffer(dates.encode(), dtype=f"S{width}"), first))
    # Dates longer than any rule date (rare): each on its own, cut to the width (a
    # longer date sorts after its prefix, and no rule date lies between them).
    for rowid, date in conn.execute(
            f"SELECT rowid, exposure_date FROM {TABLE} WHERE instrument = ? "
            f"AND length(exposure_date) > {width}", (plan.instrument,)):
        if plan.since is None or date >= plan.since:
            found.append((np.array([rowid], dtype=np.int64),
                          _as_dates([date.encode()[:width].decode(errors="ignore")], width),
                          rowid))
    headers = _headers_by_rowid(conn, [first for _, _, first in found])
    return [_ParamSet(rowids, dates, headers[first]) for rowids, dates, first in found]


def _headers_by_rowid(conn: sqlite3.Connection, rowids: Sequence[int]) -> dict[int, dict]:
    found: dict[int, dict] = {}
    values = [int(r) for r in rowids]
    for start in range(0, len(values), 500):
        chunk = values[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for rowid, header in conn.execute(
                f"SELECT rowid, header FROM {TABLE} WHERE rowid IN ({marks})", chunk):
            found[rowid] = json.loads(header)
    return found


def _ids(conn: sqlite3.Connection, rowids: np.ndarray) -> list[str]:
    found: dict[int, str] = {}
    values = [int(r) for r in rowids]
    for start in range(0, len(values), 500):
        chunk = values[start:start + 500]
        marks = ",".join("?" * len(chunk))
        found.update(conn.execute(
            f"SELECT rowid, id FROM {TABLE} WHERE rowid IN ({marks})", chunk).fetchall())
    return [found[r] for r in values]


@dataclasses.dataclass
class _Members:
    """Datasets of one group: row ids, dates, and which parameter set each came from."""

    rowids: np.ndarray
    dates: np.ndarray
    sets: list[_ParamSet]
    owner: np.ndarray  # index into `sets`, per dataset

    @classmethod
    def join(cls, param_sets: list[_ParamSet]) -> _Members:
        owner = np.repeat(np.arange(len(param_sets)), [len(p.rowids) for p in param_sets])
        return cls(np.concatenate([p.rowids for p in param_sets]),
                   np.concatenate([p.dates for p in param_sets]), param_sets, owner)

    def __len__(self) -> int:
        return len(self.rowids)

    def date(self, index: int) -> str:
        return self.dates[index].decode().rstrip(" ")

    def header(self, index: int, date_pair: tuple[str, str] | None) -> dict:
        """The header of member `index`: its parameter set's, with its own date."""
        header = self.sets[self.owner[index]].header
        date = self.date(index)
        if date_pair is None or not date:
            return header
        header = dict(header)
        header[date_pair[0]], header[date_pair[1]] = date[:10], date[11:]
        return header

    def split(self, breakpoints: Sequence[str]) -> list[np.ndarray]:
        """Member indices by the interval of `breakpoints` their date is in (no date:
        each alone)."""
        blank = self.dates == b" " * self.dates.dtype.itemsize
        undated = np.flatnonzero(blank)
        dated = np.flatnonzero(~blank)
        parts = [undated[i:i + 1] for i in range(len(undated))]
        if len(dated):
            if len(breakpoints):
                bounds = _as_dates(breakpoints, self.dates.dtype.itemsize)
                codes = np.searchsorted(bounds, self.dates[dated], side="right")
            else:
                codes = np.zeros(len(dated), dtype=np.int64)
            order = np.argsort(codes, kind="stable")
            cuts = np.flatnonzero(np.diff(codes[order])) + 1
            parts.extend(dated[chunk] for chunk in np.split(order, cuts))
        return parts

    def subset(self, indices: np.ndarray) -> _Members:
        return _Members(self.rowids[indices], self.dates[indices], self.sets,
                        self.owner[indices])


def _date_pair(header: Mapping[str, object], observatory: str) -> tuple[str, str] | None:
    for pair in DATE_KEYS.get(observatory, ()):
        if pair[0] in header:
            return pair
    return None


def instrument_groups(conn: sqlite3.Connection, plan: Plan, old: Context, new: Context,
                      errors: dict[str, int]) -> tuple[list[tuple[tuple, list[str]]], int, int]:
    """``([(changes, ids), ...] of the affected groups, candidates, groups computed)``;
    the new context's lookup errors are counted into ``errors``."""
    # 1. Candidates by their parameters other than the date (in SQL).
    param_sets = _param_sets(conn, plan)
    considered = sum(len(p.rowids) for p in param_sets)
    failed: list[tuple[str, int]] = []
    # 2. By the values the changed rmaps read: one header per parameter set.
    by_values: dict[tuple, list[_ParamSet]] = {}
    for param_set in param_sets:
        if plan.exact_dates:  # the date values are read some other way: each on its own
            singles = _headers_by_rowid(conn, param_set.rowids)
            for index, rowid in enumerate(param_set.rowids):
                single = _ParamSet(param_set.rowids[index:index + 1],
                                   param_set.dates[index:index + 1], singles[int(rowid)])
                _add_by_values(single, plan, old, new, by_values, failed)
        else:
            _add_by_values(param_set, plan, old, new, by_values, failed)
    # 3. By the date intervals that matter to them; one representative per group.
    finals: list[tuple[_Members, int]] = []  # (members, index of the representative)
    for sets in by_values.values():
        members = _Members.join(sets)
        if plan.breakpoints is None:  # dates not read (or read exactly: already apart)
            finals.append((members, 0))
            continue
        pair = _date_pair(sets[0].header, new.observatory)
        for hook_part in members.split(plan.hook_breakpoints):
            part = members.subset(hook_part)
            if not part.date(0):
                finals.append((part, 0))
                continue
            reachable = _reachable_dates(plan, part.header(0, pair), old, new)
            breakpoints = (plan.breakpoints if reachable is None
                           else sorted(reachable.union(plan.hook_breakpoints)))
            for indices in part.split(breakpoints):
                finals.append((part.subset(indices), 0))
    # 4. Best references once per group, under both contexts, for the changed types.
    groups: list[tuple[tuple, list[str]]] = []
    wanted = _lookup_keys(plan, old, new)
    for members, index in finals:
        size = len(members)
        pair = None if plan.exact_dates else _date_pair(members.sets[0].header, new.observatory)
        try:
            lookup = _lookup_header(members.header(index, pair), wanted, old, new)
            before = [_type_result(old, plan.instrument, t, lookup) for t in plan.types]
            after = [_type_result(new, plan.instrument, t, lookup) for t in plan.types]
        except DatasetError as exc:
            failed.append((exc.not_found, size))
            continue
        changes = []
        for filekind, was, now in zip(plan.types, before, after, strict=True):
            if type(now) is str and now.startswith("NOT FOUND") and now != NOT_APPLICABLE:
                message = f"{plan.instrument.lower()}.{filekind}: {now}"
                errors[message] = errors.get(message, 0) + size
            if was != now:
                changes.append((filekind, was, now))
        if changes:
            groups.append((tuple(changes), _ids(conn, members.rowids)))
    for message, size in failed:
        label = f"{plan.instrument.lower()}: {message}"
        errors[label] = errors.get(label, 0) + size
    return groups, considered, len(finals)


def _add_by_values(param_set: _ParamSet, plan: Plan, old: Context, new: Context,
                   by_values: dict[tuple, list[_ParamSet]],
                   failed: list[tuple[str, int]]) -> None:
    try:
        values = _group_values(param_set.header, plan, old, new)
    except DatasetError as exc:
        failed.append((exc.not_found, len(param_set.rowids)))
        return
    by_values.setdefault(values, []).append(param_set)


def _lookup_keys(plan: Plan, old: Context, new: Context) -> frozenset[str] | None:
    """The header keys the changed types' lookups can read (None: keep the whole header).

    The plan's keys cover the rmaps' parameters, expressions and hooks; the instrument
    keywords decide the instrument. JWST headers are renamed before lookup, so not there.
    """
    if new.observatory == "jwst" or old.observatory == "jwst":
        return None
    return frozenset((*plan.keys, *plan.date_keys, old.instrument_key, new.instrument_key))


def _lookup_header(header: dict, wanted: frozenset[str] | None, old: Context,
                   new: Context) -> dict[str, str]:
    """The conditioned header the rmaps are given, as `Context.best_references` makes it
    (cut down to `wanted`, the keys the changed types read)."""
    if wanted is None:
        merged: dict[str, str] = {}
        for context in (old, new):
            try:
                merged.update(context.minimized_header(header)[1])
            except DatasetError:
                if context is new and not merged:
                    raise
        return merged
    return {key: condition_value(header[key]) if key in header else "UNDEFINED"
            for key in wanted}


def _type_result(context: Context, instrument: str, filekind: str,
                 header: dict[str, str]) -> object:
    """One type's best reference, exactly as `Context.best_references` gives it (lists
    for several files; `OMITTED` where the type is left out)."""
    try:
        rmap = context.rmap(instrument, filekind)
    except KeyError:
        return f"NOT FOUND Unknown reference type {filekind!r}"
    if isinstance(rmap, str):  # N/A or OMIT at the instrument level
        return NOT_APPLICABLE if is_na_value(rmap) else OMITTED
    value = rmap.best_ref(header)
    if value is None:
        return OMITTED
    return list(value) if isinstance(value, tuple) else value


def _reachable_dates(plan: Plan, header: dict, old: Context, new: Context) -> set[str] | None:
    """The UseAfter dates of every rule a dataset with these parameters can reach in the
    changed rmaps (its Match candidates, fallbacks included), or None when unknown.

    Reads the compiled rmaps' lookup plan (`MatchSelector._plan`): the same ranking the
    lookup uses, so exactly the UseAfters a lookup could fall through to.
    """
    try:
        minimized: dict[str, str] = {}
        for context in (old, new):
            with contextlib.suppress(DatasetError):
                minimized.update(context.minimized_header(header)[1])
        found: set[str] = set()
        for rmap in plan.rmaps:
            headers = []
            try:
                first = rmap.precondition(minimized) if rmap.precondition else minimized
                headers.append(rmap._irrelevant_to_na(first))
            except Exception:  # noqa: BLE001 - fails alike at every date
                pass
            if rmap.fallback is not None:
                retry = rmap.fallback(dict(minimized))
                if retry:
                    retry = {key: retry.get(key, "UNDEFINED") for key in rmap.required_parkeys}
                    with contextlib.suppress(Exception):
                        headers.append(rmap._irrelevant_to_na(retry))
            for lookup in headers:
                dates = _selector_dates(rmap.selector, lookup)
                if dates is None:
                    return None
                found.update(dates)
        return found
    except (AttributeError, TypeError):  # the compiled rmap changed shape: use all dates
        return None


def _selector_dates(selector: object, header: Mapping[str, str]) -> set[str] | None:
    if type(selector) is UseAfterSelector:
        return set(selector.keys)
    if type(selector) is not MatchSelector:
        return None
    plan = selector._plan(header)
    if type(plan) is tuple:  # fails alike at every date
        return set()
    found: set[str] = set()
    for choice in plan:
        members = getattr(choice, "members", None) if type(choice).__name__ == "_Tie" else None
        for member in members if members is not None else [choice]:
            if type(member) is UseAfterSelector:
                found.update(member.keys)
            elif isinstance(member, Selector):
                return None
    return found


def _group_values(header: dict, plan: Plan, old: Context, new: Context) -> tuple:
    """The conditioned values of the plan's keys, as the contexts minimize the header."""
    merged: dict[str, str] = {}
    for context in (old, new):
        try:
            _, minimized = context.minimized_header(header)
        except DatasetError:
            if context is new and not merged:
                raise
            continue
        merged.update(minimized)
    return tuple(merged.get(key, "UNDEFINED") for key in plan.keys)
