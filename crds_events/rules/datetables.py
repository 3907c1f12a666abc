"""Date tables: an rmap's answer, for fixed non-date parameters, as a step function of the date.

Most rmaps are `Match` over the observing mode, each case a `UseAfter` over the exposure
date. For one tuple of mode values the Match's ranked candidates are fixed, so the whole
lookup is "the first candidate whose UseAfter has a date <= the dataset's date": a step
function of the date. A `DateTable` holds it flattened into one sorted array of dates, so
a new dataset with known mode values costs one bisect per type instead of a walk through
the Match ranking, the tie merging and the UseAfters.

A table reproduces the selector walk exactly or is not built (`None`): only `Match`
selectors over non-date parameters and `UseAfter` selectors over date parameters with
terminal choices are flattened. Where the walk fails, the table says how: `MISS` (no
candidate answers for that date) or a `Failure` (an invalid value, an ambiguous tie); the
rmap turns those into its answer (`index.ReferenceIndex.date_table`), or into `SLOW` where
that answer depends on more than the table knows: the caller then runs the plain lookup.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping

from crds_events.rules.match import MatchSelector, _Tie
from crds_events.rules.ordered import UseAfterSelector
from crds_events.rules.selection import (
    MEMO_LIMIT,
    InvalidValueError,
    SelectionError,
    Selector,
)

__all__ = [
    "MISS",
    "SLOW",
    "DateTable",
    "Failure",
    "StrictDater",
    "date_parameters",
    "flattenable",
    "overlay",
    "selector_table",
    "split_table",
    "walk_selectors",
]


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: No candidate answers for these dates (a Match then tries its next candidate).
MISS = _Marker("MISS")
#: The plain lookup must answer (a failure whose handling depends on the whole header).
SLOW = _Marker("SLOW")


class Failure:
    """The walk raises `error(message)` for these dates, whatever the date."""

    __slots__ = ("error", "message")

    def __init__(self, error: type[SelectionError], message: str):
        self.error = error
        self.message = message

    def __repr__(self) -> str:
        return f"Failure({self.error.__name__}, {self.message!r})"


class DateTable:
    """`values[bisect_right(keys, date)]`; `parameters` are the date parameters whose lookup
    key `date` is (empty: the answer does not depend on the date, `values[0]` is it).

    `dater` is a UseAfter over `parameters` whose (memoised) `lookup_key` gives the date, or
    raises exactly as the plain walk would on its first UseAfter.
    """

    __slots__ = (
        "dater", "failures", "final", "final_plain", "keys", "omits", "parameters", "slow",
        "tuples", "values",
        "variants",
    )

    def __init__(
        self,
        keys: list,
        values: list,
        parameters: tuple[str, ...] = (),
        dater: UseAfterSelector | None = None,
    ):
        self.keys = keys
        self.values = values
        self.parameters = parameters
        self.dater = dater
        # Set by `finish`: where the failure markers are, whether SLOW is among the values,
        # and (where there are failures) the tables with them answered, by how (see
        # `index.ReferenceIndex.resolved`).
        self.failures: tuple[int, ...] = ()
        self.slow = False
        self.tuples = True  # some value may be a tuple of files (known after `finish`)
        self.omits = True  # some value may be None (known after `finish`)
        self.variants: dict | None = None
        # This table as rmaps finish it (see `index.ReferenceIndex._finished`): rmaps whose
        # selector is a Match, and the others. (Tables are many and long-lived: no dict.)
        self.final: DateTable | None = None
        self.final_plain: DateTable | None = None

    def finish(self) -> DateTable:
        """Note where the failure markers (`MISS`, `Failure`) and `SLOW` are; returns self."""
        values = self.values
        # Scans at C speed: most tables hold file names and one MISS, below the first date.
        misses = values.count(MISS)
        kinds = set(map(type, values))
        self.tuples = tuple in kinds
        self.omits = type(None) in kinds
        if Failure in kinds or (misses and not (misses == 1 and values[0] is MISS)):
            self.failures = tuple(i for i, v in enumerate(values)
                                  if v is MISS or v.__class__ is Failure)
        else:
            self.failures = (0,) if misses else ()
        self.variants = {} if self.failures else None
        self.slow = SLOW in values
        return self

    def answered(self, function) -> DateTable:
        """This table with `function` applied to its failure markers (see `finish`)."""
        values = self.values.copy()
        for index in self.failures:
            values[index] = function(values[index])
        table = DateTable(self.keys, values, self.parameters, self.dater)
        table.slow = self.slow or any(values[index] is SLOW for index in self.failures)
        table.tuples = self.tuples  # failures are answered by strings
        table.omits = self.omits or any(values[index] is None for index in self.failures)
        return table

    @classmethod
    def constant(cls, value: object) -> DateTable:
        return cls([], [value])

    def at(self, date: object) -> object:
        return self.values[bisect.bisect_right(self.keys, date)]

    def map(self, function) -> DateTable:
        """The same steps with `function` applied to every value."""
        return DateTable(self.keys, [function(v) for v in self.values], self.parameters, self.dater)

    def __repr__(self) -> str:
        return f"DateTable({self.parameters!r}, {len(self.keys)} dates)"


def walk_selectors(selector: Selector):
    """Every selector of the tree (the selector itself first)."""
    yield selector
    if selector.leaf:
        return
    for choice in selector.choices():
        if isinstance(choice, Selector):
            yield from walk_selectors(choice)


def date_parameters(selector: Selector) -> set[str]:
    """The parameters of the tree's UseAfter selectors (their values are the dates)."""
    return {
        name for node in walk_selectors(selector)
        if type(node) is UseAfterSelector for name in node.parameters
    }


