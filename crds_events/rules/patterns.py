"""Match key patterns: how one field of an rmap Match key matches one header value.

Each pattern answers `match(value)` with 1 (matches), 0 (doesn't care: the key or the value
is `N/A`) or -1 (no match); a header value of `*` matches every ordinary pattern. Patterns
(on conditioned keys, as CRDS builds them):

- `A|B|C`, `F1*`: or-ed globs (alternatives sorted, blanks dropped);
- `(regex)`: a raw regular expression, matched at the start of the value;
- `{literal}`: compared verbatim, no glob or regex meaning;
- `# >a and <=b #`, `# >a or <b #`: numeric relations joined by AND / OR;
- `>a`, `<=b`: one numeric relation;
- `between a b`: `>= a and < b`;
- `NOT <pattern>`: the negation of any other pattern (`*` no longer matches; N/A stays 0);
- `N/A`: always "don't care".
"""

from __future__ import annotations

import fnmatch
import functools
import re

from crds_events.errors import CrdsEventsError

MATCH, DONT_CARE, NO_MATCH = 1, 0, -1


class PatternError(CrdsEventsError, ValueError):
    """A Match key field that cannot be turned into a pattern."""


def esoteric_key(key: str) -> bool:
    """True for fields whose valid values cannot be listed (regex, literal, relation, NOT)."""
    upper = key.upper()
    return (
        (upper.startswith(("{", "(", "#")) and upper.endswith(("}", ")", "#")))
        or upper.startswith("BETWEEN")
        or upper.startswith("NOT")
    )


def glob_list(value: str) -> list[str]:
    """`"B|A | C"` -> `["A", "B", "C"]`; esoteric or plain values -> `[value]`."""
    if not esoteric_key(value) and "|" in value:
        return sorted(part.strip() for part in value.split("|") if part.strip())
    return [value]


def glob_compress(value: str) -> str:
    """Squash blanks out of an or-glob and sort its alternatives."""
    return "|".join(glob_list(value))


class Pattern:
    """Literal equality (also the base behaviour of every pattern for `*` and `N/A`)."""

    def __init__(self, key: str):
        self.key = key

    def match(self, value: str) -> int:
        if value == self.key or value == "*":
            return MATCH
        if value == "N/A":
            return DONT_CARE
        return NO_MATCH

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r})"


class RegexPattern(Pattern):
    def __init__(self, regex: str):
        super().__init__(regex)
        try:
            self._regex = re.compile(regex)
        except re.error as exc:
            raise PatternError(f"invalid regular expression {regex!r}: {exc}") from exc

    def match(self, value: str) -> int:
        result = super().match(value)
        if result != NO_MATCH:
            return result
        return MATCH if self._regex.match(value) else NO_MATCH


class GlobPattern(RegexPattern):
    def __init__(self, key: str):
        parts = glob_list(key)
        translated = "|".join(fnmatch.translate(part) for part in parts)
        regex = "^(" + translated + ")$"
        if not parts or any(char in part for part in parts for char in "*?["):
            super().__init__(regex)
        else:
            # Alternatives without wildcards (`A|B|C`): the regex matches exactly the
            # alternatives, so a set answers the same without compiling it (slow for long
            # lists). The key stays the regex text, which `Pattern.match` compares too.
            Pattern.__init__(self, regex)
            self._regex = _Alternatives(parts)  # type: ignore[assignment]


class _Alternatives:
    """Stands in for a compiled regex that matches exactly these strings."""

    __slots__ = ("_values",)

    def __init__(self, values: list[str]):
        self._values = frozenset(values)

    def match(self, value: str) -> bool:
        return value in self._values


_RELATION = re.compile(r"^([><]=?)\s*([-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?)")


class RelationPattern(Pattern):
    def __init__(self, key: str):
        super().__init__(key)
        parts = _RELATION.match(key)
        if not parts:
            raise PatternError(f"invalid relation {key!r}")
        self._operator = parts.group(1)
        self._bound = float(parts.group(2))

    def match(self, value: str) -> int:
        result = super().match(value)
        if result != NO_MATCH:
            return result
        try:
            number = float(value)
        except ValueError:
            return NO_MATCH
        bound = self._bound
        holds = {
            ">": number > bound,
            "<": number < bound,
            ">=": number >= bound,
            "<=": number <= bound,
        }[self._operator]
        return MATCH if holds else NO_MATCH


class BinaryPattern(Pattern):
    """`# >a AND <=b #` / `# >a OR <b #` (the key compared literally too, as in CRDS)."""

    def __init__(self, key: str, operator: str):
        super().__init__(key)
        self._operator = operator.strip()
        body = key.strip()[1:-1] if key.strip().startswith("#") else key
        parts = [part.strip() for part in body.split(operator)]
        if len(parts) < 2:
            raise PatternError(f"invalid relation {key!r}")
        self._left = make_pattern(parts[0])
        self._right = make_pattern(parts[1])

    def match(self, value: str) -> int:
        value = value.upper()
        result = super().match(value)
        if result != NO_MATCH:
            return result
        left = self._left.match(value) == MATCH
        if self._operator == "AND":
            return MATCH if left and self._right.match(value) == MATCH else NO_MATCH
        return MATCH if left or self._right.match(value) == MATCH else NO_MATCH


class NaPattern(Pattern):
    def __init__(self, key: str = "N/A"):
        super().__init__(key)

    def match(self, value: str) -> int:
        return DONT_CARE


class NotPattern(Pattern):
    _INVERTED = {MATCH: NO_MATCH, NO_MATCH: MATCH, DONT_CARE: DONT_CARE}

    def __init__(self, key: str):
        super().__init__(key)
        self._inner = make_pattern(key[len("NOT ") :].strip())

    def match(self, value: str) -> int:
        return self._INVERTED[self._inner.match(value)]


@functools.lru_cache(maxsize=100_000)
def make_pattern(key: str | tuple[str, ...]) -> Pattern:
    """The pattern for one (conditioned) Match key field (patterns are immutable: shared)."""
    if isinstance(key, tuple):
        return GlobPattern("|".join(key))
    if key.startswith("(") and key.endswith(")"):
        return RegexPattern(key[1:-1])
    if key.startswith("{") and key.endswith("}"):
        return Pattern(key[1:-1])
    if key.startswith("#") and key.endswith("#"):
        key = key.upper()
        if " AND " in key:
            return BinaryPattern(key, "AND")
        if " OR " in key:
            return BinaryPattern(key, "OR")
        return make_pattern(key[1:-1])
    if key.upper().startswith("BETWEEN"):
        parts = key.split()
        try:
            valid = len(parts) == 3 and float(parts[1]) <= float(parts[2])
        except ValueError:
            valid = False
        if not valid:
            raise PatternError(
                f"Invalid between relation {key!r} should be 'between lower_bound upper_bound'"
            )
        return BinaryPattern(">=" + parts[1] + " AND <" + parts[2], "AND")
    if key.upper().startswith("NOT "):
        return NotPattern(key)
    if "|" in key or "*" in key:
        return GlobPattern(key)
    if key == "N/A":
        return NaPattern()
    if key.startswith((">", "<")):
        return RelationPattern(key)
    return Pattern(key)
