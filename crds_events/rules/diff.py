"""Logical and text differences between two CRDS mappings, as `crds diff` reports them.

The logical difference walks the whole pmap -> imap -> rmap hierarchy: children are found by
name in a mappings directory (by default the directory of the mapping that names them), and
each difference is a tuple: the pair of mapping names at every level it passes through, the
match key(s) that lead to the change, and a message such as
`"replaced 'a.fits' with 'b.fits'"`. The tuples, their order (longest first, then as tuples)
and their printed form are those of `crds diff`, so operators' scripts that read its output
keep working. Text differences are a context diff ignoring changes in the amount of white
space (`diff -b -c`), computed in Python.

Nothing here executes mapping text: mappings are read with `parse_mapping`.
"""

from __future__ import annotations

import difflib
import io
import os
import re
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from crds_events.rules.parse import Call, MappingError, ParsedMapping, parse_mapping

__all__ = [
    "BORING_VARS",
    "DiffOptions",
    "DiffTuple",
    "MappingTree",
    "context_diff",
    "diff_action",
    "difference",
    "format_diff",
    "mapping_diffs",
    "remove_boring",
]

#: Header keys whose changes every new mapping has; `--hide-boring-diffs` drops them.
BORING_VARS = ("name", "derived_from", "sha1sum", "row_keys")

#: Selector values of a pmap/imap that name no child mapping.
SPECIAL_VALUES = frozenset({"N/A", "TEMP_N/A", "n/a", "temp_n/a", "OMIT", "TEMP_OMIT", "omit"})

_MAPPING_EXTENSIONS = (".pmap", ".imap", ".rmap")


def is_mapping_name(name: object) -> bool:
    return isinstance(name, str) and name.endswith(_MAPPING_EXTENSIONS)


# ----------------------------------------------------------------------------- tuples


class DiffTuple(tuple):
    """One difference: a path of mapping pairs and keys ending in a message.

    Sorted as CRDS sorts them: longer tuples first, equal lengths as plain tuples.
    """

    def __lt__(self, other):  # noqa: D105 - the ordering is the point of this class
        if len(self) != len(other):
            return len(self) > len(other)
        try:
            return tuple.__lt__(self, other)
        except TypeError:  # a str and a tuple at the same place: order by their text
            return repr(tuple(self)) < repr(tuple(other))

    def __eq__(self, other):
        return len(self) == len(other) and tuple.__eq__(self, other)

    __hash__ = tuple.__hash__

    @property
    def message(self) -> str:
        return self[-1]


def diff_action(diff: tuple) -> str:
    """'add', 'replace', 'delete', ... (+ '_rule' or '_header') for a difference tuple."""
    message = diff[-1]
    if "replace" in message:
        action = "replace"
    elif "add" in message:
        action = "add"
    elif "delete" in message:
        action = "delete"
    elif "different classes" in message:
        action = "class_difference"
    elif "different parameter" in message:
        action = "parkey_difference"
    else:
        raise ValueError(f"bad difference action: {diff!r}")
    if "rule" in message:
        action += "_rule"
    elif "header" in message:
        action += "_header"
    return action


def remove_boring(diffs: Iterable[tuple]) -> list:
    """Drop differences whose message mentions a boring header key (name, sha1sum, ...)."""
    return [diff for diff in diffs if not any(var in diff[-1] for var in BORING_VARS)]


# ----------------------------------------------------------------------------- loading


def _lower_header_value(value: object) -> object:
    """Header strings compare in lower case, except `(expressions)` (CRDS's LowerCaseDict)."""
    if isinstance(value, str) and not (value.startswith("(") and value.endswith(")")):
        return value.lower()
    return value


def _selection_sort_key(item: tuple[object, object]) -> tuple[str, ...]:
    key = item[0]
    return tuple(str(field) for field in key) if isinstance(key, tuple) else (str(key),)


def _as_dict(call: Call) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call.as_dict()


