"""`crds diff`: logical differences printed as `crds diff` prints them, and text differences.

`difference` loads both mapping trees, prints each logical difference
(`crds_events.rules.diff.mapping_diffs`) shaped by the `DiffOptions` switches, and with
`mapping_text_diffs` a text difference of every pair of mappings that differ. The printed
form is that of `crds diff`, so operators' scripts that read its output keep working. Text
differences are a context diff ignoring changes in the amount of white space (`diff -b -c`),
computed in Python.
"""

from __future__ import annotations

import difflib
import io
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from crds_events.rules.diff import (
    MappingTree,
    diff_action,
    is_mapping_name,
    mapping_diffs,
    remove_boring,
)

__all__ = [
    "DiffOptions",
    "context_diff",
    "difference",
    "format_diff",
    "text_difference",
]

# ----------------------------------------------------------------------------- printing


def _unquote(diff: tuple) -> tuple:
    if "header" in diff[-1]:
        return tuple(diff)
    return tuple(diff[:-1]) + (diff[-1].replace("'", ""),)


def _is_mapping_pair(part: object) -> bool:
    return (isinstance(part, tuple) and len(part) == 2 and isinstance(part[0], str)
            and part[0].endswith("map"))


def _lowest_mapping_only(diff: tuple) -> tuple:
    lowest = None
    for part in diff:
        if _is_mapping_pair(part):
            lowest = part[0]
    return tuple(part for part in diff if not (_is_mapping_pair(part) and part[0] != lowest))


def _remove_paths(diff: tuple) -> tuple:
    return tuple(tuple(os.path.basename(x) for x in part) if _is_mapping_pair(part) else part
                 for part in diff)


def _squash(diff: tuple) -> str:
    return " -- ".join(" ".join(part) if isinstance(part, tuple) else part for part in diff)


@dataclass(frozen=True)
class DiffOptions:
    """The `crds diff` switches that shape a mapping difference."""

    include_header_diffs: bool = False
    hide_boring_diffs: bool = False
    recurse_added_deleted: bool = False
    lowest_mapping_only: bool = False
    remove_paths: bool = False
    squash_tuples: bool = False
    mapping_text_diffs: bool = False

    @classmethod
    def brief(cls, **overrides) -> DiffOptions:
        """-F/--brief: lowest mapping only, no paths, no boring diffs, header diffs included."""
        values = dict(lowest_mapping_only=True, remove_paths=True, hide_boring_diffs=True,
                      include_header_diffs=True)
        values.update(overrides)
        return cls(**values)


def format_diff(diff: tuple, options: DiffOptions = DiffOptions()) -> str:
    """One difference as `crds diff` prints it."""
    shown = _unquote(diff)
    if options.lowest_mapping_only:
        shown = _lowest_mapping_only(shown)
    if options.remove_paths:
        shown = _remove_paths(shown)
    return _squash(shown) if options.squash_tuples else repr(tuple(shown))


def _mapping_pairs(diffs: Iterable[tuple]) -> list[tuple[str, str]]:
    pairs = set()
    for diff in diffs:
        for part in diff:
            if isinstance(part, tuple) and len(part) == 2 and is_mapping_name(part[0]):
                pairs.add(part)
    return sorted(pairs)


def difference(old: str | os.PathLike, new: str | os.PathLike,
               options: DiffOptions = DiffOptions(), out: TextIO | None = None, *,
               old_mappings_dir: str | os.PathLike | None = None,
               new_mappings_dir: str | os.PathLike | None = None,
               colour: bool = False) -> int:
    """Print the differences of two mappings as `crds diff` does; 0 same, 1 different.

    Errors (unreadable mappings, missing children) raise MappingError; the CLI maps them
    to exit status 2.
    """
    out = out if out is not None else io.StringIO()
    cache: dict = {}
    old_dirs = _search_dirs(old_mappings_dir, old, new)
    new_dirs = _search_dirs(new_mappings_dir, new, old)
    old_tree = MappingTree.load(old, name=str(old), mappings_dir=old_dirs, cache=cache)
    new_tree = MappingTree.load(new, name=str(new), mappings_dir=new_dirs, cache=cache)
    diffs = mapping_diffs(old_tree, new_tree, include_header_diffs=options.include_header_diffs,
                          recurse_added_deleted=options.recurse_added_deleted)
    if options.mapping_text_diffs:
        out.write(f"{'=' * 20} logical differences {str(old)!r} vs. {str(new)!r} {'=' * 20}\n")
    if options.hide_boring_diffs:
        diffs = remove_boring(diffs)
    for diff in sorted(diffs):
        line = format_diff(diff, options)
        out.write(_colourise_logical(line, diff) if colour else line)
        out.write("\n")
    if options.mapping_text_diffs:
        trees = _index_trees(old_tree, new_tree)
        for old_name, new_name in sorted(set(_mapping_pairs(diffs) + [(str(old), str(new))])):
            out.write(f"{'=' * 20} text difference {old_name!r} vs. {new_name!r} {'=' * 20}\n")
            old_path = trees.get(old_name, Path(old_name))
            new_path = trees.get(new_name, Path(new_name))
            text = text_difference(old_path, new_path)
            out.write(_colourise_text(text) if colour else text)
            out.write("=" * 80 + "\n")
    return 1 if diffs else 0


