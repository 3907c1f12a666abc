"""Selector semantics: how a parsed rmap selector tree chooses a reference for a header.

The seven CRDS selectors, with CRDS's exact rules:

- **Match**: each key is a tuple of patterns, one per parameter (see `patterns`). Keys that
  fail on any parameter are dropped; the survivors are weighted by how many parameters they
  matched exactly (`N/A` on either side counts nothing) and tried best weight first. Keys
  of equal weight are merged: nested UseAfters become one UseAfter (a date present in
  several keeps the greatest file name), terminals become a tuple of files. If a group's
  nested lookup misses (e.g. no UseAfter date early enough) the next group is tried. With
  `merge_overlaps` false, a tie is an error. Header values are first checked against the
  values the rmap uses for each parameter.
- **UseAfter**: the greatest date key `<=` the header's date (date and time parameters
  joined by a blank, parsed leniently, compared as ISO strings).
- **VersionAfter**: like UseAfter over versions `x.y.z` as integer triples.
- **SelectVersion**: relations `<v`, `=v`, `default` over a software version.
- **ClosestTime**: the date key nearest to the header's date.
- **GeometricallyNearest**: the numeric key nearest to the header value.
- **Bracket**: the pair of keys bracketing the header value (a 2-tuple of choices).

Errors: `LookupMiss` is a clean "no match" (a Match then tries its next weight group);
every other `SelectionError` (invalid value, undefined date, ambiguity) fails the lookup.
"""

from __future__ import annotations

import ast
import bisect
import contextlib
import operator
import re
import sys
from collections.abc import Mapping, Sequence

import numpy as np

from crds_events.rules import dates
from crds_events.rules.conditioning import condition_match_key, condition_value
from crds_events.rules.patterns import (
    MATCH,
    NO_MATCH,
    PatternError,
    esoteric_key,
    glob_compress,
    glob_list,
    make_pattern,
)

# Applied to every rmap (a subarray called GENERIC is "any subarray").
DEFAULT_SUBSTITUTIONS = {
    "META.SUBARRAY.NAME": {"GENERIC": "N/A"},
    "SUBARRAY": {"GENERIC": "N/A"},
}

_MEMO_LIMIT = 50_000
_FIRST = operator.itemgetter(0)  # sort (key, choice) pairs by key only


class RulesError(ValueError):
    """A selector that cannot be built from the mapping text (bad key, bad pattern, ...)."""


class SelectionError(Exception):
    """A lookup that failed; the message is what a `NOT FOUND <reason>` result shows."""


class LookupMiss(SelectionError):
    """No selection applies (CRDS's lookup errors): a Match tries its next weight group."""


class InvalidValueError(SelectionError):
    """A header value that is not valid for the rules (CRDS ValidationError)."""


class UndefinedDateError(SelectionError):
    """A UseAfter date or time parameter is UNDEFINED."""


class AmbiguousMatchError(SelectionError):
    """Several equally good matches and the rules forbid merging them."""


class Selector:
    """Base class: `choose(header)` returns a terminal value or raises `SelectionError`."""

    kind = "Selector"
    leaf = False  # True where no choice is a nested selector (known without looking)

    def __init__(self, parameters: Sequence[str]):
        self.parameters = tuple(parameters)

    def choose(self, header: Mapping[str, str]) -> object:
        raise NotImplementedError

    def choices(self) -> list[object]:
        raise NotImplementedError

    def compile(self) -> None:
        """Build now what lookups would build on first use (this selector and nested ones)."""
        if self.leaf:
            return
        for choice in self.choices():
            if isinstance(choice, Selector):
                choice.compile()

    def terminals(self) -> list[object]:
        """Every terminal value reachable from this selector."""
        found: list[object] = []
        for choice in self.choices():
            if isinstance(choice, Selector):
                found.extend(choice.terminals())
            else:
                found.append(choice)
        return found

    def _resolve(self, choice: object, header: Mapping[str, str]) -> object:
        """A choice's final value: recurse into nested selectors (a nested miss is a miss)."""
        if isinstance(choice, Selector):
            return choice.choose(header)
        return choice

    def _check_present(self, header: Mapping[str, str]) -> None:
        for name in self.parameters:
            if name not in header:
                raise InvalidValueError(
                    f"{self.kind} required lookup parameter {name!r} is undefined."
                )

    def __repr__(self) -> str:
        return f"{self.kind}({self.parameters!r}, nselections={len(self.choices())})"