class Selector:
    """A read-only view of one selector (Match, UseAfter, ...) with its parameters."""

    __slots__ = ("name", "parameters", "raw", "map")

    def __init__(self, call: Call, parkeys: tuple, level: int = 0) -> None:
        self.name = call.name
        params = parkeys[level] if level < len(parkeys) else ()
        self.parameters = tuple(params) if isinstance(params, (tuple, list)) else (params,)
        selections = {}
        for key, value in _as_dict(call).items():
            selections[key] = Selector(value, parkeys, level + 1) if isinstance(value, Call) else value
        self.map = selections
        self.raw = sorted(selections.items(), key=_selection_sort_key)

    def __repr__(self) -> str:
        return f"{self.name}Selector({self.parameters!r}, nselections={len(self.raw)})"

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, Selector)
            and self.name == other.name
            and self.parameters == other.parameters
            and self.raw == other.raw
        )

    __hash__ = None  # type: ignore[assignment]

    # -- keys as CRDS prints them in differences

    def match_item(self, key: object) -> tuple:
        if self.name in ("UseAfter", "ClosestTime", "VersionAfter"):
            if len(self.parameters) == 1:
                return ((self.parameters[0], key),)
            sep = "." if self.name == "VersionAfter" else None
            return tuple(zip(self.parameters, str(key).split(sep), strict=False))
        fields = key if isinstance(key, tuple) else (key,)
        return tuple(zip(self.parameters, [str(x) for x in fields], strict=False))

    def diff_key(self, key: object) -> tuple[str, ...]:
        item = self.match_item(key)
        return tuple(str(value) for _, value in item) if item else ()

    # -- differences

    def _msg(self, path: tuple, key: object, *words: str) -> DiffTuple:
        path2 = path + (self.diff_key(key),) if key else path
        return DiffTuple(path2 + (" ".join(words),))

    def difference(self, new: object, path: tuple, top: bool = True) -> list[DiffTuple]:
        if not isinstance(new, Selector) or new.name != self.name:
            other = ("N/A" if new == "N/A" else new.name if isinstance(new, Selector)
                     else type(new).__name__)
            return [self._msg(path, None, "different classes", self.name, ":", other)]
        if self.parameters != new.parameters:
            return [self._msg(path, None, "different parameter lists ", repr(self.parameters),
                              ":", repr(new.parameters))]
        diffs: list[DiffTuple] = []
        for key, choice in self.raw:
            if key not in new.map:
                if isinstance(choice, Selector):
                    here = path + (self.diff_key(key),)
                    diffs.extend(choice.flat_diff(f"deleted {self.name} rule for", here))
                elif top:
                    diffs.append(self._msg(path, key, f"deleted {self.name} rule for", repr(choice)))
                else:
                    diffs.append(self._msg(path, key, "deleted terminal", repr(choice)))
            else:
                new_choice = new.map[key]
                if isinstance(choice, Selector):
                    here = path + (self.diff_key(key),)
                    diffs.extend(choice.difference(new_choice, here, top=False))
                elif choice != new_choice:
                    diffs.append(self._msg(path, key, "replaced", repr(choice), "with",
                                           repr(new_choice)))
        for key, new_choice in new.raw:
            if key not in self.map:
                here = path + (new.diff_key(key),)
                if isinstance(new_choice, Selector):
                    diffs.extend(new_choice.flat_diff(f"added {self.name} rule for", here))
                elif top:
                    diffs.append(new._msg(path, key, f"added {self.name} rule for",
                                          repr(new_choice)))
                else:
                    diffs.append(new._msg(path, key, "added terminal", repr(new_choice)))
        return diffs

    def flat_diff(self, change: str, path: tuple) -> list[DiffTuple]:
        """`change` for every terminal under this selector (a whole case added or deleted)."""
        diffs: list[DiffTuple] = []
        for key, choice in self.raw:
            if isinstance(choice, Selector):
                diffs.extend(choice.flat_diff(change, path + (self.diff_key(key),)))
            else:
                diffs.append(self._msg(path, key, change, repr(choice)))
        return diffs