def flattenable(selector: Selector, dates: set[str]) -> bool:
    """Whether `selector_table` can flatten this tree given the instrument's date keys:
    Match over non-date keys, UseAfter over date keys with terminal choices, nothing else."""
    for node in walk_selectors(selector):
        if type(node) is MatchSelector:
            if dates.intersection(node.parameters):
                return False
        elif type(node) is UseAfterSelector:
            if not dates.issuperset(node.parameters):
                return False
            if not node.leaf and any(isinstance(c, Selector) for c in node.choices()):
                return False
        else:
            return False
    return True


def selector_table(selector: object, header: Mapping[str, str]) -> DateTable | None:
    """The walk of `selector` for `header` as a step function of the date (None: not
    representable; the caller falls back to the plain walk)."""
    if not isinstance(selector, Selector):
        return DateTable.constant(selector)
    if type(selector) is UseAfterSelector:
        return _use_after_table(selector)
    if type(selector) is MatchSelector:
        plan = selector.candidates(header)
        if type(plan) is tuple:  # an invalid value: the lookup fails whatever the date
            return DateTable.constant(Failure(*plan))
        # Many parameter values share their candidates (the same wildcard keys match):
        # one table per distinct list of candidates. The memo holds the candidates too,
        # so their ids cannot be reused while it holds them.
        memo = getattr(selector, "_plan_tables", None)
        if memo is None:
            memo = selector._plan_tables = {}  # type: ignore[attr-defined]
        key = tuple(map(id, plan))
        found = memo.get(key)
        if found is None:
            if len(memo) > MEMO_LIMIT:
                memo.clear()
            found = memo[key] = (plan, _first_answering(plan, header))
        return found[1]
    return None


_NOT_FLAT = DateTable([], [])  # a UseAfter with nested selectors


def _use_after_table(selector: UseAfterSelector) -> DateTable | None:
    """A UseAfter's table (the same for every header: built once, kept on the selector)."""
    table = getattr(selector, "_date_table", None)
    if table is None:
        if any(isinstance(c, Selector) for c in selector.choices()):
            table = _NOT_FLAT
        else:
            # Below the first date: a miss (the Match tries its next candidate).
            table = DateTable(list(selector.keys), [MISS, *selector.choices()],
                              selector.parameters, selector)
        selector._date_table = table  # type: ignore[attr-defined]
    return None if table is _NOT_FLAT else table


