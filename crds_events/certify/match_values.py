"""Checks on the keys of an rmap's selectors: valid match values, dates, equal-weight overlaps.

These are the checks CRDS runs when it validates an rmap against its reference type's
``_ld.tpn`` constraints (``ReferenceMapping.validate``), done on the parsed selector tree:

- every Match key has one field per parameter; each field's values (``A|B`` alternatives
  one by one) are among the valid values of its parameter (``*``, ``N/A``, regexes,
  relations and ``NOT`` patterns are exempt; a parameter without a constraint is not
  checked; ``comment_parkeys`` are ignored);
- UseAfter/ClosestTime keys are dates, VersionAfter keys versions, GeometricallyNearest and
  Bracket keys numbers; terminal choices are file names (strings, or tuples/dicts of them);
- no Match key is an *equal-weight special case* of another: a key that matches whenever
  it does, counting ``N/A`` fields the same. For HST (``merge_overlaps`` on) CRDS merges
  such matches and only mentions them in verbose mode; elsewhere it refuses them.

The overlap check compares every pair of keys, which is what makes CRDS slow on big rmaps;
here each parameter's distinct values are compared once and the pairs are combined with
numpy, so it costs milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from crds_events.rules.conditioning import condition_match_key, condition_value
from crds_events.rules.dates import DateError, reformat_date
from crds_events.rules.parse import Call
from crds_events.rules.patterns import esoteric_key, glob_list
from crds_events.rules.selectors import DEFAULT_SUBSTITUTIONS

#: (level, where, reason) reported by the checks; `where` names the selector path.
Finding = tuple[str, str, str]
_VERSION = re.compile(r"^\d{1,8}(\.\d{1,8}(\.\d{1,8})?)?[a-zA-Z0-9_+\-.]{0,128}$")
_DATE_SELECTORS = ("UseAfter", "ClosestTime")
_NUMBER_SELECTORS = ("GeometricallyNearest", "Bracket")


@dataclass(frozen=True)
class MatchLevel:
    """One Match selector of the tree, with its parameters and conditioned keys."""

    call: Call
    path: str  # e.g. "selector Match" or "selector Match(('HRC',)) UseAfter"
    parameters: tuple[str, ...]


class ValueChecker:
    """Is one match value valid for a parameter? (CRDS's rule for rmap keys: no runtime
    wildcard shortcut, substitutions honoured)."""

    def __init__(self, valid: Mapping[str, Sequence[str]],
                 substitutions: Mapping[str, Mapping] | None = None):
        self.valid = {name.upper(): list(values) for name, values in valid.items()}
        self.substitutions = dict(DEFAULT_SUBSTITUTIONS)
        self.substitutions.update(substitutions or {})

    def reason(self, name: str, value: str) -> str | None:
        """None if `value` is acceptable for parameter `name`, else why not."""
        valid = self.valid.get(name.upper())
        if valid is None or not valid:
            return None
        return self._check(name.upper(), value, valid, depth=0)

    def _check(self, name: str, value: str, valid: list[str], depth: int) -> str | None:
        if value in valid or condition_value(value) in valid:
            return None
        if depth > 4:  # a NOT NOT NOT ... chain
            return f"parameter={name!r} value={value!r} is not in {valid!r}"
        if value.startswith("NOT"):
            return self._check(name, value[3:].strip(), valid, depth + 1)
        if esoteric_key(value) or value in ("*", "ANY", "N/A"):
            return None
        if value.lower().startswith("between"):
            parts = value.split()
            if len(parts) != 3:
                return f"parameter={name!r} value={value!r} is not 'between <low> <high>'"
            return (self._check(name, parts[1], valid, depth + 1)
                    or self._check(name, parts[2], valid, depth + 1))
        if len(valid) == 1 and ":" in valid[0]:
            try:
                low, high = (float(x) for x in valid[0].split(":"))
                number = float(value)
            except ValueError:
                return f"parameter={name!r} value={value!r} is not a number in {valid[0]}"
            if low <= number <= high:
                return None
            return f"parameter={name!r} value={value!r} is not in range [{low} .. {high}]"
        table = self.substitutions.get(name, {})
        if isinstance(table, Mapping) and value in table and isinstance(table[value], str):
            return self._check(name, table[value], valid, depth + 1)
        shown = valid if len(valid) <= 20 else valid[:20] + ["..."]
        return f"parameter={name!r} value={value!r} is not in {shown!r}"


def match_levels(selector: Call, parkey: Sequence[object], path: str = "selector") -> Iterator[MatchLevel]:
    """Every Match call of the tree with its parameters (nested ones named by their key)."""
    stack: list[tuple[Call, int, str]] = [(selector, 0, path)]
    while stack:
        call, depth, where = stack.pop()
        params = parkey[depth] if depth < len(parkey) else ()
        params = tuple(str(p) for p in params) if isinstance(params, (tuple, list)) else ()
        if call.name == "Match":
            yield MatchLevel(call, f"{where} Match", params)
        for key, value in reversed(call.entries):
            if isinstance(value, Call):
                stack.append((value, depth + 1, f"{where} {call.name}({key!r})"))


def substituted_key(key: object, parameters: Sequence[str], substitutions: Mapping[str, Mapping]) -> object:
    """`key` with each field replaced where the parameter's substitution table names it."""
    fields = list(key) if isinstance(key, tuple) else [key]
    for index, name in enumerate(parameters[: len(fields)]):
        table = substitutions.get(name)
        if isinstance(table, Mapping):
            try:
                if fields[index] in table:
                    replacement = table[fields[index]]
                    fields[index] = tuple(replacement) if isinstance(replacement, list) else replacement
            except TypeError:  # unhashable field
                continue
    return tuple(fields) if isinstance(key, tuple) else fields[0]


