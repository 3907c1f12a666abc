"""Answer plans: an instrument's best references for one tuple of non-date values.

A new dataset differs from earlier ones mostly by its exposure date; its other values (the
observing mode) come from a small set. An `InstrumentPlan` keys on those other values (the
instrument's header minus the keys its rmaps' UseAfters compare as dates) and keeps, per
type, the rmap's `DateTable` for them (see `datetables`): the answer for any date is one
bisect. Building a row costs about one plain lookup per type and is shared by every later
dataset in the same mode, whatever its date. Rows are found by the conditioned values, and
also by the header's raw values (with their types, as `bestrefs.Context._raw_key` makes
them), so a dataset in a known mode is answered without conditioning anything but its date.

Types whose rmap cannot be tabulated (a precondition hook, a date read by an expression,
selectors other than Match/UseAfter) and the failures whose handling reads more than the
mode (`SLOW` in a table, an unreadable date) are answered by the rmap's plain `best_ref`,
so the answers are always the plain ones.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from operator import itemgetter

from crds_events.rules.conditioning import is_na_value
from crds_events.rules.datetables import SLOW
from crds_events.rules.index import NOT_APPLICABLE, ReferenceIndex, _env
from crds_events.rules.selection import SelectionError

__all__ = ["InstrumentPlan"]

_ROW_LIMIT = 50_000
_FAILED = object()  # a date that cannot be read: the plain lookup reports it
_TWO_STRINGS = (str, str)

Kinds = list[tuple[str, "ReferenceIndex | str | None"]]


class _Row:
    """Every type's answer for one mode: constants in `template` (None: omitted), the
    dated types by date parameters, the rmaps of types that may need `best_ref`."""

    __slots__ = ("groups", "rmaps", "slow", "template", "tuples")

    def __init__(self, size: int):
        self.template: list[object] = [None] * size
        # (date parameters, a UseAfter reading them, [(index, dates, values)])
        self.groups: list[tuple[tuple[str, ...], object, list[tuple[int, list, list]]]] = []
        self.rmaps: list[ReferenceIndex | None] = [None] * size
        self.slow = False  # some value may be SLOW
        self.tuples = False  # some value may be a tuple of files


def _getter(positions: list[int]) -> Callable[[tuple], tuple]:
    """A function picking `positions` out of a tuple, always answering a tuple."""
    if len(positions) == 1:
        only = positions[0]
        return lambda values: (values[only],)
    if not positions:
        return lambda values: ()
    return itemgetter(*positions)


class InstrumentPlan:
    """Best references of `kinds` (type, rmap / `N/A` / `OMIT` / None for an unknown type)
    for headers with the keys `keys` (the instrument's minimized, conditioned header).

    `condition` turns raw header values (as `answer_raw` is given them) into their
    conditioned form, all at once.
    """

    def __init__(
        self,
        kinds: Kinds,
        keys: Iterable[str],
        condition: Callable[[tuple], list[str]] | None = None,
    ):
        self.kinds = list(kinds)
        self.filekinds = [filekind for filekind, _ in self.kinds]
        self.keys = tuple(keys)
        self.condition = condition
        rmaps = [rmap for _, rmap in self.kinds if isinstance(rmap, ReferenceIndex)]
        self.dates: set[str] = set().union(*(rmap.date_parameters() for rmap in rmaps))
        self._tabulable = {id(rmap) for rmap in rmaps if rmap.tabulable(self.dates)}
        # The row key: every value but the dates, in the header's order.
        self.names = tuple(dict.fromkeys(key for key in self.keys if key not in self.dates))
        first = {}
        for position, key in enumerate(self.keys):
            first.setdefault(key, position)
        self._positions = first
        self._raw_mode = _getter([first[name] for name in self.names])
        self._raw_dates: dict[tuple[str, ...], Callable[[tuple], tuple]] = {}
        self._rows: dict[tuple, _Row] = {}
        self._raw_rows: dict[tuple, _Row] = {}
        self._date_memo: dict[tuple, object] = {}
        self._lock = threading.Lock()

    # -- answering

    def answer(
        self, header: Mapping[str, str], env: Mapping[str, object]
    ) -> tuple[dict[str, object], tuple[str, ...]]:
        """(type -> file name, tuple of names or `NOT FOUND ...` (omitted types left out),
        exactly as each rmap's `best_ref(header, env)` answers; the types answered by a
        tuple)."""
        row = self._row(header, env)
        values = row.template.copy()
        for _parameters, dater, entries in row.groups:
            try:
                date = dater.memoised_lookup_key(header)  # type: ignore[attr-defined]
            except SelectionError:
                date = _FAILED
            _fill(values, entries, date)
        slow = row.slow or _FAILED in values
        if slow:
            _slow(values, row, header, env)
        return self._results(values, slow or row.tuples)

    def answer_raw(self, raw: tuple, types: tuple) -> tuple[dict[str, object], tuple[str, ...]]:
        """`answer` for a header given as its raw values of `keys` and their types (see
        `bestrefs.Context._raw_key`): conditions only what the row does not know."""
        mode = (self._raw_mode(raw), self._raw_mode(types))
        row = self._raw_rows.get(mode)
        header = None
        if row is None:
            header = self._conditioned(raw)
            row = self._row(header, _env(header))
            with self._lock:
                if len(self._raw_rows) > _ROW_LIMIT:
                    self._raw_rows.clear()
                self._raw_rows[mode] = row
        values = row.template.copy()
        for parameters, dater, entries in row.groups:
            _fill(values, entries, self._raw_date(parameters, dater, raw, types))
        slow = row.slow or _FAILED in values
        if slow:
            if header is None:
                header = self._conditioned(raw)
            _slow(values, row, header, _env(header))
        return self._results(values, slow or row.tuples)

    def _results(
        self, values: list[object], tuples: bool
    ) -> tuple[dict[str, object], tuple[str, ...]]:
        results = {k: v for k, v in zip(self.filekinds, values, strict=True) if v is not None}
        if not tuples:
            return results, ()
        return results, tuple(k for k, v in results.items() if v.__class__ is tuple)

    def _conditioned(self, raw: tuple) -> dict[str, str]:
        return dict(zip(self.keys, self.condition(raw), strict=True))  # type: ignore[misc]

    def _raw_date(self, parameters: tuple[str, ...], dater, raw: tuple, types: tuple) -> object:
        """The lookup date of these raw values (memoised on them and their types)."""
        pick = self._raw_dates.get(parameters)
        if pick is None:
            pick = self._raw_dates[parameters] = _getter(
                [self._positions[name] for name in parameters])
        values = pick(raw)
        if len(values) == 2 and pick(types) == _TWO_STRINGS:
            # The usual spelling, `YYYY-MM-DD` and `HH:MM:SS`: conditioning leaves it as it
            # is and the lookup date is the two joined (a valid date: the C parser agrees).
            text = f"{values[0]} {values[1]}"
            if len(text) == 19 and text[4] == "-" and text[13] == ":":
                try:
                    if datetime.fromisoformat(text).isoformat(" ") == text:
                        return text
                except ValueError:
                    pass
        key = (parameters, values, pick(types))
        date = self._date_memo.get(key)
        if date is None:
            header = dict(zip(parameters, self.condition(values), strict=True))  # type: ignore[misc]
            try:  # every parameter is there: `lookup_key` alone, memoised here
                date = dater.lookup_key(header)
            except SelectionError:
                date = _FAILED
            if len(self._date_memo) > _ROW_LIMIT:
                self._date_memo.clear()
            self._date_memo[key] = date
        return date

    # -- rows

    def _row(self, header: Mapping[str, str], env: Mapping[str, object]) -> _Row:
        key = tuple(map(header.get, self.names))
        row = self._rows.get(key)
        if row is None:
            row = self._build_row(header, env)
            with self._lock:
                if len(self._rows) > _ROW_LIMIT:
                    self._rows.clear()
                self._rows[key] = row
        return row

    def _build_row(self, header: Mapping[str, str], env: Mapping[str, object]) -> _Row:
        row = _Row(len(self.kinds))
        groups: dict[tuple[str, ...], tuple[object, list]] = {}
        for index, (filekind, rmap) in enumerate(self.kinds):
            if rmap is None:
                row.template[index] = f"NOT FOUND Unknown reference type {filekind!r}"
                continue
            if isinstance(rmap, str):  # N/A or OMIT at the instrument level
                row.template[index] = NOT_APPLICABLE if is_na_value(rmap) else None
                continue
            row.rmaps[index] = rmap
            if id(rmap) not in self._tabulable:
                row.template[index] = SLOW
                row.slow = True
                continue
            table = rmap.date_table(header, env)
            if table.slow:
                row.slow = True
            if table.tuples:
                row.tuples = True
            if not table.parameters:
                row.template[index] = table.values[0]
                continue
            group = groups.get(table.parameters)
            if group is None:
                group = groups[table.parameters] = (table.dater, [])
            group[1].append((index, table.keys, table.values))
        row.groups = [(parameters, dater, entries)
                      for parameters, (dater, entries) in groups.items()]
        return row


def _fill(values: list[object], entries: list[tuple[int, list, list]], date: object) -> None:
    """Put each dated type's value for `date` (or `_FAILED`) into `values`."""
    if date is _FAILED:
        for index, _dates, _values in entries:
            values[index] = _FAILED
        return
    bisect_right = bisect.bisect_right
    for index, dates, answers in entries:
        values[index] = answers[bisect_right(dates, date)]


def _slow(values: list[object], row: _Row, header: Mapping[str, str],
          env: Mapping[str, object]) -> None:
    """Answer the SLOW and date-failed types with the rmaps' own lookups."""
    for index, value in enumerate(values):
        if value is SLOW or value is _FAILED:
            values[index] = row.rmaps[index].best_ref(header, env)  # type: ignore[union-attr]