def _search_dirs(explicit: str | os.PathLike | None, own: str | os.PathLike,
                 other: str | os.PathLike) -> list[Path]:
    """Where a side's children are looked for: the given directory, its own, the other's."""
    dirs = [Path(explicit)] if explicit is not None else []
    for directory in (Path(own).parent, Path(other).parent):
        if directory not in dirs:
            dirs.append(directory)
    return dirs


def _index_trees(*roots: MappingTree) -> dict[str, Path]:
    """Name -> path of every mapping loaded so far under `roots` (for text diffs)."""
    found: dict[str, Path] = {}
    stack = list(roots)
    while stack:
        tree = stack.pop()
        found.setdefault(tree.name, tree.path)
        stack.extend(tree.loaded_children())
    return found


# ----------------------------------------------------------------------------- text diff


def _normalise_space(line: str) -> str:
    """`diff -b`: runs of white space compare as one blank, trailing white space not at all."""
    return re.sub(r"[ \t\f\v\r]+", " ", line.rstrip("\n")).rstrip(" ")


def _mtime_label(path: Path) -> str:
    """A file's modification time as GNU diff prints it: 2024-01-31 12:00:00.123456789 +0000."""
    try:
        stat = path.stat()
    except OSError:
        return ""
    seconds, nanos = divmod(stat.st_mtime_ns, 1_000_000_000)
    local = time.localtime(seconds)
    return time.strftime("%Y-%m-%d %H:%M:%S", local) + f".{nanos:09d} " + time.strftime("%z", local)


def _context_range(start: int, stop: int) -> str:
    beginning = start + 1
    length = stop - start
    if not length:
        beginning -= 1
    if length <= 1:
        return str(beginning)
    return f"{beginning},{beginning + length - 1}"


def _emit(line: str, prefix: str, out: list[str]) -> None:
    if line.endswith("\n"):
        out.append(prefix + line)
    else:
        out.append(prefix + line + "\n\\ No newline at end of file\n")


def context_diff(a: list[str], b: list[str], from_label: str, to_label: str,
                 context: int = 3) -> str:
    """A context diff of two lists of lines (with line ends) ignoring white-space amounts."""
    matcher = difflib.SequenceMatcher(None, [_normalise_space(x) for x in a],
                                      [_normalise_space(x) for x in b], autojunk=False)
    out: list[str] = []
    for group in matcher.get_grouped_opcodes(context):
        if not out:
            out.append(f"*** {from_label}\n")
            out.append(f"--- {to_label}\n")
        first, last = group[0], group[-1]
        out.append("***************\n")
        out.append(f"*** {_context_range(first[1], last[2])} ****\n")
        if any(tag in ("replace", "delete") for tag, *_ in group):
            for tag, i1, i2, _, _ in group:
                if tag != "insert":
                    for line in a[i1:i2]:
                        _emit(line, "  " if tag == "equal" else ("! " if tag == "replace" else "- "), out)
        out.append(f"--- {_context_range(first[3], last[4])} ----\n")
        if any(tag in ("replace", "insert") for tag, *_ in group):
            for tag, _, _, j1, j2 in group:
                if tag != "delete":
                    for line in b[j1:j2]:
                        _emit(line, "  " if tag == "equal" else ("! " if tag == "replace" else "+ "), out)
    return "".join(out)


def text_difference(old: str | os.PathLike, new: str | os.PathLike) -> str:
    """`diff -b -c old new` output (empty when the files differ only in white-space amounts)."""
    old, new = Path(old), Path(new)
    old_lines = old.read_text(encoding="utf-8").splitlines(keepends=True)
    new_lines = new.read_text(encoding="utf-8").splitlines(keepends=True)
    return context_diff(old_lines, new_lines, f"{old}\t{_mtime_label(old)}",
                        f"{new}\t{_mtime_label(new)}")


# ----------------------------------------------------------------------------- colour

_GREEN, _RED, _YELLOW, _CYAN, _RESET = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[36m", "\x1b[0m"


def _colourise_logical(line: str, diff: tuple) -> str:
    try:
        action = diff_action(diff)
    except ValueError:
        return line
    colour = _GREEN if action.startswith("add") else _RED if action.startswith("delete") else _YELLOW
    return colour + line + _RESET


def _colourise_text(text: str) -> str:
    colours = {"+ ": _GREEN, "- ": _RED, "! ": _YELLOW, "***": _CYAN, "---": _CYAN}
    lines = []
    for line in text.splitlines(keepends=True):
        colour = colours.get(line[:2]) or colours.get(line[:3])
        lines.append(colour + line.rstrip("\n") + _RESET + "\n" if colour else line)
    return "".join(lines)