# ----------------------------------------------------------------------------- Match


def _substitute(
    selections: dict, parameters: tuple[str, ...], substitutions: Mapping[str, Mapping]
) -> dict:
    """Replace match values that have substitutions (e.g. GENERIC -> N/A), parameter by parameter."""
    for keyword in parameters:
        table = substitutions.get(keyword)
        if not table:
            continue
        index = parameters.index(keyword)
        for match in list(selections):
            if isinstance(match, tuple):
                if index >= len(match):
                    raise RulesError(f"Match key {match!r} is too short for {parameters!r}")
                old = match[index]
                if not _hashable(old) or old not in table:
                    continue
                replacement = table[old]
                new = match[:index] + (_as_tuple(replacement),) + match[index + 1 :]
            else:
                if not _hashable(match) or match not in table:
                    continue
                new = _as_tuple(table[match])
            selections[new] = selections.pop(match)
    return selections


def _as_tuple(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


class MatchSelector(Selector):
    kind = "Match"

    def __init__(
        self,
        parameters: Sequence[str],
        selections: Mapping[object, object],
        substitutions: Mapping[str, Mapping] | None = None,
        merge_overlaps: bool = True,
    ):
        super().__init__(parameters)
        self.merge_overlaps = merge_overlaps
        table = dict(DEFAULT_SUBSTITUTIONS)
        table.update(substitutions or {})
        substituted = _substitute(dict(selections), self.parameters, table)
        conditioned: dict[tuple[str, ...], object] = {}
        for key, choice in substituted.items():
            ckey = condition_match_key(key)
            if ckey in conditioned:
                raise RulesError(f"Match key {ckey!r} appears more than once")
            if len(ckey) != len(self.parameters):
                raise RulesError(
                    f"Match key={ckey!r} is wrong length for parameters {self.parameters!r}"
                )
            conditioned[ckey] = choice
        self.keys = sorted(conditioned)
        self._choices = [conditioned[key] for key in self.keys]
        self._fields: list[list] | None = None  # compiled on first lookup
        self._field_masks: list[list[int]] = []
        self._value_masks: list[dict[str, tuple[int, int]]] = []
        self._valid: dict[str, list[str]] | None = None
        self._memo: dict[tuple, object] = {}
        self._missing = (_MISSING,) * len(self.parameters)  # defaults for map(header.get, ...)
        self._ties: dict[tuple[int, ...], _Tie] = {}

    def choices(self) -> list[object]:
        return list(self._choices)

    def _compile_index(self) -> None:
        """Per parameter: the distinct key fields, their patterns, and which keys hold each
        (as a bit mask over the keys).

        Keys share few distinct fields per parameter (a DETECTOR column holds 2 or 3), so a
        lookup evaluates each distinct pattern once and spreads the result over all keys.
        """
        fields: list[list] = []
        masks: list[list[int]] = []
        try:
            for i in range(len(self.parameters)):
                distinct: dict[str, int] = {}
                for k, key in enumerate(self.keys):
                    distinct[key[i]] = distinct.get(key[i], 0) | (1 << k)
                fields.append([make_pattern(field) for field in distinct])
                masks.append(list(distinct.values()))
        except (PatternError, re.error) as exc:
            raise RulesError(f"invalid Match pattern: {exc}") from exc
        self._field_masks = masks
        self._value_masks = [{} for _ in self.parameters]
        self._fields = fields

    def check_patterns(self) -> None:
        """Compile every pattern now (lookups compile them on first use); RulesError if bad."""
        if self._fields is None:
            self._compile_index()

    def compile(self) -> None:
        """Compile the patterns and valid values now, as CRDS builds its matchers at load. A
        bad pattern is left for the lookups to report (each as `NOT FOUND <reason>`)."""
        with contextlib.suppress(RulesError):
            self.check_patterns()
        self.valid_values  # noqa: B018 - computed and kept
        super().compile()

    @property
    def valid_values(self) -> dict[str, list[str]]:
        """Per parameter, the values the rules use; [] where a pattern defeats listing."""
        if self._valid is None:
            self._valid = self._valid_values()
        return self._valid

    def _valid_values(self) -> dict[str, list[str]]:
        valid: dict[str, list[str]] = {}
        for i, name in enumerate(self.parameters):
            fields = {key[i] for key in self.keys}  # a column holds few distinct fields
            if any(esoteric_key(field) for field in fields):
                valid[name] = []
            else:
                valid[name] = sorted({value for field in fields for value in glob_list(field)})
        return valid

    # -- lookup

    def choose(self, header: Mapping[str, str]) -> object:
        memo_key = tuple(map(header.get, self.parameters, self._missing))
        plan = self._memo.get(memo_key)
        if plan is None:
            plan = self._plan(header)
            if len(self._memo) > _MEMO_LIMIT:
                self._memo.clear()
            self._memo[memo_key] = plan
        if type(plan) is tuple:  # (error class, message): fail the same way every time
            raise plan[0](plan[1])
        for choice in plan:
            if type(choice) is _Tie:
                choice = choice.merged()
            if not isinstance(choice, Selector):
                return choice
            try:
                return choice.choose(header)
            except LookupMiss:
                continue
        raise LookupMiss("No match found.")

    def _plan(self, header: Mapping[str, str]) -> list[object] | tuple[type, str]:
        """The candidate choices for these parameter values, best first (or an error)."""
        try:
            self._validate(header)
            return self._ranked_choices(header)
        except SelectionError as exc:
            return (type(exc), str(exc))

    def _validate(self, header: Mapping[str, str]) -> None:
        for name in self.parameters:
            if name not in header and "N/A" not in self.valid_values[name]:
                raise InvalidValueError(
                    f"{self.kind} required lookup parameter {name!r} is undefined."
                )
        for name in self.parameters:
            validate_value(name, header.get(name, "UNDEFINED"), self.valid_values[name])

    def _ranked_choices(self, header: Mapping[str, str]) -> list[object]:
        """Candidates best first: keys failing no parameter, weighted by exact matches
        (N/A counts nothing), equal weights merged, ties kept in key order."""
        self.check_patterns()
        if not self.keys:
            return []
        alive = (1 << len(self.keys)) - 1
        exact: list[int] = []  # per parameter, the keys matching it exactly
        for i, name in enumerate(self.parameters):
            alive_mask, exact_mask = self._masks(i, header.get(name, "UNDEFINED"))
            alive &= alive_mask
            if not alive:
                return []
            exact.append(exact_mask)
        survivors = []
        while alive:
            lowest = alive & -alive
            survivors.append(lowest.bit_length() - 1)
            alive ^= lowest
        weight = {k: sum((mask >> k) & 1 for mask in exact) for k in survivors}
        order = sorted(survivors, key=lambda k: -weight[k])  # stable: ties in key order
        ranked: list[object] = []
        start = 0
        for end in range(1, len(order) + 1):
            if end == len(order) or weight[order[end]] != weight[order[start]]:
                group = tuple(order[start:end])
                ranked.append(self._choices[group[0]] if len(group) == 1 else self._tie(group))
                start = end
        return ranked

    def _masks(self, i: int, value: str) -> tuple[int, int]:
        """(keys not failing, keys matching exactly) for `value` of parameter `i` (memoised)."""
        memo = self._value_masks[i]
        found = memo.get(value)
        if found is None:
            alive = exact = 0
            for pattern, mask in zip(self._fields[i], self._field_masks[i], strict=True):
                status = pattern.match(value)
                if status != NO_MATCH:
                    alive |= mask
                    if status == MATCH:
                        exact |= mask
            if len(memo) > _MEMO_LIMIT:
                memo.clear()
            memo[value] = found = (alive, exact)
        return found

    def _tie(self, group: tuple[int, ...]) -> _Tie:
        """The tie of these keys, shared by every lookup reaching it (merged once)."""
        tie = self._ties.get(group)
        if tie is None:
            if len(self._ties) > _MEMO_LIMIT:
                self._ties.clear()
            tie = self._ties[group] = _Tie([self._choices[k] for k in group], self.merge_overlaps)
        return tie


class _Tie:
    """Equal-weight candidates, merged only when the lookup reaches them (as in CRDS, where
    a later group's ambiguity does not matter if an earlier group answers)."""

    def __init__(self, members: list[object], merge_overlaps: bool):
        self.members = members
        self.merge_overlaps = merge_overlaps
        self._merged: object = None

    def merged(self) -> object:
        if self._merged is None:
            if not self.merge_overlaps:
                raise AmbiguousMatchError("More than one match clause matched.")
            if isinstance(self.members[0], Selector):
                self._merged = _merge(self.members)
            else:
                self._merged = tuple(self.members)
        return self._merged


_MISSING = object()


def _merge(selectors: list[object]) -> Selector:
    """Merge equal-weight nested selectors; only UseAfters merge."""
    first = selectors[0]
    if type(first) is not UseAfterSelector:
        name = first.kind if isinstance(first, Selector) else type(first).__name__
        raise AmbiguousMatchError(
            "More than one match was found at the same weight and "
            f"{name} does not support merging."
        )
    merged: dict[str, object] = {}
    for selector in selectors:
        if type(selector) is not UseAfterSelector:
            raise AmbiguousMatchError(f"cannot merge UseAfter with {selector!r}")
        for key, choice in zip(selector.keys, selector.choices(), strict=True):
            if key in merged:
                if choice > merged[key]:  # type: ignore[operator]
                    merged[key] = choice
            else:
                merged[key] = choice
    return UseAfterSelector(first.parameters, merged)


def validate_value(name: str, value: str, valid: Sequence[str]) -> None:
    """Check a header value against the values the rules use for `name` (as CRDS does)."""
    if value in valid or condition_value(value) in valid:
        return
    if "*" in valid or "ANY" in valid or "N/A" in valid or not valid:
        return
    if value.startswith("NOT"):
        validate_value(name, value[len("NOT") :].strip(), valid)
        return
    if esoteric_key(value) or value in ("*", "ANY", "N/A"):
        return
    if value.lower().startswith("between"):
        parts = value.split()
        if len(parts) != 3:
            raise InvalidValueError(f"parameter={name!r} value={value!r} is invalid")
        validate_value(name, parts[1], valid)
        validate_value(name, parts[2], valid)
        return
    if len(valid) == 1 and ":" in valid[0]:
        try:
            low, high = (float(bound) for bound in valid[0].split(":"))
            number = float(value)
        except ValueError as exc:
            raise InvalidValueError(f"parameter={name!r} value={value!r}: {exc}") from exc
        if low <= number <= high:
            return
        raise InvalidValueError(
            f"parameter={name!r} value ={value!r} is not in range [{low} .. {high}]"
        )
    raise InvalidValueError(f"parameter={name!r} value={value!r} is not in {list(valid)!r}")


# ----------------------------------------------------------------------------- UseAfter


class _Failure:
    """A memoised lookup failure: raised again as `error(message)`."""

    __slots__ = ("error", "message")

    def __init__(self, error: type[SelectionError], message: str):
        self.error = error
        self.message = message


_LOOKUP_MEMOS: dict[tuple[type, tuple[str, ...]], dict[tuple, object]] = {}


class UseAfterSelector(Selector):
    kind = "UseAfter"
    miss_message = "No selection <= {date!r}"

    def __init__(self, parameters: Sequence[str], selections: Mapping[object, object]):
        super().__init__(parameters)
        try:
            ordered = sorted(selections.items(), key=_FIRST)
        except TypeError as exc:
            raise RulesError(f"{self.kind} keys of mixed types: {exc}") from exc
        if type(self).condition_key is UseAfterSelector.condition_key:  # keys as written
            self.keys = [key for key, _ in ordered]
        else:
            self.keys = [self.condition_key(key) for key, _ in ordered]
        self._choices = [choice for _, choice in ordered]
        self._init_lookup()

    def _init_lookup(self) -> None:
        self._missing = (_MISSING,) * len(self.parameters)
        # Header values -> lookup key (or the failure), shared by every selector of this
        # class over these parameters: an rmap has hundreds of UseAfters on one date.
        self._lookup_memo = _LOOKUP_MEMOS.setdefault((type(self), self.parameters), {})

    def condition_key(self, key: object) -> object:
        return key

    def choices(self) -> list[object]:
        return list(self._choices)

    def lookup_key(self, header: Mapping[str, str]) -> object:
        """The header's date as CRDS compares it with the keys."""
        parts = []
        for name in self.parameters:
            value = header[name].strip()
            if value == "UNDEFINED":
                raise UndefinedDateError(f"UseAfter parameter {name!r} is UNDEFINED.")
            parts.append(value)
        raw = " ".join(parts).strip()
        try:
            return dates.reformat_date(raw)
        except dates.DateError as exc:
            raise InvalidValueError(
                f"{self.kind} Invalid date/time format for {self.parameters!r} "
                f"value={raw!r} exception is {str(exc)!r}"
            ) from exc

    def memoised_lookup_key(self, header: Mapping[str, str]) -> object:
        """`lookup_key(header)`, memoised on the parameter values (failures too)."""
        values = tuple(map(header.get, self.parameters, self._missing))
        memo = self._lookup_memo
        key = memo.get(values)
        if key is None:
            self._check_present(header)  # not memoised: the values hold no missing one
            try:
                key = self.lookup_key(header)
            except SelectionError as exc:
                key = _Failure(type(exc), str(exc))
            if len(memo) > _MEMO_LIMIT:
                memo.clear()
            memo[values] = key
        if type(key) is _Failure:
            raise key.error(key.message)
        return key

    def choose(self, header: Mapping[str, str]) -> object:
        key = self._lookup_memo.get(tuple(map(header.get, self.parameters, self._missing)))
        if key is None or type(key) is _Failure:  # the memo's hit, inline
            key = self.memoised_lookup_key(header)
        index = bisect.bisect_right(self.keys, key) - 1
        if index < 0:
            raise LookupMiss(self.miss_message.format(date=key))
        choice = self._choices[index]
        return choice.choose(header) if isinstance(choice, Selector) else choice


class VersionAfterSelector(UseAfterSelector):
    kind = "VersionAfter"
    _VERSION = re.compile(r"^(\d{1,8}(\.\d{1,8}(\.\d{1,8})?)?)[a-zA-Z0-9_\+\-\.]{0,128}$")

    def __init__(self, parameters: Sequence[str], selections: Mapping[object, object]):
        Selector.__init__(self, parameters)
        try:
            ordered = sorted(
                ((self.condition_key(key), choice) for key, choice in selections.items()),
                key=_FIRST,
            )
        except InvalidValueError as exc:
            raise RulesError(str(exc)) from exc
        self.keys = [key for key, _ in ordered]
        self._choices = [choice for _, choice in ordered]
        self._init_lookup()

    def condition_key(self, key: object) -> tuple[int, int, int]:
        if not isinstance(key, str) or not self._VERSION.match(key):
            raise InvalidValueError(f"Invalid version string {key!r}")
        simple = self._VERSION.match(key).group(1)  # type: ignore[union-attr]
        parts = tuple(int(part, 10) for part in simple.split(".")[:3])
        return parts + (0,) * (3 - len(parts))  # type: ignore[return-value]

    def lookup_key(self, header: Mapping[str, str]) -> object:
        return self.condition_key(glob_compress(".".join(header[name] for name in self.parameters)))


class ClosestTimeSelector(UseAfterSelector):
    kind = "ClosestTime"

    def choose(self, header: Mapping[str, str]) -> object:
        key = self.memoised_lookup_key(header)
        if not self.keys:
            raise LookupMiss(f"No selection near {key!r}")
        when = dates.parse_date(str(key))
        try:
            distances = [abs((when - dates.parse_date(k)).total_seconds()) for k in self.keys]
        except dates.DateError as exc:
            raise InvalidValueError(str(exc)) from exc
        index = int(np.argmin(np.array(distances, dtype="f")))
        return self._resolve(self._choices[index], header)


# ----------------------------------------------------------------------------- numeric


def _number(name: str, value: object, kind: str) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InvalidValueError(f"{kind} Invalid number for {name!r} value={value!r}") from exc


class GeometricallyNearestSelector(Selector):
    kind = "GeometricallyNearest"

    def __init__(self, parameters: Sequence[str], selections: Mapping[object, object]):
        super().__init__(parameters)
        conditioned = sorted((condition_value(key), choice) for key, choice in selections.items())
        self.keys = [key for key, _ in conditioned]
        self._choices = [choice for _, choice in conditioned]
        try:
            self._numbers = np.array(self.keys, dtype="f")
        except ValueError as exc:
            raise RulesError(f"{self.kind} keys must be numbers: {exc}") from exc
        self._valid = sorted({v for key in self.keys for v in glob_list(key)})

    def choices(self) -> list[object]:
        return list(self._choices)

    def choose(self, header: Mapping[str, str]) -> object:
        name = self.parameters[0]
        if name not in header and "N/A" not in self._valid:
            raise InvalidValueError(f"{self.kind} required lookup parameter {name!r} is undefined.")
        value = _number(name, header[name], self.kind)
        index = int(np.argmin(np.abs(self._numbers - value)))
        return self._resolve(self._choices[index], header)


class BracketSelector(Selector):
    kind = "Bracket"

    def __init__(self, parameters: Sequence[str], selections: Mapping[object, object]):
        super().__init__(parameters)
        try:
            ordered = sorted(selections.items(), key=_FIRST)
        except TypeError as exc:
            raise RulesError(f"{self.kind} keys of mixed types: {exc}") from exc
        self.keys = [key for key, _ in ordered]
        self._choices = [choice for _, choice in ordered]

    def choices(self) -> list[object]:
        return list(self._choices)

    def choose(self, header: Mapping[str, str]) -> object:
        name = self.parameters[0]
        if name not in header:
            raise InvalidValueError(f"{self.kind} parameter {name!r} is undefined.")
        value = _number(name, header[name], self.kind)
        keys = self.keys
        if not keys:
            raise LookupMiss("No selection for an empty Bracket.")
        index = 0
        try:
            while index < len(keys) and value > keys[index]:
                index += 1
        except TypeError as exc:
            raise InvalidValueError(f"{self.kind} keys are not numbers: {exc}") from exc
        if index == len(keys):
            low = high = index - 1
        elif index == 0 or value == keys[index]:
            low = high = index
        else:
            low, high = index - 1, index
        first = self._resolve(self._choices[low], header)
        second = first if low == high else self._resolve(self._choices[high], header)
        return (first, second)


# ----------------------------------------------------------------------------- SelectVersion


class _VersionRelation:
    """`<5`, `=5.1`, `== (5,0,1)`, `default` -> comparable (version, relation)."""

    _RELATION = re.compile(r"^([<=][=]?|default)(.*)$")

    def __init__(self, text: object):
        text = str(text)
        if text.replace("=", "").strip() == "default":
            self.relation, self.version = "=", sys.maxsize
            return
        if not text.startswith(("<", "=")):
            text = "=" + text
        match = self._RELATION.match(text)
        if not match:
            raise InvalidValueError(f"Illegal version expression in: {text!r}")
        self.relation = match.group(1).replace("==", "=")
        try:
            self.version = ast.literal_eval(match.group(2).strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
            raise InvalidValueError(f"Invalid version expression in: {text!r}") from exc

    def key(self) -> tuple[object, str]:
        return (self.version, self.relation)

    def __lt__(self, other: _VersionRelation) -> bool:
        numbers = (int, float)
        if not (
            (isinstance(self.version, numbers) and isinstance(other.version, numbers))
            or isinstance(self.version, type(other.version))
        ):
            raise InvalidValueError(
                f"Incompatible version expression types: {self.version} and {other.version}"
            )
        try:
            return self.key() < other.key()
        except TypeError as exc:
            raise InvalidValueError(str(exc)) from exc


class SelectVersionSelector(Selector):
    kind = "SelectVersion"

    def __init__(self, parameters: Sequence[str], selections: Mapping[object, object]):
        super().__init__(parameters)
        try:
            relations = [(_VersionRelation(key), choice) for key, choice in selections.items()]
            relations.sort(key=_FIRST)
        except InvalidValueError as exc:
            raise RulesError(str(exc)) from exc
        self.keys = [relation for relation, _ in relations]
        self._choices = [choice for _, choice in relations]

    def choices(self) -> list[object]:
        return list(self._choices)

    def choose(self, header: Mapping[str, str]) -> object:
        name = self.parameters[0]
        value = header.get(name)
        if value is None:
            raise InvalidValueError(f"{self.kind} parameter {name!r} is undefined.")
        if value.replace("=", "").strip() != "default":
            _number(name, value, self.kind)
        version = _VersionRelation(value)
        index = 0
        while index < len(self.keys) and self.keys[index] < version:
            index += 1
        if index == len(self.keys):
            raise InvalidValueError(f"No version relation selects {value!r}")
        return self._resolve(self._choices[index], header)


SELECTOR_CLASSES: dict[str, type[Selector]] = {
    "Match": MatchSelector,
    "UseAfter": UseAfterSelector,
    "VersionAfter": VersionAfterSelector,
    "SelectVersion": SelectVersionSelector,
    "ClosestTime": ClosestTimeSelector,
    "GeometricallyNearest": GeometricallyNearestSelector,
    "Bracket": BracketSelector,
}


def build_selector(
    call: object,
    parkeys: Sequence[object],
    substitutions: Mapping[str, Mapping] | None = None,
    merge_overlaps: bool = True,
) -> Selector:
    """Build the selector tree of a parsed rmap `call` (a `parse.Call`).

    `parkeys` holds one tuple of parameter names per nesting level, as the rmap header's
    `parkey`. Repeated keys: the last one wins, as when CRDS loads the file.
    """
    name = getattr(call, "name", None)
    cls = SELECTOR_CLASSES.get(name)  # type: ignore[arg-type]
    if cls is None:
        raise RulesError(f"selector {name!r} is not one of {sorted(SELECTOR_CLASSES)}")
    if not parkeys:
        raise RulesError(f"{name} has no parameters: the header's parkey is too short")
    parameters = parkeys[0]
    if not isinstance(parameters, (tuple, list)) or not all(
        isinstance(p, str) for p in parameters
    ):
        raise RulesError(f"{name} parameters {parameters!r} should be a tuple of header keys")
    leaf = getattr(call, "strings_only", False)  # file names only: most of a real rmap
    if leaf:
        selections = dict(call.entries)  # type: ignore[attr-defined]
    else:
        selections = {}
        inner = parkeys[1:]
        for key, value in call.entries:  # type: ignore[attr-defined]
            selections[key] = _build_choice(value, inner, substitutions, merge_overlaps)
    if cls is MatchSelector:
        selector: Selector = MatchSelector(parameters, selections, substitutions, merge_overlaps)
    else:
        selector = cls(parameters, selections)  # type: ignore[call-arg]
    selector.leaf = leaf
    return selector


def _build_choice(value, parkeys, substitutions, merge_overlaps):
    name = getattr(value, "name", None)
    if name is None:
        return value
    if name == "dict":
        return dict(value.entries)
    return build_selector(value, parkeys, substitutions, merge_overlaps)
