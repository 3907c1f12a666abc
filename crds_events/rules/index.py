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
    date_parameters,
    flattenable,
    selector_table,
)
from crds_events.rules.expressions import (
    EvaluationError,
    Expression,
    ExpressionError,
    compile_expression,
)
from crds_events.rules.hooks import DATE_FREE_READS
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


class _CachedExpression:
    """An expression memoised per tuple of the values of the names it reads."""

    def __init__(self, expression: Expression):
        self.expression = expression
        self.names = tuple(sorted(expression.names))
        self._absent = (_ABSENT,) * len(self.names)  # defaults for map(env.get, ...)
        self._memo: dict[tuple, tuple[bool, object]] = {}
        self._constant: tuple[bool, object] | None = None
        if not self.names:  # e.g. ALWAYS -> True: evaluate once
            try:
                self._constant = (True, expression.evaluate({}))
            except EvaluationError as exc:
                self._constant = (False, str(exc))

    def fixed_truth(self, on_error: bool) -> bool | None:
        """The truth of a constant expression (`on_error` if it fails); None if it varies."""
        if self._constant is None:
            return None
        ok, value = self._constant
        return bool(value) if ok else on_error

    def evaluate(self, env: Mapping[str, object]) -> object:
        ok, value = self._outcome(env)
        if not ok:
            raise EvaluationError(value)
        return value

    def truth(self, env: Mapping[str, object], on_error: bool) -> bool:
        """The expression's truth over `env`, or `on_error` if it cannot be evaluated."""
        ok, value = self._outcome(env)
        return bool(value) if ok else on_error

    def _outcome(self, env: Mapping[str, object]) -> tuple[bool, object]:
        """(True, value) or (False, the evaluation error's text), memoised."""
        if self._constant is not None:
            return self._constant
        key = tuple(map(env.get, self.names, self._absent))
        found = self._memo.get(key)
        if found is None:
            try:
                found = (True, self.expression.evaluate(env))
            except EvaluationError as exc:
                found = (False, str(exc))
            if len(self._memo) > 10_000:
                self._memo.clear()
            self._memo[key] = found
        return found


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
        if self.precondition is not None and self.precondition not in DATE_FREE_READS:
            return False  # a hook may read anything, the date included
        spelled = dates | {name.replace(".", "_") for name in dates}
        names = set(self.omit.names) | set(self.relevance.names) | set(self._relevance_names)
        names |= set(DATE_FREE_READS.get(self.precondition, ()))  # type: ignore[arg-type]
        names |= {name.upper() for name in self.parkey_relevance}  # may be set to N/A
        if spelled.intersection(names) or spelled.intersection(n.upper() for n in names):
            return False
        return flattenable(self.selector, dates)

    def date_table(self, header: Mapping[str, str], env: Mapping[str, object]) -> DateTable:
        """`best_ref(header)` as a function of the date, for a `tabulable` rmap: file names,
        tuples, `NOT FOUND n/a`, None (omit) or `SLOW` (ask `best_ref`).

        Memoised on the values of every name the lookup reads but the dates (`env` holds
        the header's keys and their underscore spellings)."""
        reads = self._table_reads
        if reads is None:
            dates = self.date_parameters()
            names = set(self.required_parkeys) | set(self.omit.names)
            names |= set(self.relevance.names) | set(self._relevance_names)
            names |= set(DATE_FREE_READS.get(self.precondition, ()))  # type: ignore[arg-type]
            reads = self._table_reads = tuple(sorted(names - dates))
        key = tuple(map(env.get, reads))
        table = self._tables_by_reads.get(key)
        if table is None:
            table = self._date_table(header, env)
            if len(self._tables_by_reads) > 10_000:
                self._tables_by_reads.clear()
            self._tables_by_reads[key] = table
        # Failures are answered per header: their handling reads keys the rules may not.
        return table if table.variants is None else self.resolved(table, header)

    def _date_table(self, header: Mapping[str, str], env: Mapping[str, object]) -> DateTable:
        """The table before `resolved`: failure markers (`MISS`, `Failure`) left in."""
        omit = self._fixed_omit
        if omit is None:
            omit = self.omit.truth(env, on_error=False)
        if omit:
            return _OMITTED
        relevant = self._fixed_relevance
        if relevant is None:
            relevant = self.relevance.truth(env, on_error=True)
        if not relevant:
            return _NOT_APPLICABLE_TABLE
        if self.precondition is not None:  # a date-free one (see `tabulable`)
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
        if table.finals is None:
            table.finals = {}
        finished = table.finals.get(match)
        if finished is None:
            if not match or not _SPECIAL.isdisjoint(table.values):
                finished = table.map(self._final_value).finish()
            else:  # file names and failures only, as most are: nothing to change
                finished = DateTable(table.keys, table.values, table.parameters, table.dater)
                finished.finish()
            table.finals[match] = finished
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
        values, through the do-not-reprocess check."""
        if table.variants is None:
            return table
        try:  # what `_select` hands the do-not-reprocess check
            relevant = self._irrelevant_to_na(
                self.precondition(header) if self.precondition else header)
        except Exception:  # noqa: BLE001 - the plain lookup reports it
            return _SLOW_TABLE
        # The failure handling reads the header only through the do-not-reprocess check.
        excused = self.do_not_reprocess is not None and self.do_not_reprocess(relevant)
        variant = table.variants.get(excused)
        if variant is None:
            variant = table.answered(lambda value: self._failure(value, excused))
            table.variants[excused] = variant
        return variant

    def _failure(self, value: object, excused: bool) -> object:
        """`best_ref`'s answer where the selector fails (`_select`'s failure handling);
        SLOW where a fallback hook would retry with another header."""
        if value is MISS:
            message = "No match found."  # after every candidate, the Match's own miss
        elif type(value) is Failure:
            message = value.message
        else:
            return value
        if excused:
            return NOT_APPLICABLE
        if self.fallback is not None:
            return SLOW
        if self.reffile_required in ("YES", "NONE"):
            return "NOT FOUND " + message
        return NOT_APPLICABLE

    # -- lookup

    def best_ref(self, header: Mapping[str, str], env: Mapping[str, object] | None = None):
        """The result for `header` (the instrument-level minimized, conditioned header):
        a file name, a tuple of names, `NOT FOUND n/a`, `NOT FOUND <reason>`, or None (omit).

        `env` is the expression environment of `header` (see `expressions.expression_env`),
        passed in so it is built once per dataset.
        """
        if env is None:
            env = _env(header)
        try:
            # rmap_omit true -> left out; rmap_relevance false -> N/A (an expression that
            # cannot be evaluated counts as "not omitted" / "relevant").
            omit = self._fixed_omit
            if omit is None:
                omit = self.omit.truth(env, on_error=False)
            if omit:
                return None
            relevant = self._fixed_relevance
            if relevant is None:
                relevant = self.relevance.truth(env, on_error=True)
            if not relevant:
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
