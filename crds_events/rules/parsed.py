"""The parsed form of a CRDS mapping, and the errors about mapping files.

`parse_mapping` (crds_events.rules.parse) turns mapping text into a `ParsedMapping`: its
header dict, its optional comment, and its selector as a tree of `Call` (a selector as
written, entries in file order with duplicate keys kept). Every error about a mapping file
derives from `MappingError`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from crds_events.errors import CrdsEventsError

__all__ = [
    "SELECTOR_NAMES",
    "TOP_LEVEL_NAMES",
    "Call",
    "ChecksumError",
    "DuplicateKeyWarning",
    "MappingError",
    "MappingFormatError",
    "ParsedMapping",
    "duplicate_keys",
]

#: The selector names a mapping may call (crds.core.selectors.SELECTORS).
SELECTOR_NAMES = frozenset(
    {
        "Match",
        "UseAfter",
        "VersionAfter",
        "SelectVersion",
        "ClosestTime",
        "GeometricallyNearest",
        "Bracket",
    }
)


#: The names a mapping may assign at its top level.
TOP_LEVEL_NAMES = ("header", "comment", "selector")


# ----------------------------------------------------------------------------- errors


class MappingError(CrdsEventsError):
    """Base class of every error about a mapping file.

    `crds_class` is the name of the exception class CRDS raises for the same problem when it
    loads a mapping (tests compare it to the oracle's recorded `load_error`).
    """

    crds_class = "MappingError"


class MappingFormatError(MappingError):
    """The mapping text is not a well-formed, safe CRDS mapping.

    The message names the file, the line and the construct; they are also attributes.
    """

    def __init__(
        self,
        reason: str,
        *,
        filename: str = "<string>",
        line: int | None = None,
        construct: str | None = None,
        crds_class: str | None = None,
    ) -> None:
        self.reason = reason
        self.filename = filename
        self.line = line
        self.construct = construct
        if crds_class is not None:
            self.crds_class = crds_class
        where = filename if line is None else f"{filename}, line {line}"
        what = f"{construct}: " if construct else ""
        super().__init__(f"{where}: {what}{reason}")


class ChecksumError(MappingError):
    """The mapping's `sha1sum` header is missing or does not match its text."""

    crds_class = "ChecksumError"


class DuplicateKeyWarning(UserWarning):
    """A dict or selector in a mapping repeats a key; the last value wins, as in CRDS."""


# ----------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Call:
    """A selector as written: Match({...}), UseAfter({...}), ... or a plain dict literal (name='dict')."""

    name: str
    entries: tuple[tuple[object, object], ...]
    # Line of each entry's key, parallel to `entries`; not part of equality.
    lines: tuple[int, ...] = field(default=(), compare=False, repr=False)
    lineno: int | None = field(default=None, compare=False, repr=False)
    # True where every value is known to be a string (the parser read a string block):
    # lets builders skip looking at the values one by one. Never part of equality.
    strings_only: bool = field(default=False, compare=False, repr=False)

    def keys(self) -> list[object]:
        return [key for key, _ in self.entries]

    def as_dict(self, filename: str | None = None) -> dict:
        """The entries as CRDS loads them: the last value of a repeated key wins (warning)."""
        result: dict = {}
        for key, value in self.entries:
            result[key] = value
        if len(result) != len(self.entries):
            where = f" in {filename!r}" if filename else ""
            for key, lines in duplicate_keys(self).items():
                warnings.warn(
                    f"duplicate key {key!r} in {self.name}{where} at lines "
                    f"{', '.join(map(str, lines))}; the last one wins",
                    DuplicateKeyWarning,
                    stacklevel=2,
                )
        return result

    def walk(self):
        """Yield this call and every Call nested in its values, depth first."""
        stack = [self]
        while stack:
            call = stack.pop()
            yield call
            stack.extend(reversed([v for _, v in call.entries if isinstance(v, Call)]))


def duplicate_keys(call: Call) -> dict[object, list[int]]:
    """Keys of `call` (not of nested calls) written more than once -> lines of each use.

    Keys compare as Python dict keys do (so 1 and 1.0 are the same key), which is what makes
    CRDS silently drop all but the last. Lines are 0 where the call was built without them.
    """
    seen: dict[object, list[int]] = {}
    for index, (key, _) in enumerate(call.entries):
        line = call.lines[index] if index < len(call.lines) else 0
        seen.setdefault(key, []).append(line)
    return {key: lines for key, lines in seen.items() if len(lines) > 1}


@dataclass(frozen=True)
class ParsedMapping:
    filename: str
    header: dict = field(hash=False)
    selector: Call
    comment: str | None
    text: str = field(default="", compare=False, repr=False)
    # Header keys written more than once (CRDS keeps the last); for certify.
    header_duplicates: tuple[str, ...] = field(default=(), compare=False, repr=False)
