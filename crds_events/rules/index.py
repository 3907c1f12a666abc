"""One rmap compiled for fast lookups: the reference-type half of best references.

`ReferenceIndex` is built once per rmap: the selector tree with pre-conditioned Match keys
and patterns, per-parameter valid values, UseAfter dates as sorted arrays for bisection,
the header expressions checked and compiled, and the hooks found. Lookups are memoised
where the answer depends on few values: each Match caches its ranked candidates per tuple
of its parameter values (and each parameter's key bit masks per value), each UseAfter
family its lookup date per tuple of date/time values, each expression its result per tuple
of the names it reads, and the parkey_relevance step the parameters it sets to N/A. (A
cache of whole rmap answers would not pay: nearly every dataset brings a new date.)

`best_ref(header)` reproduces CRDS's rmap lookup order exactly:

1. `rmap_omit` true -> the type is left out; `rmap_relevance` false -> `NOT FOUND n/a`
   (an expression that cannot be evaluated counts as "not omitted" / "relevant");
2. the precondition hook adjusts the header; parameters whose `parkey_relevance` is false
   become `N/A`;
3. the selector chooses. If that fails: a do-not-reprocess dataset gets `NOT FOUND n/a`;
   else the fallback hook's header is tried; if that fails too, the failure stands when
   `reffile_required` is YES or NONE, and becomes `NOT FOUND n/a` otherwise;
4. a rule value `N/A` gives `NOT FOUND n/a`, `OMIT` leaves the type out.
"""

from __future__ import annotations

from collections.abc import Mapping

from crds_events.errors import CrdsEventsError
from crds_events.rules import hooks as hook_registry
from crds_events.rules.conditioning import (
    NA_VALUES,
    OMIT_VALUES,
    UNDEFINED,
    is_na_value,
    is_omit_value,
)
from crds_events.rules.datetables import (
    MISS,
    SLOW,
    DateTable,
    Failure,
    StrictDater,
    date_parameters,
    flattenable,
    overlay,
    selector_table,
    split_table,
    walk_selectors,
)
from crds_events.rules.expressions import (
    EvaluationError,
    ExpressionError,
    compile_expression,
)
from crds_events.rules.expressions import MemoisedExpression as _CachedExpression
from crds_events.rules.hooks import DATE_FREE_READS, DATE_SPLITS, DO_NOT_REPROCESS_READS
from crds_events.rules.ordered import UseAfterSelector
from crds_events.rules.selectors import (
    MatchSelector,
    RulesError,
    SelectionError,
    Selector,
    build_selector,
)

NOT_APPLICABLE = "NOT FOUND n/a"

# Observatory-wide keys every rmap needs (CRDS's observatory package `extra_keys`).
OBSERVATORY_EXTRA_KEYS = {
    "jwst": ("META.VISIT.TSOVISIT", "META.INSTRUMENT.LAMP_STATE"),
}


class NotApplicable(CrdsEventsError):
    """The reference type does not apply to this dataset (`NOT FOUND n/a`)."""


class Omitted(CrdsEventsError):
    """The reference type is left out of the results."""


def header_string(header: Mapping[str, object], key: str, default: object = None) -> object:
    """A mapping header value as CRDS reads it: strings lower-cased except "(...)"."""
    value = header.get(key, default)
    if isinstance(value, str) and not (value.startswith("(") and value.endswith(")")):
        return value.lower()
    return value


_ABSENT = object()


