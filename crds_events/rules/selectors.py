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

Here `build_selector` turns a parsed selector tree into selector objects; the Match
selector lives in `crds_events.rules.match`, the others in `crds_events.rules.ordered`,
their base class and errors in `crds_events.rules.selection` (all importable from here).

Errors: `LookupMiss` is a clean "no match" (a Match then tries its next weight group);
every other `SelectionError` (invalid value, undefined date, ambiguity) fails the lookup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from crds_events.rules.match import DEFAULT_SUBSTITUTIONS, MatchSelector, validate_value
from crds_events.rules.ordered import (
    BracketSelector,
    ClosestTimeSelector,
    GeometricallyNearestSelector,
    SelectVersionSelector,
    UseAfterSelector,
    VersionAfterSelector,
)
from crds_events.rules.selection import (
    AmbiguousMatchError,
    InvalidValueError,
    LookupMiss,
    RulesError,
    SelectionError,
    Selector,
    UndefinedDateParameterError,
)

__all__ = [
    "DEFAULT_SUBSTITUTIONS",
    "SELECTOR_CLASSES",
    "AmbiguousMatchError",
    "BracketSelector",
    "ClosestTimeSelector",
    "GeometricallyNearestSelector",
    "InvalidValueError",
    "LookupMiss",
    "MatchSelector",
    "RulesError",
    "SelectVersionSelector",
    "SelectionError",
    "Selector",
    "UndefinedDateParameterError",
    "UseAfterSelector",
    "VersionAfterSelector",
    "build_selector",
    "validate_value",
]


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