def _first_answering(plan: list[object], header: Mapping[str, str]) -> DateTable | None:
    """The Match walk: each date answered by the first candidate not missing."""
    tables: list[DateTable] = []
    for candidate in plan:
        if type(candidate) is _Tie:
            try:
                candidate = candidate.merged()
            except SelectionError as exc:  # fails where it is reached
                tables.append(DateTable.constant(Failure(type(exc), str(exc))))
                break
        table = selector_table(candidate, header)
        if table is None:
            return None
        tables.append(table)
        if MISS not in table.values:  # later candidates are never reached
            break
    result = DateTable.constant(MISS)  # every candidate missed: "No match found."
    for table in reversed(tables):
        result = _first_of(table, result)
        if result is None:
            return None
    return result


def _first_of(first: DateTable, then: DateTable) -> DateTable | None:
    """`first`, and `then` wherever `first` misses."""
    if not first.parameters:
        # A constant: it answers for every date, or the walk goes straight on.
        return then if first.values[0] is MISS else first
    if then.parameters and then.parameters != first.parameters:
        return None  # two date spellings in one walk: not worth a table
    if MISS not in first.values:
        return first
    if first.values[0] is MISS and MISS not in first.values[1:]:
        # The usual case (a UseAfter): `then` below the first date, `first` from there on.
        below = bisect.bisect_left(then.keys, first.keys[0]) if first.keys else len(then.keys)
        keys = then.keys[:below] + first.keys
        values = then.values[: below + 1] + first.values[1:]
        return DateTable(keys, values, first.parameters, first.dater)
    # General case: every breakpoint of both, the first's value unless it misses.
    keys = sorted(set(first.keys) | set(then.keys))
    values = []
    for point in (None, *keys):
        value = first.values[0] if point is None else first.at(point)
        if value is MISS:
            value = then.values[0] if point is None else then.at(point)
        values.append(value)
    return DateTable(keys, values, first.parameters, first.dater)


class StrictDater:
    """A UseAfter's lookup date, refused (`SelectionError`) where a date value is empty
    or missing: there a hook reading the same values (`hooks.DateSplit`) could read
    another date, so the plain lookup answers."""

    __slots__ = ("parameters", "use_after")

    def __init__(self, use_after: UseAfterSelector):
        self.use_after = use_after
        self.parameters = use_after.parameters

    def _check(self, header: Mapping[str, str]) -> None:
        for name in self.parameters:
            if not header.get(name):
                raise InvalidValueError(f"Empty date parameter {name!r}")

    def memoised_lookup_key(self, header: Mapping[str, str]) -> object:
        self._check(header)
        return self.use_after.memoised_lookup_key(header)

    def lookup_key(self, header: Mapping[str, str]) -> object:
        self._check(header)
        return self.use_after.lookup_key(header)


def split_table(before: DateTable, after: DateTable, point: str, dater: StrictDater) -> DateTable:
    """`before` for dates below `point`, `after` from it on; the date read by `dater`
    (always: a table through a date-split hook reads the date even where both sides are
    one constant, since the hook fails on a date it cannot read)."""
    below = bisect.bisect_left(before.keys, point)  # before's breakpoints < point
    above = bisect.bisect_right(after.keys, point)  # after's breakpoints <= point
    keys = [*before.keys[:below], point, *after.keys[above:]]
    values = [*before.values[: below + 1], *after.values[above:]]
    return DateTable(keys, values, dater.parameters, dater).finish()


def overlay(first: DateTable, then: DateTable, where) -> DateTable | None:
    """`first`, with `then`'s value at the same date wherever `where(first's value)` (None:
    the two read the date under different parameters)."""
    if not then.parameters:
        value = then.values[0]
        table = DateTable(first.keys, [value if where(v) else v for v in first.values],
                          first.parameters, first.dater)
        return table.finish()
    if first.parameters and first.parameters != then.parameters:
        return None
    keys = sorted(set(first.keys) | set(then.keys))
    values = []
    for point in (None, *keys):
        value = first.values[0] if point is None else first.at(point)
        if where(value):
            value = then.values[0] if point is None else then.at(point)
        values.append(value)
    return DateTable(keys, values, then.parameters, then.dater).finish()
