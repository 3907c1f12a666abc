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
from datetime import date, datetime
from datetime import time as clock
from itertools import repeat
from operator import getitem, itemgetter

from crds_events.rules.conditioning import is_na_value
from crds_events.rules.datetables import SLOW, DateTable, Failure
from crds_events.rules.index import NOT_APPLICABLE, ReferenceIndex, _env
from crds_events.rules.selection import SelectionError

__all__ = ["InstrumentPlan"]

_ROW_LIMIT = 50_000

Kinds = list[tuple[str, "ReferenceIndex | str | None"]]


class _Row:
    """Every type's answer for one mode: constants in `template` (None: omitted), the
    dated types by date parameters, the rmaps of types that may need `best_ref`.

    Rows are many and long-lived: few container objects each (the cyclic collector
    walks them all)."""

    __slots__ = ("fast", "groups", "omits", "rmaps", "seen", "slow", "template", "tuples")

    def __init__(self, template: list[object], rmaps: list, slow: bool):
        self.template = template
        # (date parameters, a reader of that date, [type index], [its dates], [its values])
        self.groups: list[tuple[tuple[str, ...], object, list[int], list[list], list[list]]] = []
        self.rmaps: list[ReferenceIndex | None] = rmaps  # the plan's: read only
        self.slow = slow  # some value may be SLOW
        self.tuples = False  # some value may be a tuple of files
        self.omits = False  # some dated value may be None
        # see `_Fast`; built at the row's second dataset (a row met once, as where the
        # header cache answers the repeats, does not pay for it)
        self.fast: _Fast | None = None
        self.seen = False


