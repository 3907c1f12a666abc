"""The parsed form of a CRDS mapping, and the errors about mapping files.

`parse_mapping` (crds_events.rules.parse) turns mapping text into a `ParsedMapping`: its
header dict, its optional comment, and its selector as a tree of `Call` (a selector as
written, entries in file order with duplicate keys kept). Every error about a mapping file
derives from `MappingError`.
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

from crds_events.errors import CrdsEventsError
from crds_events.rules.naming import plain_name_problem

__all__ = [
    "SELECTOR_NAMES",
    "TOP_LEVEL_NAMES",
    "Call",
    "ChecksumError",
    "DuplicateKeyWarning",
    "MappingError",
    "MappingFormatError",
    "ParsedMapping",
    "UnsafeNameError",
    "check_named_files",
    "crds_test_data_names",
    "duplicate_keys",
    "named_files",
    "crds_test_data_names_allowed",
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


class UnsafeNameError(MappingFormatError):
    """The mapping names a file that is not a plain CRDS file name (a path, '..', ...).

    `problems` lists (line, reason) for every such name, the message the first few.
    """

    def __init__(self, problems: list[tuple[int | None, str]], *, filename: str) -> None:
        self.problems = problems
        shown = "; ".join(
            (f"line {line}: {reason}" if line else reason) for line, reason in problems[:3]
        )
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        super().__init__(
            f"names files that are not plain CRDS file names: {shown}{more}",
            filename=filename, line=problems[0][0] if problems else None,
            construct="file name",
        )


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


def named_files(selector: Call):
    """Yield (line, value) for every file name the selector gives (its non-selector values;
    a tuple or list of names, as CRDS merges equal matches, yields each)."""
    for call in selector.walk():
        lines = call.lines
        for index, (_, value) in enumerate(call.entries):
            if isinstance(value, Call):
                continue
            line = lines[index] if index < len(lines) else call.lineno
            if isinstance(value, (tuple, list)):
                for item in value:
                    yield line, item
            else:
                yield line, value


def check_named_files(parsed: ParsedMapping, *, compat: bool = False) -> None:
    """Raise UnsafeNameError when the mapping names anything but plain CRDS file names.

    A rules file's values become paths in every cache that syncs it (`crds.getreferences`
    opens `<CRDS_PATH>/references/<obs>/<value>`), so `../` in one is a way out of the
    cache. `compat` accepts the crds repository's `test/data/<obs>/<name>` children (see
    `crds_events.rules.naming.plain_name_problem`).
    """
    # Only what makes a name safe as a path component is checked here; the naming patterns
    # of the observatory are certify's (`rules_name_problem`), so hand-written test rules
    # with ad hoc names still load.
    problems: list[tuple[int | None, str]] = []
    seen: set = set()
    for line, value in named_files(parsed.selector):
        if isinstance(value, str) and value in seen:
            continue
        reason = plain_name_problem(value, compat=compat)
        if reason is not None:
            problems.append((line, reason))
            if isinstance(value, str):
                seen.add(value)
    if problems:
        raise UnsafeNameError(problems, filename=parsed.filename)


# Whether file names of the crds repository's test data form (`test/data/hst/x.imap`) are
# accepted. Off unless a caller opts in with `crds_test_data_names()`; a context variable
# so it reaches every load under that call (load_context, MappingStore, ...) without a
# parameter through each, and so no other thread (a server worker) ever inherits it.
_TEST_DATA_NAMES: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "crds_test_data_names", default=False)


@contextlib.contextmanager
def crds_test_data_names(allowed: bool = True) -> Iterator[None]:
    """Within this block mappings may name children `test/data/<obs>/<name>` (or, with
    `allowed=False`, may not, whatever an enclosing block said).

    Only for comparing with the crds repository's own test mappings, which name some
    children so (and which crds loads). Never used by the server, certify or the store.
    """
    token = _TEST_DATA_NAMES.set(allowed)
    try:
        yield
    finally:
        _TEST_DATA_NAMES.reset(token)


def crds_test_data_names_allowed() -> bool:
    """Whether the caller is inside `crds_test_data_names()`."""
    return _TEST_DATA_NAMES.get()