def check_selector_keys(header: Mapping[str, object], selector: Call,
                        checker: ValueChecker, add: Callable[[str, str, str], None]) -> None:
    """Key shape, match values, dates/versions/numbers and terminal types of the tree."""
    parkey = header.get("parkey", ())
    parkey = parkey if isinstance(parkey, (tuple, list)) else ()
    comments = {str(name).upper() for name in header.get("comment_parkeys", ()) or ()}
    substitutions = dict(DEFAULT_SUBSTITUTIONS)
    extra = header.get("substitutions")
    if isinstance(extra, Mapping):
        substitutions.update(extra)
    stack: list[tuple[Call, int, str]] = [(selector, 0, "selector")]
    while stack:
        call, depth, where = stack.pop()
        params = parkey[depth] if depth < len(parkey) else ()
        params = tuple(str(p) for p in params) if isinstance(params, (tuple, list)) else ()
        here = f"{where} {call.name}"
        for key, value in call.entries:
            if call.name == "Match":
                _check_match_key(key, params, comments, substitutions, checker, here, add)
            elif call.name in _DATE_SELECTORS:
                _check_date(key, params, here, add)
            elif call.name == "VersionAfter":
                if not isinstance(key, str) or not _VERSION.match(key):
                    add("error", here, f"invalid version string {key!r}")
            elif call.name in _NUMBER_SELECTORS:
                try:
                    float(key)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    add("error", here, f"invalid number for {params[:1]!r} key={key!r}")
            if isinstance(value, Call):
                stack.append((value, depth + 1, f"{where} {call.name}({key!r})"))
            else:
                _check_choice(value, key, here, add)


def _check_match_key(key, params, comments, substitutions, checker, where, add) -> None:
    fields = key if isinstance(key, tuple) else (key,)
    if len(fields) != len(params):
        add("error", where, f"match key {key!r} has {len(fields)} fields but the parameters are "
                            f"{params!r}")
        return
    fields = substituted_key(fields, params, substitutions)
    for name, field in zip(params, fields, strict=True):
        if name.upper() in comments:
            continue
        values = field if isinstance(field, tuple) else glob_list(str(field))
        for value in values:
            reason = checker.reason(name, str(value))
            if reason:
                add("error", where, f"match key {key!r}: {reason}")


def _check_date(key: object, params: Sequence[str], where: str, add) -> None:
    try:
        reformat_date(str(key))
        if not isinstance(key, str):
            raise DateError(f"a date must be a string, not {type(key).__name__}")
    except (DateError, ValueError) as exc:
        add("error", where, f"invalid date/time format for {tuple(params)!r} value={key!r}: {exc}")


def _check_choice(value: object, key: object, where: str, add) -> None:
    if isinstance(value, str):
        return
    if isinstance(value, tuple):
        if not all(isinstance(item, str) for item in value):
            add("error", where, f"non-string tuple value for choice {value!r} at {key!r}")
        return
    add("error", where, f"illegal type for selector value {value!r} at {key!r}: "
                        "expected a file name")