class _Fast:
    """A row whose dated types all read one date (the usual case), laid out for answering
    a usual date without a Python-level loop: the dated types' arrays side by side, the
    constant answers, and (`layout`, shared by rows alike) the types answered, in order,
    and where each is in `constants + dated answers`."""

    __slots__ = ("constants", "dater", "dates", "layout", "may_omit", "parameters", "values")

    def __init__(self, parameters: tuple[str, ...], dates: list[list], values: list[list],
                 constants: list[object], layout: tuple[list[str], Callable], may_omit: bool,
                 dater: object):
        self.parameters = parameters
        self.dater = dater  # the one reader of the date (None: several kinds read it)
        self.dates = dates
        self.values = values
        self.constants = constants
        self.layout = layout
        self.may_omit = may_omit


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
        missing: object = None,
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
        # `answer_raw`'s raw values stand for a missing key with `missing`
        self._absent = (missing,) * len(self.names)
        # the types of raw values `bestrefs.Context._raw_key` lets through
        self._raw_types = frozenset({str, int, float, bool, type(None), type(missing)})
        self._raw_dates: dict[tuple[str, ...], Callable[[tuple], tuple]] = {}
        self._rows: dict[tuple, _Row] = {}
        self._raw_rows: dict[tuple, _Row] = {}
        self._date_memo: dict[tuple, object] = {}
        self._lock = threading.Lock()
        # Per type: (the header values its rmap's table depends on, {those: table}), so
        # that a row in a new mode costs a dict lookup for each type whose values it has
        # seen (None: the rmap's own `date_table` memo answers).
        self._projections: list[tuple[Callable[[Mapping], object], dict] | None] = [
            self._projection(rmap) for _, rmap in self.kinds]
        # What every row starts from: the answers that depend on no header, SLOW for the
        # rmaps answered by their own lookup; then the types with tables to find.
        self._template: list[object] = [None] * len(self.kinds)
        self._rmaps: list[ReferenceIndex | None] = [None] * len(self.kinds)
        self._slow = False
        self._dynamic: list[tuple[int, ReferenceIndex, tuple | None]] = []
        for index, (filekind, rmap) in enumerate(self.kinds):
            if rmap is None:
                self._template[index] = f"NOT FOUND Unknown reference type {filekind!r}"
            elif isinstance(rmap, str):  # N/A or OMIT at the instrument level
                self._template[index] = NOT_APPLICABLE if is_na_value(rmap) else None
            elif id(rmap) not in self._tabulable:
                self._rmaps[index] = rmap
                self._template[index] = SLOW
                self._slow = True
            else:
                self._rmaps[index] = rmap
                self._dynamic.append((index, rmap, self._projections[index]))
        self._layouts: dict[tuple, tuple[list[str], Callable]] = {}

    # -- answering

    def answer(
        self, header: Mapping[str, str], env: Mapping[str, object]
    ) -> tuple[dict[str, object], tuple[str, ...]]:
        """(type -> file name, tuple of names or `NOT FOUND ...` (omitted types left out),
        exactly as each rmap's `best_ref(header, env)` answers; the types answered by a
        tuple)."""
        row = self._row(header, env)
        values = row.template.copy()
        failed = False
        for _parameters, dater, *entries in row.groups:
            try:
                date = dater.memoised_lookup_key(header)  # type: ignore[attr-defined]
            except SelectionError as exc:
                date = Failure(type(exc), str(exc))
                failed = True
            _fill(values, entries, date)
        slow = row.slow or failed
        if slow:
            _slow(values, row, header, env)
        return self._results(values, slow or row.tuples)

    def answer_header(
        self, header: Mapping[str, object]
    ) -> tuple[dict[str, object], tuple[str, ...]] | None:
        """`answer_raw` read straight from a header whose keys `answer_raw` could be given
        (upper case, its instrument's), where its mode is one `answer_raw` met (so its
        values' types were checked there) and its date is the usual spelling; else None
        (ask `answer_raw`)."""
        mode = tuple(map(header.get, self.names, self._absent))
        try:
            row = self._raw_rows.get((mode, tuple(map(type, mode))))
        except TypeError:  # an unhashable value
            return None
        if row is None:
            return None
        fast = row.fast or self._fast(row)
        if fast is None:
            return None
        if not fast.parameters:  # nothing dated
            return self._fast_results(fast, "", row.tuples)
        values = tuple(map(header.get, fast.parameters, self._absent))
        date = _plain_text(values)
        if date is None:  # another spelling: read as `answer_raw` reads it
            kinds = tuple(map(type, values))
            if fast.dater is None or not self._raw_types.issuperset(kinds) or (
                    float in kinds and 0.0 in values):  # (0.0 == -0.0: `_raw_key`)
                return None
            date = self._date_of(fast.parameters, fast.dater, values, kinds)
            if date.__class__ is Failure:
                return None
        return self._fast_results(fast, date, row.tuples)

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
        fast = row.fast or self._fast(row)
        if fast is not None:
            if not fast.parameters:  # nothing dated
                return self._fast_results(fast, "", row.tuples)
            date = _plain_text(self._date_getter(fast.parameters)(raw))
            if date is not None:
                return self._fast_results(fast, date, row.tuples)
        values = row.template.copy()
        failed = False
        for parameters, dater, *entries in row.groups:
            date = self._raw_date(parameters, dater, raw, types)
            if date.__class__ is Failure:
                failed = True
            _fill(values, entries, date)
        slow = row.slow or failed
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

    @staticmethod
    def _fast_results(
        fast: _Fast, date: str, tuples: bool
    ) -> tuple[dict[str, object], tuple[str, ...]]:
        """`_results` of a `_Fast` row at `date` (a valid lookup date)."""
        answers = [*fast.constants,
                   *map(getitem, fast.values, map(bisect.bisect_right, fast.dates, repeat(date)))]
        kinds, order = fast.layout
        results = dict(zip(kinds, order(answers), strict=True))
        if fast.may_omit:
            results = {k: v for k, v in results.items() if v is not None}
        if not tuples:
            return results, ()
        return results, tuple(k for k, v in results.items() if v.__class__ is tuple)

    def _date_getter(self, parameters: tuple[str, ...]) -> Callable[[tuple], tuple]:
        pick = self._raw_dates.get(parameters)
        if pick is None:
            pick = self._raw_dates[parameters] = _getter(
                [self._positions[name] for name in parameters])
        return pick

    def _conditioned(self, raw: tuple) -> dict[str, str]:
        return dict(zip(self.keys, self.condition(raw), strict=True))  # type: ignore[misc]

    def _raw_date(self, parameters: tuple[str, ...], dater, raw: tuple, types: tuple) -> object:
        """The lookup date of these raw values (memoised on them and their types)."""
        pick = self._date_getter(parameters)
        values = pick(raw)
        text = _plain_text(values)
        if text is not None:
            return text
        return self._date_of(parameters, dater, values, pick(types))

    def _date_of(self, parameters: tuple[str, ...], dater, values: tuple, kinds: tuple) -> object:
        """The lookup date (or the `Failure` reading it) of raw date values of these types,
        memoised on both."""
        key = (dater.__class__, parameters, values, kinds)  # daters differ in checks
        date = self._date_memo.get(key)
        if date is None:
            header = dict(zip(parameters, self.condition(values), strict=True))  # type: ignore[misc]
            try:  # every parameter is there: `lookup_key` alone, memoised here
                date = dater.lookup_key(header)
            except SelectionError as exc:
                date = Failure(type(exc), str(exc))
            if len(self._date_memo) > _ROW_LIMIT:
                self._date_memo.clear()
            self._date_memo[key] = date
        return date

    # -- rows

    def _projection(self, rmap: object) -> tuple[Callable[[Mapping], object], dict] | None:
        if not isinstance(rmap, ReferenceIndex) or id(rmap) not in self._tabulable:
            return None
        reads = rmap.table_reads()
        keys = set(self.keys)
        # The rmap reads the expression environment: where a dotted key is spelled with
        # underscores there, it is not the header's own value.
        underscored = {key.replace(".", "_") for key in keys if "." in key}
        if reads is None or underscored.intersection(reads):
            return None
        present = [name for name in reads if name in keys]  # the others read None
        if not present:
            return (lambda header: ()), {}
        return itemgetter(*present), {}

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
        template = self._template.copy()
        row = _Row(template, self._rmaps, self._slow)
        dated: list[int] = []
        tables_dated: list[DateTable] = []
        for index, rmap, projection in self._dynamic:
            if projection is None:
                table = rmap.date_table(header, env)
            else:
                pick, tables = projection
                key = pick(header)
                table = tables.get(key)
                if table is None:
                    table = rmap.date_table(header, env)
                    if len(tables) > _ROW_LIMIT:
                        tables.clear()
                    tables[key] = table
            if table.slow:
                row.slow = True
            if table.tuples:
                row.tuples = True
            if table.parameters:
                dated.append(index)
                tables_dated.append(table)
            else:
                template[index] = table.values[0]
        if tables_dated:
            row.groups = _groups(dated, tables_dated)
            row.omits = any(table.omits for table in tables_dated)
        return row

    def _fast(self, row: _Row) -> _Fast | None:
        """The row's `_Fast` (None where it has none), from its second dataset on."""
        if not row.seen:
            row.seen = True
            return None
        if row.slow or len({group[0] for group in row.groups}) > 1:
            return None
        groups = row.groups
        if len(groups) == 1:
            parameters, _dater, dated, dates, values = groups[0]
        else:  # one date read by several kinds of reader (or nothing dated)
            parameters = groups[0][0] if groups else ()
            dated = [index for group in groups for index in group[2]]
            dates = [table for group in groups for table in group[3]]
            values = [table for group in groups for table in group[4]]
        template = row.template
        omitted = set(dated)
        constant = tuple(i for i, value in enumerate(template)
                         if value is not None and i not in omitted)
        shape = (constant, tuple(dated))
        layout = self._layouts.get(shape)
        if layout is None:
            # position in `constants + dated answers` of each answered type, in type order
            position = {index: n for n, index in enumerate(constant)}
            position.update({index: len(constant) + n for n, index in enumerate(dated)})
            answered = sorted(position)
            layout = ([self.filekinds[i] for i in answered],
                      _getter([position[i] for i in answered]))
            if len(self._layouts) > _ROW_LIMIT:
                self._layouts.clear()
            self._layouts[shape] = layout
        row.fast = _Fast(parameters, dates, values, [template[i] for i in constant], layout,
                         row.omits, groups[0][1] if len(groups) == 1 else None)
        return row.fast


