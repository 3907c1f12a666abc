"""The selectors over ordered keys: dates (UseAfter, ClosestTime), versions (VersionAfter,
SelectVersion) and numbers (GeometricallyNearest, Bracket).

- **UseAfter**: the greatest date key `<=` the header's date (date and time parameters
  joined by a blank, parsed leniently, compared as ISO strings).
- **VersionAfter**: like UseAfter over versions `x.y.z` as integer triples.
- **ClosestTime**: the date key nearest to the header's date.
- **GeometricallyNearest**: the numeric key nearest to the header value.
- **Bracket**: the pair of keys bracketing the header value (a 2-tuple of choices).
- **SelectVersion**: relations `<v`, `=v`, `default` over a software version.
"""

from __future__ import annotations

import ast
import bisect
import re
import sys
from collections.abc import Mapping, Sequence

import numpy as np

from crds_events.rules import dates
from crds_events.rules.conditioning import condition_value
from crds_events.rules.patterns import glob_compress, glob_list
from crds_events.rules.selection import (
    BY_KEY,
    MEMO_LIMIT,
    MISSING,
    InvalidValueError,
    LookupMiss,
    RulesError,
    SelectionError,
    Selector,
    UndefinedDateParameterError,
)

__all__ = [
    "BracketSelector",
    "ClosestTimeSelector",
    "GeometricallyNearestSelector",
    "SelectVersionSelector",
    "UseAfterSelector",
    "VersionAfterSelector",
]


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
            ordered = sorted(selections.items(), key=BY_KEY)
        except TypeError as exc:
            raise RulesError(f"{self.kind} keys of mixed types: {exc}") from exc
        if type(self).condition_key is UseAfterSelector.condition_key:  # keys as written
            self.keys = [key for key, _ in ordered]
        else:
            self.keys = [self.condition_key(key) for key, _ in ordered]
        self._choices = [choice for _, choice in ordered]
        self._init_lookup()

    def _init_lookup(self) -> None:
        self._missing = (MISSING,) * len(self.parameters)
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
                raise UndefinedDateParameterError(f"UseAfter parameter {name!r} is UNDEFINED.")
            parts.append(value)
        raw = " ".join(parts).strip()
        try:
            return dates.reformat_date(raw)
        except dates.DateError as exc:
            raise InvalidValueError(
                f"{self.kind} Invalid date/time format for {self.parameters!r} "
                f"value = {raw!r} exception is {str(exc)!r}"
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
            if len(memo) > MEMO_LIMIT:
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
                key=BY_KEY,
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
        raise InvalidValueError(f"{kind} Invalid number for {name!r} value = {value!r}") from exc


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
            ordered = sorted(selections.items(), key=BY_KEY)
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
            relations.sort(key=BY_KEY)
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