# ----------------------------------------------------------------------------- overlaps


def _glob_set(value: str) -> frozenset[str]:
    return frozenset(glob_list(value))


def _covers(sub: str, sup: str) -> bool:
    """CRDS match_superset for one field: does `sup` match whenever `sub` does?"""
    if sub == sup or sup == "*" or sub == "N/A" or (sup == "N/A" and sub == "*"):
        return True
    if sub == "*":
        return False
    return _glob_set(sup) > _glob_set(sub)


def equal_weight_overlaps(keys: Sequence[tuple[str, ...]]) -> list[tuple[int, int]]:
    """Pairs (sub, super) of conditioned Match keys where `super` matches every dataset
    `sub` matches, with the same weight (as many N/A fields) - CRDS's ambiguous matches."""
    n = len(keys)
    if n < 2:
        return []
    width = len(keys[0])
    if any(len(key) != width for key in keys):
        return []
    cover_rows: list[np.ndarray] = []
    ids = np.zeros((width, n), dtype=np.intp)
    na = np.zeros((width, n), dtype=np.int64)
    for i in range(width):
        distinct: dict[str, int] = {}
        for k, key in enumerate(keys):
            ids[i, k] = distinct.setdefault(key[i], len(distinct))
        values = list(distinct)
        multi = [j for j, v in enumerate(values) if "|" in v and not esoteric_key(v)]
        cover = np.zeros((len(values), len(values)), dtype=bool)
        for a, sub in enumerate(values):
            candidates = range(len(values)) if sub in ("N/A",) else \
                {b for b in multi} | {a} | {j for j, v in enumerate(values) if v in ("*", "N/A")}
            for b in candidates:
                cover[a, b] = _covers(sub, values[b])
        cover_rows.append(cover)
        na[i] = np.array([values[j] == "N/A" for j in ids[i]], dtype=np.int64)
    found: list[tuple[int, int]] = []
    chunk = max(1, 4_000_000 // n)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        mask = np.ones((stop - start, n), dtype=bool)
        for i in range(width):
            mask &= cover_rows[i][ids[i, start:stop][:, None], ids[i][None, :]]
        if not mask.any():
            continue
        sub_na = na[:, start:stop].T  # rows: sub keys
        lost_by_sub = sub_na @ (1 - na)  # fields where sub is N/A and super is not
        lost_by_super = (1 - sub_na) @ na
        mask &= lost_by_sub == lost_by_super
        rows = np.arange(start, stop)
        mask[rows - start, rows] = False
        for r, c in zip(*np.nonzero(mask), strict=True):
            found.append((int(r) + start, int(c)))
    return found


def check_overlaps(header: Mapping[str, object], selector: Call, observatory: str,
                   verbose: bool, add: Callable[[str, str, str], None]) -> None:
    """Report equal-weight overlaps of each Match selector as CRDS does: HST with
    merge_overlaps (the default) merges them and only mentions them (a warning with
    `verbose`, info otherwise); other observatories, or merge_overlaps off, refuse them."""
    merge = header.get("merge_overlaps")
    merging = True if merge is None else str(merge).upper() in ("TRUE", "1")
    level = ("warning" if verbose else "info") if observatory == "hst" and merging else "error"
    parkey = header.get("parkey", ())
    parkey = parkey if isinstance(parkey, (tuple, list)) else ()
    substitutions = dict(DEFAULT_SUBSTITUTIONS)
    extra = header.get("substitutions")
    if isinstance(extra, Mapping):
        substitutions.update(extra)
    for match in match_levels(selector, parkey):
        raw = [key for key, _ in match.call.entries]
        try:
            keys = [condition_match_key(substituted_key(key, match.parameters, substitutions))
                    for key in raw]
        except (TypeError, ValueError):
            continue  # malformed keys were reported by check_selector_keys
        if any(len(key) != len(match.parameters) for key in keys):
            continue
        choices = [value for _, value in match.call.entries]
        for sub, sup in equal_weight_overlaps(keys):
            add(level, match.path,
                f"match case {keys[sub]!r} ({_first_file(choices[sub])}) is an equal weight "
                f"special case of {keys[sup]!r} ({_first_file(choices[sup])}): for some parameter "
                "sets CRDS treats both matches as equally good")


def _first_file(choice: object) -> str:
    while isinstance(choice, Call):
        if not choice.entries:
            return "?"
        choice = choice.entries[0][1]
    return str(choice)