def _groups(dated: list[int], tables: list[DateTable]) -> list[tuple]:
    """`_Row.groups` of the dated types (`dated`: their indexes): tables reading the date
    alike share one reading (a `StrictDater` refuses more than a UseAfter)."""
    first = tables[0]
    reading = (first.parameters, first.dater.__class__)
    if all((t.parameters, t.dater.__class__) == reading for t in tables):  # the usual case
        return [(first.parameters, first.dater, dated,
                 [t.keys for t in tables], [t.values for t in tables])]
    groups: dict[tuple, tuple] = {}
    for index, table in zip(dated, tables, strict=True):
        reading = (table.parameters, table.dater.__class__)
        group = groups.get(reading)
        if group is None:
            group = groups[reading] = (table.parameters, table.dater, [], [], [])
        group[2].append(index)
        group[3].append(table.keys)
        group[4].append(table.values)
    return list(groups.values())


_DAYS: dict[str, bool] = {}
_TIMES: dict[str, bool] = {}


def _valid(seen: dict[str, bool], text: str, parse: Callable[[str], object]) -> bool:
    """Whether `parse` reads `text` and gives back the same spelling (remembered)."""
    try:
        valid = parse(text).isoformat() == text  # type: ignore[attr-defined]
    except ValueError:
        valid = False
    if len(seen) > _ROW_LIMIT:
        seen.clear()
    seen[text] = valid
    return valid


