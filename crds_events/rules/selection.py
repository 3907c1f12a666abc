"""The `Selector` base class and the errors of building and looking up selectors.

A selector chooses a reference for a header: `choose(header)` returns a terminal value (a
file name, a tuple of them, or a nested selector's choice) or raises a `SelectionError`.
`LookupMiss` is a clean "no match" (a Match then tries its next weight group); every other
`SelectionError` fails the lookup. `RulesError` is a selector that cannot be built from the
mapping text.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence

from crds_events.errors import CrdsEventsError

__all__ = [
    "BY_KEY",
    "MEMO_LIMIT",
    "MISSING",
    "AmbiguousMatchError",
    "InvalidValueError",
    "LookupMiss",
    "RulesError",
    "SelectionError",
    "Selector",
    "UndefinedDateParameterError",
]

#: Memo tables of lookups are cleared when they grow past this many entries.
MEMO_LIMIT = 50_000
BY_KEY = operator.itemgetter(0)  # sort (key, choice) pairs by key only
#: The default of `map(header.get, parameters, ...)`: a value no header holds.
MISSING = object()


class RulesError(CrdsEventsError, ValueError):
    """A selector that cannot be built from the mapping text (bad key, bad pattern, ...)."""


class SelectionError(CrdsEventsError):
    """A lookup that failed; the message is what a `NOT FOUND <reason>` result shows."""


class LookupMiss(SelectionError):
    """No selection applies (CRDS's lookup errors): a Match tries its next weight group."""


class InvalidValueError(SelectionError):
    """A header value that is not valid for the rules (CRDS ValidationError)."""


class UndefinedDateParameterError(SelectionError):
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
