"""A new mapping against the one it replaces in a comparison context (``--comparison-context``).

CRDS certify finds the mapping of the comparison context that the new one corresponds to
(the pmap itself, the imap of the same instrument, the rmap of the same instrument and
type), computes the logical differences old -> new, and reports the suspicious ones as
warnings: deleted cases, changed rules, different parameters or selector classes, and
*reversions* (a file replaced by an older one, judged by the names). Added cases, header
changes and replacements by newer files are informational.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from crds_events.rules.conditioning import is_na_value, is_omit_value
from crds_events.rules.diff import MappingTree, diff_action, mapping_diffs
from crds_events.rules.parse import MappingError

#: (level, reason) pairs.
Change = tuple[str, str]
_OBSERVATORIES = ("hst", "jwst", "roman", "tobs")
_OLD_CDBS = re.compile(r"^[A-Za-z][A-Za-z0-9]{8}_[A-Za-z0-9]{1,8}\.[A-Za-z0-9]{1,6}$")
_NEW_CDBS = re.compile(r"^[0-9][A-Za-z0-9]{8}_[A-Za-z0-9]{1,8}\.[A-Za-z0-9]{1,6}$")
_OLD_SYNPHOT = re.compile(r"^[A-Za-z][a-zA-Z0-9]{7}m_(tmc|tmg|tmt)\.[A-Za-z0-9]{1,6}$")
_NEW_SYNPHOT = re.compile(r"^[0-9][a-zA-Z0-9]{7}m_(tmc|tmg|tmt)\.[A-Za-z0-9]{1,6}$")
_EXTENSION_RANK = {".fits": 1, ".json": 2, ".yaml": 3, ".asdf": 4}


def _name_class(name: str) -> str:
    if name == "N/A" or name.startswith(_OBSERVATORIES):
        return "crds"
    for pattern, kind in ((_OLD_SYNPHOT, "oldsynphot"), (_NEW_SYNPHOT, "newsynphot"),
                          (_OLD_CDBS, "oldcdbs"), (_NEW_CDBS, "newcdbs")):
        if pattern.match(name):
            return kind
    return "oldcdbs"  # an ad hoc name counts as oldest, so replacing it is normal


def _extension_rank(name: str) -> int:
    ext = os.path.splitext(name)[1]
    return 0 if re.fullmatch(r"\.r\d[hd]", ext) else _EXTENSION_RANK.get(ext, 5)


def _serial(name: str) -> int:
    found = re.search(r"_(\d+)\.\w+", name)
    return int(found.group(1)) if found else -1


def newer(name1: str, name2: str) -> bool | None:
    """Is file `name1` more recent than `name2`, judged by the names as CRDS judges them?
    None when the two naming schemes cannot be compared."""
    name1, name2 = os.path.basename(name1), os.path.basename(name2)
    if name1 == "N/A":
        return False
    if name2 == "N/A":
        return True
    classes = (_name_class(name1), _name_class(name2))
    if classes == ("crds", "crds"):
        rank1, rank2 = _extension_rank(name1), _extension_rank(name2)
        return _serial(name1) > _serial(name2) if rank1 == rank2 else rank1 > rank2
    if classes[0] == classes[1]:
        return name1 > name2
    ordered = {("crds", "oldcdbs"): True, ("newcdbs", "oldcdbs"): True,
               ("newsynphot", "oldsynphot"): True}
    if classes in ordered:
        return True
    if classes[::-1] in ordered:
        return False
    return None


def _tail(diff: tuple) -> tuple:
    """The end of a difference path from its lowest mapping (named by its new name)."""
    tail: list[object] = []
    for part in reversed(diff):
        if isinstance(part, tuple) and len(part) == 2 and isinstance(part[0], str) \
                and part[0].endswith("map"):
            tail.append(os.path.basename(str(part[1])))
            break
        tail.append(part)
    return tuple(reversed(tail))


def classify(diffs: Iterable[tuple]) -> list[Change]:
    """CRDS's reading of old -> new differences: which are warnings, which are info."""
    found: list[Change] = []
    for diff in sorted(diffs, key=lambda d: (diff_action(d), repr(d))):
        action, tail, message = diff_action(diff), _tail(diff)[:-1], diff[-1]
        where = f"{tail!r} {message}"
        if "header" in action or action == "add":
            found.append(("info", f"In {where}"))
        elif "rule" in action:
            found.append(("warning", f"Rule change at {where}"))
        elif action == "replace":
            names = re.search(r"replaced '(.+)' with '(.+)'", message)
            if not names:
                found.append(("warning", f"Unusual replacement {where}"))
            elif newer(names.group(2), names.group(1)):
                found.append(("info", f"In {where}"))
            else:
                found.append(("warning", f"Reversion at {where}"))
        elif action == "delete":
            found.append(("warning", f"Deletion at {where}"))
        elif action == "parkey_difference":
            found.append(("warning", f"Different lookup parameters {where}"))
        else:
            found.append(("warning", f"Different classes at {where}"))
    return found


def corresponding_mapping(comparison_context: str | os.PathLike, header: dict,
                          kind: str, cache: dict | None = None) -> MappingTree | None:
    """The mapping of `comparison_context` that a new mapping of `kind` ('pipeline',
    'instrument', 'reference') with `header` replaces, or None if it has no predecessor.
    `cache` (a dict reused across calls) keeps the context and its children loaded."""
    cache = {} if cache is None else cache
    stat = os.stat(comparison_context)
    key = ("comparison context", os.path.abspath(comparison_context), stat.st_mtime, stat.st_size)
    if key not in cache:
        cache[key] = MappingTree.load(comparison_context, cache={})
    context = cache[key]
    if kind == "pipeline":
        return context
    instrument = str(header.get("instrument", "")).lower()
    selections = context.selections()
    value = selections.get(instrument)
    if not isinstance(value, str) or is_na_value(value) or is_omit_value(value):
        return None
    imap = context.child(instrument)
    if kind == "instrument":
        return imap
    filekind = str(header.get("filekind", "")).lower()
    value = imap.selections().get(filekind)
    if not isinstance(value, str) or is_na_value(value) or is_omit_value(value):
        return None
    return imap.child(filekind)


def comparison_changes(path: str | os.PathLike, header: dict, kind: str,
                       comparison_context: str | os.PathLike,
                       search_dirs: Iterable[str | os.PathLike] = (),
                       cache: dict | None = None) -> list[Change]:
    """Differences of the mapping at `path` from its predecessor in `comparison_context`.

    The new mapping's children are looked for in `search_dirs`, its own directory and the
    comparison context's directory. Raises MappingError if either side cannot be read.
    """
    old = corresponding_mapping(comparison_context, header, kind, cache)
    name = os.path.basename(os.fspath(path))
    context_name = os.path.basename(os.fspath(comparison_context))
    if old is None:
        return [("info", f"no predecessor for {name!r} relative to context {context_name!r}")]
    if old.basename == name:
        return [("info", f"{name!r} did not change relative to context {context_name!r}")]
    dirs = [Path(d) for d in search_dirs] + [Path(path).parent, Path(comparison_context).parent]
    new = MappingTree.load(path, name=name, mappings_dir=dirs)
    try:
        diffs = mapping_diffs(old, new)
    except (KeyError, ValueError) as exc:
        raise MappingError(f"cannot compare with {old.basename!r}: {exc}") from exc
    found = [("info", f"{name!r} corresponds to {old.basename!r} from context {context_name!r}; "
                      f"{len(diffs)} difference(s)")]
    return found + classify(diffs)
