"""The Match selector: keys of patterns, one per parameter, weighted and tried best first.

Keys that fail on any parameter are dropped; the survivors are weighted by how many
parameters they matched exactly (`N/A` on either side counts nothing) and tried best weight
first. Keys of equal weight are merged: nested UseAfters become one UseAfter (a date present
in several keeps the greatest file name), terminals become a tuple of files. If a group's
nested lookup misses the next group is tried. With `merge_overlaps` false, a tie is an
error. Header values are first checked against the values the rmap uses for each parameter
(`validate_value`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence

from crds_events.rules.conditioning import condition_match_key, condition_value
from crds_events.rules.ordered import UseAfterSelector
from crds_events.rules.patterns import (
    MATCH,
    NO_MATCH,
    PatternError,
    esoteric_key,
    glob_list,
    make_pattern,
)
from crds_events.rules.selection import (
    MEMO_LIMIT,
    MISSING,
    AmbiguousMatchError,
    InvalidValueError,
    LookupMiss,
    RulesError,
    SelectionError,
    Selector,
)

__all__ = ["DEFAULT_SUBSTITUTIONS", "MatchSelector", "validate_value"]

# Applied to every rmap (a subarray called GENERIC is "any subarray").
DEFAULT_SUBSTITUTIONS = {
    "META.SUBARRAY.NAME": {"GENERIC": "N/A"},
    "SUBARRAY": {"GENERIC": "N/A"},
}


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
        self._missing = (MISSING,) * len(self.parameters)  # defaults for map(header.get, ...)
        self._ties: dict[tuple[int, ...], _Tie] = {}
        self._checked: list[dict[str, str | None]] | None = None  # see `_validate`

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

    def candidates(self, header: Mapping[str, str]) -> list[object] | tuple[type, str]:
        """The ranked candidates for the header's parameter values, best first (ties as
        `_Tie`), or (error class, message) for an invalid value; memoised (`choose` reads
        them here)."""
        memo_key = tuple(map(header.get, self.parameters, self._missing))
        plan = self._memo.get(memo_key)
        if plan is None:
            plan = self._plan(header)
            if len(self._memo) > MEMO_LIMIT:
                self._memo.clear()
            self._memo[memo_key] = plan
        return plan

    def choose(self, header: Mapping[str, str]) -> object:
        plan = self.candidates(header)
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
        checked = self._checked
        if checked is None:
            checked = self._checked = [{} for _ in self.parameters]
        # `validate_value` of each value, memoised per parameter (None: valid; else the
        # message): a valid-values list can be long, and values come back.
        for name, seen in zip(self.parameters, checked, strict=True):
            value = header.get(name, "UNDEFINED")
            error = seen.get(value, _UNCHECKED)
            if error is _UNCHECKED:
                try:
                    validate_value(name, value, self.valid_values[name])
                    error = None
                except InvalidValueError as exc:
                    error = str(exc)
                if len(seen) > MEMO_LIMIT:
                    seen.clear()
                seen[value] = error
            if error is not None:
                raise InvalidValueError(error)

    def _ranked_choices(self, header: Mapping[str, str]) -> list[object]:
        """Candidates best first: keys failing no parameter, weighted by exact matches
        (N/A counts nothing), equal weights merged, ties kept in key order."""
        self.check_patterns()
        if not self.keys:
            return []
        alive = (1 << len(self.keys)) - 1
        exact: list[int] = []  # per parameter, the keys matching it exactly
        value_masks = self._value_masks
        for i, name in enumerate(self.parameters):
            value = header.get(name, "UNDEFINED")
            alive_mask, exact_mask = value_masks[i].get(value) or self._masks(i, value)
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
            if len(memo) > MEMO_LIMIT:
                memo.clear()
            memo[value] = found = (alive, exact)
        return found

    def _tie(self, group: tuple[int, ...]) -> _Tie:
        """The tie of these keys, shared by every lookup reaching it (merged once)."""
        tie = self._ties.get(group)
        if tie is None:
            if len(self._ties) > MEMO_LIMIT:
                self._ties.clear()
            tie = self._ties[group] = _Tie([self._choices[k] for k in group], self.merge_overlaps)
        return tie


_UNCHECKED = object()


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
            f" parameter={name!r} value ={value!r} is not in range [{low} .. {high}]"
        )
    # the leading blank is CRDS's: its NOT FOUND text reads "NOT FOUND  parameter=..."
    raise InvalidValueError(f" parameter={name!r} value={value!r} is not in {list(valid)!r}")