@dataclass
class MappingTree:
    """One mapping and, lazily, its children, found by name in the `search` directories.

    `name` is how differences name it: the path given for the top mapping, the name written
    in the parent's selector for a child (as CRDS does).
    """

    name: str
    path: Path
    search: tuple[Path, ...]
    parsed: ParsedMapping
    _children: dict = field(default_factory=dict, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, path: str | os.PathLike, name: str | None = None,
             mappings_dir: str | os.PathLike | Iterable[str | os.PathLike] | None = None,
             cache: dict | None = None) -> MappingTree:
        """Read the mapping at `path`; its children are looked for, by basename, in
        `mappings_dir` (one directory or several, searched in order), then in the
        directory of `path`."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise MappingError(f"{path}: cannot read mapping: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise MappingError(f"{path}: not UTF-8 text: {exc.reason}") from exc
        parsed = parse_mapping(text, str(path))
        for key in ("mapping", "parkey", "name", "derived_from"):
            if key not in parsed.header:
                raise MappingError(f"{path}: required header key {key!r} is missing")
        if mappings_dir is None:
            dirs: list[Path] = []
        elif isinstance(mappings_dir, (str, os.PathLike)):
            dirs = [Path(mappings_dir)]
        else:
            dirs = [Path(d) for d in mappings_dir]
        if path.parent not in dirs:
            dirs.append(path.parent)
        tree = cls(
            name=str(path) if name is None else name,
            path=path,
            search=tuple(dirs),
            parsed=parsed,
        )
        tree._cache = cache if cache is not None else {}
        return tree

    # -- header

    @property
    def header(self) -> dict:
        return self.parsed.header

    @property
    def kind(self) -> str:
        mapping = str(self.header.get("mapping", "")).lower()
        return {"pipeline": "pmap", "instrument": "imap", "reference": "rmap"}.get(
            mapping, self.path.suffix.lstrip(".")
        )

    @property
    def basename(self) -> str:
        return os.path.basename(self.name)

    def lower_header(self) -> dict:
        return {key: _lower_header_value(value) for key, value in self.header.items()}

    @property
    def parkey(self) -> tuple:
        parkey = self.header.get("parkey", ())
        return tuple(parkey) if isinstance(parkey, (tuple, list)) else (parkey,)

    # -- contexts (pmap/imap)

    def selections(self) -> dict[str, object]:
        """Lower-cased selector keys -> child name or special value (pmap/imap only)."""
        return {str(key).lower(): value for key, value in _as_dict(self.parsed.selector).items()}

    def child(self, key: str) -> MappingTree:
        if key not in self._children:
            name = str(self.selections()[key])
            base = os.path.basename(name)
            found = next((d / base for d in self.search if (d / base).is_file()), None)
            if found is None:
                where = ", ".join(str(d) for d in self.search)
                raise MappingError(
                    f"{self.path}: child mapping {name!r} (for {key!r}) not found in {where}"
                )
            cache_key = (str(found), name)
            if cache_key not in self._cache:
                self._cache[cache_key] = MappingTree.load(found, name=name,
                                                          mappings_dir=self.search,
                                                          cache=self._cache)
            self._children[key] = self._cache[cache_key]
        return self._children[key]

    # -- rmaps

    def selector(self) -> Selector:
        if not self.parsed.selector.name or self.parsed.selector.name == "dict":
            raise MappingError(f"{self.path}: a reference mapping needs a selector, not a dict")
        return Selector(self.parsed.selector, self.parkey)


def _is_special(value: object) -> bool:
    return isinstance(value, str) and value in SPECIAL_VALUES


# ----------------------------------------------------------------------------- logical diff


def _header_diffs(old: MappingTree, new: MappingTree, path: tuple) -> list[DiffTuple]:
    pair = (old.name, new.name)
    old_h, new_h = old.lower_header(), new.lower_header()
    diffs = []
    for key, value in old_h.items():
        if key not in new_h:
            diffs.append(DiffTuple(path + (pair, f"deleted header {key!r} = {value!r}")))
        elif value != new_h[key]:
            diffs.append(DiffTuple(path + (pair, f"header replaced {key!r} = {value!r} with "
                                                 f"{new_h[key]!r}")))
    for key, value in new_h.items():
        if key not in old_h:
            diffs.append(DiffTuple(path + (pair, f"header added {key!r} = {value!r}")))
    return sorted(diffs)


def _files_of(tree: MappingTree, change: str, path: tuple) -> list[DiffTuple]:
    """`change` tuples for everything under `tree` (recurse_added_deleted)."""
    if tree.kind == "rmap":
        return tree.selector().flat_diff(change + " terminal", path + (tree.name,))
    diffs: list[DiffTuple] = []
    for key, value in tree.selections().items():
        if _is_special(value):
            diffs.append(DiffTuple(path + ((tree.name,), (key,), f"{change} {value!r}")))
        else:
            diffs.extend(_files_of(tree.child(key), change, path + (key,)))
    return diffs


def _tree_diffs(old: MappingTree, new: MappingTree, path: tuple, include_header_diffs: bool,
                recurse_added_deleted: bool) -> list[DiffTuple]:
    pair = (old.name, new.name)
    diffs = _header_diffs(old, new, path) if include_header_diffs else []
    if old.kind == "rmap" or new.kind == "rmap":
        return diffs + old.selector().difference(new.selector(), path + (pair,))
    old_sel, new_sel = old.selections(), new.selections()

    def value_name(tree: MappingTree, key: str) -> object:
        return tree.selections()[key]  # a child's name is the name its parent gives it

    def value_xsum(tree: MappingTree, key: str) -> object:
        value = tree.selections()[key]
        return value if _is_special(value) else tree.child(key).header.get("sha1sum")

    for key, old_value in old_sel.items():
        nested: list[DiffTuple] = []
        diff = None
        if key not in new_sel:
            diff = DiffTuple(path + (pair, (key,), f"deleted {value_name(old, key)!r}"))
            if recurse_added_deleted and not _is_special(old_value):
                nested = _files_of(old.child(key), "deleted", path + ((old.name,),))
        elif value_name(old, key) != value_name(new, key):
            if value_xsum(old, key) != value_xsum(new, key):
                diff = DiffTuple(path + (pair, (key,), f"replaced {value_name(old, key)!r} with "
                                                       f"{value_name(new, key)!r}"))
            old_normal, new_normal = not _is_special(old_value), not _is_special(new_sel[key])
            if old_normal and new_normal:
                nested = _tree_diffs(old.child(key), new.child(key), path + (pair,),
                                     include_header_diffs, recurse_added_deleted)
            elif recurse_added_deleted and old_normal:
                nested = _files_of(old.child(key), "deleted", path + ((old.name,),))
            elif recurse_added_deleted and new_normal:
                nested = _files_of(new.child(key), "added", path + ((old.name,),))
        if old.basename == new.basename and not nested:
            diff = None
        if diff is not None:
            diffs.append(diff)
        diffs.extend(nested)
    for key, new_value in new_sel.items():
        if key not in old_sel:
            diffs.append(DiffTuple(path + (pair, (key,), f"added {value_name(new, key)!r}")))
            if recurse_added_deleted and not _is_special(new_value):
                diffs.extend(_files_of(new.child(key), "added", path + ((old.name,),)))
    return sorted(diffs)


def mapping_diffs(old: str | os.PathLike | MappingTree, new: str | os.PathLike | MappingTree,
                  *, include_header_diffs: bool = False, recurse_added_deleted: bool = False,
                  old_mappings_dir: str | os.PathLike | None = None,
                  new_mappings_dir: str | os.PathLike | None = None) -> list[DiffTuple]:
    """The logical differences between two mappings of the same kind, sorted as CRDS does.

    Children of a pmap/imap are found by name in `*_mappings_dir` (default: the directory of
    the mapping). Checksums are not verified. Raises MappingError for unreadable mappings.
    """
    old_tree = old if isinstance(old, MappingTree) else MappingTree.load(
        old, mappings_dir=old_mappings_dir)
    new_tree = new if isinstance(new, MappingTree) else MappingTree.load(
        new, mappings_dir=new_mappings_dir)
    if old_tree.path.suffix != new_tree.path.suffix:
        raise MappingError(
            f"{old_tree.name!r} and {new_tree.name!r} are not the same kind of CRDS mapping: "
            ".pmap, .imap, .rmap"
        )
    return sorted(_tree_diffs(old_tree, new_tree, (), include_header_diffs,
                              recurse_added_deleted))


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
        stack.extend(tree._children.values())
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
