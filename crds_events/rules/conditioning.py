"""Value conditioning: how CRDS normalises header values and rmap match values.

Before matching, every dataset header value and every plain rmap match value goes through
the same normalisation, so that `1`, `"1."` and `" +1 "` all meet the rmap's `1.0`:

- `str(value).strip().upper()`;
- anything shaped like a number becomes `str(float(value))` (`"1e20"` -> `"1e+20"`);
- a value that *starts with* `-2147483648.0`, `()`, `N/A` or `NOT APPLICABLE`, or equals
  `NOT_APPLICABLE`, becomes `N/A` (CRDS's "don't care" pattern is anchored only at the start);
- `ANY` becomes `*`, `4294967295` becomes `-1.0`, `TRUE`/`FALSE` become `T`/`F`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence

from crds_events.rules.patterns import glob_compress, glob_list

NA = "N/A"
WILDCARD = "*"
UNDEFINED = "UNDEFINED"

# Values of a context or rule that stand for "not applicable" / "leave the type out".
NA_VALUES = frozenset({"N/A", "TEMP_N/A", "n/a", "temp_n/a"})
OMIT_VALUES = frozenset({"OMIT", "TEMP_OMIT", "omit", "temp_n/a"})

_NUMBER = re.compile(r"^([-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?|[+-]?[0-9]+\.)$")
# Matched at the start only (only the last alternative is anchored at the end), like CRDS:
# "N/AXYZ" is N/A too; the "." in the first alternative is any character, as in CRDS.
_DONT_CARE = re.compile(r"-2147483648.0|\(\)|N/A|NOT APPLICABLE|NOT_APPLICABLE$")

_cache: dict[tuple[type, object], str] = {}


def _condition(value: object) -> str:
    text = str(value).strip().upper()
    if _NUMBER.match(text):
        text = str(float(text))
    if _DONT_CARE.match(text):
        text = NA
    if text == "ANY":
        return WILDCARD
    if text == "4294967295.0":
        return "-1.0"
    if text in ("T", "TRUE"):
        return "T"
    if text in ("F", "FALSE"):
        return "F"
    return text


_str_cache: dict[str, str] = {}


def condition_value(value: object) -> str:
    """Return `value` normalised the way CRDS normalises header and match values."""
    if type(value) is str:  # the common case: one dict lookup
        try:
            return _str_cache[value]
        except KeyError:
            result = _condition(value)
            if len(_str_cache) > 100_000:
                _str_cache.clear()
            _str_cache[value] = result
            return result
    # True == 1 == 1.0 and 0.0 == -0.0 hash alike but condition differently: key on the
    # type, and on the repr for floats.
    key = (float, repr(value)) if isinstance(value, float) else (type(value), value)
    try:
        return _cache[key]
    except KeyError:
        pass
    except TypeError:  # unhashable: never cached
        return _condition(value)
    result = _condition(value)
    if len(_cache) > 100_000:
        _cache.clear()
    _cache[key] = result
    return result


def condition_values(values: Sequence[object], missing: object = None) -> list[str]:
    """`condition_value` of each of `values` (`missing`, when given, conditions to
    UNDEFINED): the strings seen before are looked up all at once."""
    conditioned = list(map(_str_cache.get, values))  # None: not a str seen before
    if None in conditioned:
        for index, found in enumerate(conditioned):
            if found is None:
                value = values[index]
                is_missing = missing is not None and value is missing
                conditioned[index] = UNDEFINED if is_missing else condition_value(value)
    return conditioned  # type: ignore[return-value]


def upper_keys(header: Mapping[str, object]) -> dict[str, object]:
    """Upper-case the keys of `header` (not stripped: CRDS keeps blanks around keys).

    Where two keys differ only in case, the later one wins, as in CRDS.
    """
    return {str(key).upper(): value for key, value in header.items()}


def condition_header(
    header: Mapping[str, object], needed_keys: Iterable[str] | None = None
) -> dict[str, str]:
    """Upper-case the keys and condition the values of `header` (only `needed_keys` if given)."""
    upper = upper_keys(header)
    if needed_keys is None:
        return {key: condition_value(value) for key, value in upper.items()}
    return {key.upper(): condition_value(upper[key.upper()]) for key in needed_keys}


def condition_match_element(element: object) -> str:
    """Condition one field of an rmap Match key (memoised: rmaps repeat their fields)."""
    try:
        return _condition_match_element_cached(element)
    except TypeError:  # unhashable
        return _condition_match_element(element)


@functools.lru_cache(maxsize=100_000)
def _condition_match_element_cached(element: object) -> str:
    return _condition_match_element(element)


def _condition_match_element(element: object) -> str:
    """Condition one field of an rmap Match key.

    `{literal}` and `(regex)` fields are kept verbatim; `A|B` alternatives are conditioned
    one by one (sorted, blanks and empty parts dropped); tuples are alternatives too.
    """
    if isinstance(element, str):
        if (element.startswith("{") and element.endswith("}")) or (
            element.startswith("(") and element.endswith(")")
        ):
            return element
        if "|" in element:
            return "|".join(condition_value(part) for part in glob_list(element))
        return condition_value(glob_compress(element))
    if isinstance(element, (tuple, list)):
        return "|".join(condition_value(part) for part in element)
    return condition_value(element)


def condition_match_key(key: object) -> tuple[str, ...]:
    """Condition a whole Match key; a bare value stands for a 1-tuple."""
    if isinstance(key, tuple):
        return tuple(map(condition_match_element, key))
    return (condition_match_element(key),)


def is_na_value(value: object) -> bool:
    return isinstance(value, str) and value in NA_VALUES


def is_omit_value(value: object) -> bool:
    return isinstance(value, str) and value in OMIT_VALUES