class ReferenceIndex:
    """The compiled form of one rmap (a `document.MappingDocument` of kind 'reference')."""

    def __init__(self, document) -> None:
        header = document.header
        self.name: str = document.name
        self.observatory: str = str(header_string(header, "observatory"))
        self.instrument: str = str(header_string(header, "instrument"))
        self.filekind: str = str(header_string(header, "filekind"))
        self.parkey: tuple = tuple(header.get("parkey", ()))
        self.reffile_required = str(header_string(header, "reffile_required", "NONE")).upper()
        self.reffile_switch = str(header_string(header, "reffile_switch", "NONE")).upper()
        self.extra_keys = tuple(header.get("extra_keys", ()))
        self.required_parkeys = self._required_parkeys()
        merge = header.get("merge_overlaps")
        merge_overlaps = True if merge is None else str(merge).upper() in ("TRUE", "1")
        substitutions = header.get("substitutions") or {}
        try:
            self.selector: Selector = build_selector(
                document.selector, self.parkey, substitutions, merge_overlaps
            )
        except RulesError as exc:
            raise RulesError(f"{self.name}: {exc}") from exc
        relevance = str(header_string(header, "rmap_relevance", "always")).replace("always", "True")
        self.relevance = self._compile(relevance, "rmap_relevance")
        self.omit = self._compile(str(header_string(header, "rmap_omit", "False")), "rmap_omit")
        # Most rmaps say `always` / nothing: decided once, not per lookup.
        self._fixed_omit = self.omit.fixed_truth(on_error=False)
        self._fixed_relevance = self.relevance.fixed_truth(on_error=True)
        relevant = dict(header.get("parkey_relevance") or {})
        for name in header.get("comment_parkeys", ()):
            relevant[str(name).lower()] = "keep_comments"
        self.parkey_relevance = {
            str(name).lower(): self._compile(str(expr), f"parkey_relevance[{name!r}]")
            for name, expr in relevant.items()
        }
        # The names the parkey_relevance expressions read (keep_comments is a constant).
        self._relevance_names = tuple(sorted(
            {n for e in self.parkey_relevance.values() for n in e.names} - {"keep_comments"}
        ))
        self._relevance_absent = (_ABSENT,) * len(self._relevance_names)
        self._na_memo: dict[tuple, tuple[str, ...] | str] = {}
        named_hooks = header.get("hooks") or None
        self.precondition = hook_registry.find_hook(
            self.observatory, self.instrument, self.filekind, "precondition_header", named_hooks
        )
        self.fallback = hook_registry.find_hook(
            self.observatory, self.instrument, self.filekind, "fallback_header", named_hooks
        )
        self.do_not_reprocess = hook_registry.do_not_reprocess_check(self.observatory)
        self._tables: dict[tuple, DateTable] = {}  # Match parameter values -> date table
        self._tables_by_reads: dict[tuple, DateTable] = {}  # values read -> date table
        self._table_reads: tuple[str, ...] | None = None
        # (values read, values the do-not-reprocess check reads) -> the table answered
        self._answered: dict[tuple, DateTable] = {}
        # None: a check whose reads are not declared (then answered for every row)
        self._excuse_reads = (() if self.do_not_reprocess is None
                              else DO_NOT_REPROCESS_READS.get(self.do_not_reprocess))

    def _required_parkeys(self) -> list[str]:
        names: list[str] = []
        for level in self.parkey:
            if isinstance(level, (tuple, list)):
                names.extend(str(name) for name in level)
            else:
                names.append(str(level))
        if self.reffile_switch != "NONE":
            names.append(self.reffile_switch)
        names.extend(str(name) for name in self.extra_keys)
        names.extend(OBSERVATORY_EXTRA_KEYS.get(self.observatory, ()))
        return names

    def _compile(self, source: str, field: str) -> _CachedExpression:
        try:
            return _CachedExpression(compile_expression(source, self.required_parkeys))
        except ExpressionError as exc:
            raise RulesError(f"{self.name}: header {field}: {exc}") from exc

    def reference_names(self) -> list[str]:
        """The reference files this rmap names (special values like N/A excluded)."""
        names: set[str] = set()
        for terminal in self.selector.terminals():
            values = terminal if isinstance(terminal, tuple) else (terminal,)
            if isinstance(terminal, dict):
                values = tuple(terminal.values())
            for value in values:
                if isinstance(value, str) and not (is_na_value(value) or is_omit_value(value)):
                    names.add(value)
        return sorted(names)

    # -- date tables (see `datetables`)

    def date_parameters(self) -> set[str]:
        """The parameters this rmap's UseAfters compare as dates."""
        return date_parameters(self.selector)

    def tabulable(self, dates: set[str]) -> bool:
        """Whether `date_table` can answer for this rmap when `dates` are the keys left out
        of the instrument's cache key: nothing but its UseAfters may read them."""
        split = DATE_SPLITS.get(self.precondition)  # type: ignore[arg-type]
        if split is not None:
            # Its date must be the one every UseAfter reads (see `_split_table`).
            if any(type(node) is UseAfterSelector and node.parameters != split.dates
                   for node in walk_selectors(self.selector)):
                return False
            if self._split_dater() is None:
                return False
        elif self.precondition is not None and self.precondition not in DATE_FREE_READS:
            return False  # a hook may read anything, the date included
        spelled = dates | {name.replace(".", "_") for name in dates}
        names = set(self.omit.names) | set(self.relevance.names) | set(self._relevance_names)
        names |= set(self._hook_reads())
        names |= {name.upper() for name in self.parkey_relevance}  # may be set to N/A
        if spelled.intersection(names) or spelled.intersection(n.upper() for n in names):
            return False
        return flattenable(self.selector, dates)

    def date_table(self, header: Mapping[str, str], env: Mapping[str, object]) -> DateTable:
        """`best_ref(header)` as a function of the date, for a `tabulable` rmap: file names,
        tuples, `NOT FOUND n/a`, None (omit) or `SLOW` (ask `best_ref`).

        Memoised on the values of every name the lookup reads but the dates (`env` holds
        the header's keys and their underscore spellings); where the table has failures,
        their answers also on the names the do-not-reprocess check reads.
        """
        reads = self._table_reads
        if reads is None:
            self.table_reads()
            reads = self._table_reads
        key = tuple(map(env.get, reads))  # type: ignore[arg-type]
        table = self._tables_by_reads.get(key)
        if table is None:
            split = DATE_SPLITS.get(self.precondition)  # type: ignore[arg-type]
            if split is None:
                table = self._date_table(header, env)
            else:
                table = self._split_table(header, env, split)
            if len(self._tables_by_reads) > 10_000:
                self._tables_by_reads.clear()
            self._tables_by_reads[key] = table
        if table.variants is None:
            return table
        # Failures are answered per header: their handling reads keys the rules may not.
        if self._excuse_reads is None:
            return self.resolved(table, header)
        key = (key, tuple(map(env.get, self._excuse_reads)))
        answered = self._answered.get(key)
        if answered is None:
            answered = self.resolved(table, header)
            if len(self._answered) > 10_000:
                self._answered.clear()
            self._answered[key] = answered
        return answered

    def table_reads(self) -> tuple[str, ...] | None:
        """Every name `date_table`'s answer depends on (None: not all known): its memo
        keys, which a caller may key its own memo on."""
        if self._table_reads is None:
            dates = self.date_parameters()
            names = set(self.required_parkeys) | set(self.omit.names)
            names |= set(self.relevance.names) | set(self._relevance_names)
            names |= set(self._hook_reads())
            self._table_reads = tuple(sorted(names - dates))
        if self._excuse_reads is None:
            return None
        return tuple(dict.fromkeys((*self._table_reads, *self._excuse_reads)))

    def _hook_reads(self) -> tuple[str, ...]:
        """The non-date keys the hooks read."""
        split = DATE_SPLITS.get(self.precondition)  # type: ignore[arg-type]
        return (
            *DATE_FREE_READS.get(self.precondition, ()),  # type: ignore[arg-type]
            *(split.reads if split is not None else ()),
            *DATE_FREE_READS.get(self.fallback, ()),  # type: ignore[arg-type]
        )

    def _split_dater(self) -> StrictDater | None:
        """The date reader of tables through a date-split hook: a UseAfter of this rmap."""
        for node in walk_selectors(self.selector):
            if type(node) is UseAfterSelector:
                return StrictDater(node)
        return None

    def _split_table(self, header: Mapping[str, str], env: Mapping[str, object],
                     split) -> DateTable:
        """The table through a `hooks.DateSplit` precondition: the lookup with a date on
        either side of the split, each side's table on its side (the steps before the hook,
        omit and relevance, read no date); failure markers left for `resolved`."""
        if self._omitted(env):
            return _OMITTED
        if not self._relevant(env):
            return _NOT_APPLICABLE_TABLE
        sides = [self._date_table(side, _env(side)) for side in split.sides(header)]
        return split_table(sides[0], sides[1], split.point, self._split_dater())  # type: ignore[arg-type]

    def _date_table(self, header: Mapping[str, str], env: Mapping[str, object]) -> DateTable:
        """The table before `resolved`: failure markers (`MISS`, `Failure`) left in."""
        if self._omitted(env):
            return _OMITTED
        if not self._relevant(env):
            return _NOT_APPLICABLE_TABLE
        if self.precondition is not None:  # date-free, or given a side of its split
            try:
                header = self.precondition(header)
            except Exception as exc:  # noqa: BLE001 - `best_ref` answers NOT FOUND <reason>
                return DateTable.constant("NOT FOUND " + str(exc)).finish()
        try:
            header = self._irrelevant_to_na(header)
        except SelectionError:
            return _SLOW_TABLE
        key = tuple(map(header.get, self.selector.parameters))
        table = self._tables.get(key)
        if table is None:
            table = self._finished(selector_table(self.selector, header))
            if len(self._tables) > 10_000:
                self._tables.clear()
            self._tables[key] = table
        return table

    def _finished(self, table: DateTable | None) -> DateTable:
        """A selector's table with its values as `best_ref` gives them (`_final_value`);
        kept on the table (shared by the selectors' memos), by the one thing it reads."""
        if table is None:
            return _SLOW_TABLE
        match = type(self.selector) is MatchSelector
        finished = table.final if match else table.final_plain
        if finished is None:
            if not match or not _SPECIAL.isdisjoint(table.values):
                finished = table.map(self._final_value).finish()
            else:  # file names and failures only, as most are: nothing to change
                finished = DateTable(table.keys, table.values, table.parameters, table.dater)
                finished.finish()
            if match:
                table.final = finished
            else:
                table.final_plain = finished
        return finished

    def _final_value(self, value: object) -> object:
        """A table value as `best_ref` returns it (`_select`'s last steps), failures left
        for `resolved` (their handling reads the header)."""
        if type(value) is str:
            if value in NA_VALUES:
                return NOT_APPLICABLE
            if value in OMIT_VALUES:
                return None
            return value
        if value is MISS and type(self.selector) is not MatchSelector:
            return SLOW  # a UseAfter's own miss names the date
        return value

    def resolved(self, table: DateTable, header: Mapping[str, str]) -> DateTable:
        """`table` (from `_date_table(header, ...)`) with its failures answered for
        `header`: only `SLOW` is left for `best_ref`. Depends on the header's non-date
        values, through the do-not-reprocess check and the fallback hook."""
        if table.variants is None:
            return table
        split = DATE_SPLITS.get(self.precondition)  # type: ignore[arg-type]
        excuses = set()
        for side in (header,) if split is None else split.sides(header):
            try:  # what `_select` hands the do-not-reprocess check
                relevant = self._irrelevant_to_na(
                    self.precondition(side) if self.precondition else side)
            except Exception:  # noqa: BLE001 - the plain lookup reports it
                return _SLOW_TABLE
            excuses.add(self.do_not_reprocess is not None and self.do_not_reprocess(relevant))
        if len(excuses) > 1:  # the hook's two sides differ: not worth a table
            return _SLOW_TABLE
        # The failure handling reads the header only through the do-not-reprocess check.
        excused = excuses.pop()
        if not excused and self.fallback in DATE_FREE_READS:
            return self._retried(table, header)
        variant = table.variants.get(excused)
        if variant is None:
            variant = table.answered(lambda value: self._failure(value, excused))
            table.variants[excused] = variant
        return variant

    def _retried(self, table: DateTable, header_in: Mapping[str, str]) -> DateTable:
        """`table` with its failures answered by the (date-free) fallback hook's retry at
        the same date, as `_select` retries; its failures stand or become N/A."""
        try:
            retry = self.fallback(dict(header_in))  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - the plain lookup reports it
            return _SLOW_TABLE
        if not retry:  # `_select` re-raises the first failure
            return table.answered(lambda value: self._failure(value, False, retried=True))
        retry = {key: retry.get(key, UNDEFINED) for key in self.required_parkeys}
        try:
            retry_table = self._finished(selector_table(self.selector, self._irrelevant_to_na(retry)))
        except SelectionError as exc:
            retry_table = DateTable.constant(Failure(type(exc), str(exc))).finish()
        retry_table = retry_table.answered(
            lambda value: self._failure(value, False, retried=True))
        combined = overlay(table, retry_table, _is_failure)
        return _SLOW_TABLE if combined is None else combined

    def date_failure(self, header: Mapping[str, str], failure: Failure) -> object:
        """`best_ref(header)` where the date cannot be read (`failure`: how reading it
        failed), for a tabulable rmap whose table for `header` reads the date: its walk
        reaches a UseAfter before any answer, which fails so, and `_select` handles that
        (SLOW where a hook takes part: the plain lookup answers)."""
        if self.fallback is not None or self.precondition in DATE_SPLITS:
            return SLOW
        try:  # what `_select` hands the do-not-reprocess check
            relevant = self._irrelevant_to_na(
                self.precondition(header) if self.precondition else header)
        except Exception:  # noqa: BLE001 - the plain lookup reports it
            return SLOW
        if self.do_not_reprocess is not None and self.do_not_reprocess(relevant):
            return NOT_APPLICABLE
        if self.reffile_required in ("YES", "NONE"):
            return "NOT FOUND " + failure.message
        return NOT_APPLICABLE

    def _failure(self, value: object, excused: bool, retried: bool = False) -> object:
        """`best_ref`'s answer where the selector fails (`_select`'s failure handling);
        SLOW where a fallback hook would retry with another header (`retried`: the retry's
        own failure, or a fallback that gave no header)."""
        if value is MISS:
            message = "No match found."  # after every candidate, the Match's own miss
        elif type(value) is Failure:
            message = value.message
        else:
            return value
        if excused:
            return NOT_APPLICABLE
        if self.fallback is not None and not retried:
            return SLOW
        if self.reffile_required in ("YES", "NONE"):
            return "NOT FOUND " + message
        return NOT_APPLICABLE

    # -- lookup

    def _omitted(self, env: Mapping[str, object]) -> bool:
        """rmap_omit: true -> the type is left out (an expression that cannot be evaluated
        counts as "not omitted"); the rmap's constant when it has one."""
        omit = self._fixed_omit
        return self.omit.truth(env, on_error=False) if omit is None else omit

    def _relevant(self, env: Mapping[str, object]) -> bool:
        """rmap_relevance: false -> N/A (an expression that cannot be evaluated counts as
        "relevant"); the rmap's constant when it has one."""
        relevant = self._fixed_relevance
        return self.relevance.truth(env, on_error=True) if relevant is None else relevant

    def best_ref(self, header: Mapping[str, str], env: Mapping[str, object] | None = None):
        """The result for `header` (the instrument-level minimized, conditioned header):
        a file name, a tuple of names, `NOT FOUND n/a`, `NOT FOUND <reason>`, or None (omit).

        `env` is the expression environment of `header` (see `expressions.expression_env`),
        passed in so it is built once per dataset.
        """
        if env is None:
            env = _env(header)
        try:
            if self._omitted(env):
                return None
            if not self._relevant(env):
                return NOT_APPLICABLE
            return self._select(header)
        except NotApplicable:
            return NOT_APPLICABLE
        except Omitted:
            return None
        except Exception as exc:  # noqa: BLE001 - every failure is a "NOT FOUND <reason>"
            return "NOT FOUND " + str(exc)

    def _select(self, header_in: Mapping[str, str]):
        """The selector's result for a relevant dataset (NOT_APPLICABLE, or None for omit,
        returned on the common paths); other failures raise."""
        header = self.precondition(header_in) if self.precondition else header_in
        if self.parkey_relevance:
            header = self._irrelevant_to_na(header)
        try:
            bestref = self.selector.choose(header)
        except Exception as first:  # noqa: BLE001 - CRDS retries after any failure
            if self.do_not_reprocess is not None and self.do_not_reprocess(header):
                raise NotApplicable() from first
            try:
                retry = self.fallback(dict(header_in)) if self.fallback else None
                if not retry:
                    raise
                retry = {key: retry.get(key, UNDEFINED) for key in self.required_parkeys}
                bestref = self.selector.choose(self._irrelevant_to_na(retry))
            except Exception as final:  # noqa: BLE001
                if self.reffile_required in ("YES", "NONE"):
                    raise
                raise NotApplicable() from final
        if type(bestref) is str:
            if bestref in NA_VALUES:
                return NOT_APPLICABLE
            if bestref in OMIT_VALUES:
                return None
        return bestref

    def _irrelevant_to_na(self, header: Mapping[str, str]) -> Mapping[str, str]:
        """Set parameters whose parkey_relevance expression is false to N/A."""
        if not self.parkey_relevance:
            return header
        na = None
        memo_key = None
        try:
            if "." not in "".join(header):  # no dotted keys: names are header keys
                memo_key = tuple(map(header.get, self._relevance_names, self._relevance_absent))
                na = self._na_memo.get(memo_key)
        except TypeError:  # a key that is not a string, or an unhashable value
            memo_key = None
        if na is None:
            na = self._irrelevant_names(header)
            if memo_key is not None:
                if len(self._na_memo) > 10_000:
                    self._na_memo.clear()
                self._na_memo[memo_key] = na
        if type(na) is str:
            raise SelectionError(na)
        if not na:
            return header
        result = dict(header)
        for name in na:
            result[name] = "N/A"
        return result

    def _irrelevant_names(self, header: Mapping[str, str]) -> tuple[str, ...] | str:
        """The parameters whose parkey_relevance is false, or the evaluation error's text.

        Depends only on the header values of the names the expressions read (a missing or
        None required parameter counts as UNDEFINED), which `_irrelevant_to_na` memoises on.
        """
        expr_header = dict(header)
        for key in self.required_parkeys:
            if expr_header.get(key, UNDEFINED) in (UNDEFINED, None):
                expr_header[key] = UNDEFINED
        env = dict(_env(expr_header))
        env["keep_comments"] = False
        names: list[str] = []
        for name in self.required_parkeys:
            expression = self.parkey_relevance.get(name.lower())
            if expression is None:
                continue
            try:
                relevant = expression.evaluate(env)
            except EvaluationError as exc:
                return str(exc)
            if not relevant:
                names.append(name)
        return tuple(names)

    def __repr__(self) -> str:
        return f"ReferenceIndex({self.name!r})"


_OMITTED = DateTable.constant(None).finish()
_NOT_APPLICABLE_TABLE = DateTable.constant(NOT_APPLICABLE).finish()
_SLOW_TABLE = DateTable.constant(SLOW).finish()
_SPECIAL = NA_VALUES | OMIT_VALUES  # rule values `_final_value` changes


def _is_failure(value: object) -> bool:
    return value is MISS or type(value) is Failure


def _env(header: Mapping[str, object]) -> Mapping[str, object]:
    """The expression environment of `header`: itself where no key is dotted (read only!),
    else a copy with the underscore forms of dotted keys added."""
    try:
        if "." not in "".join(header):
            return header
    except TypeError:  # a key that is not a string
        pass
    env = dict(header)
    for key, value in header.items():
        if "." in key:
            env[key.replace(".", "_")] = value
    return env