def _plain_text(values: tuple) -> str | None:
    """The lookup date of raw date values in the usual spelling, `YYYY-MM-DD` and
    `HH:MM:SS` (strings): conditioning leaves it as it is and the lookup date is the two
    joined, a valid date (the C parser agrees); None for any other. Every dater reads it
    alike (no value empty)."""
    if len(values) != 2:
        return None
    day, time = values
    if day.__class__ is not str or time.__class__ is not str:
        return None
    if len(day) == 10 and len(time) == 8:
        # The date and the time each valid, in the spelling the C parsers give back:
        # remembered apart (days and times repeat, their pairs seldom).
        if (_DAYS.get(day) or _valid(_DAYS, day, date.fromisoformat)) and (
                _TIMES.get(time) or _valid(_TIMES, time, clock.fromisoformat)):
            return f"{day} {time}"
        return None
    text = f"{day} {time}"
    if len(text) == 19 and text[4] == "-" and text[13] == ":":
        try:
            if datetime.fromisoformat(text).isoformat(" ") == text:
                return text
        except ValueError:
            pass
    return None


def _fill(values: list[object], entries: list[list], date: object) -> None:
    """Put each dated type's value for `date` (or the `Failure` reading it) into `values`;
    `entries`: the types' indexes, dates, values."""
    indexes, dates, answers = entries
    if date.__class__ is Failure:
        for index in indexes:
            values[index] = date
        return
    found = map(getitem, answers, map(bisect.bisect_right, dates, repeat(date)))
    for index, value in zip(indexes, found, strict=True):
        values[index] = value


def _slow(values: list[object], row: _Row, header: Mapping[str, str],
          env: Mapping[str, object]) -> None:
    """Answer the date-failed types (as their rmaps handle the failure) and the SLOW ones
    (with the rmaps' own lookups)."""
    for index, value in enumerate(values):
        if value.__class__ is Failure:
            value = row.rmaps[index].date_failure(header, value)  # type: ignore[union-attr]
            values[index] = value
        if value is SLOW:
            values[index] = row.rmaps[index].best_ref(header, env)  # type: ignore[union-attr]
