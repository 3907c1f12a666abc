"""Logical differences between two CRDS mappings, as `crds diff` computes them.

The logical difference walks the whole pmap -> imap -> rmap hierarchy: children are found by
name in a mappings directory (by default the directory of the mapping that names them), and
each difference is a tuple: the pair of mapping names at every level it passes through, the
match key(s) that lead to the change, and a message such as
`"replaced 'a.fits' with 'b.fits'"`. The tuples and their order (longest first, then as
tuples) are those of `crds diff`; certify and reprocessing read them with `diff_action`.
Printing them, and text differences, is `crds_events.refactoring.diff`.

Nothing here executes mapping text: mappings are read with `parse_mapping`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from crds_events.rules.parse import Call, MappingError, ParsedMapping, parse_mapping

__all__ = [
    "BORING_VARS",
    "SPECIAL_VALUES",
    "DiffTuple",
    "MappingTree",
    "diff_action",
    "is_mapping_name",
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

    def loaded_children(self) -> list[MappingTree]:
        """The children `child` has loaded so far (the trees a difference walked)."""
        return list(self._children.values())

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
