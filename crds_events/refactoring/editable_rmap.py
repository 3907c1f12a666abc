"""An rmap being rewritten: its header, comment and a mutable selector tree.

`load_rmap` reads an rmap into an `EditableRmap` whose selectors are `SelectorNode`s (raw
keys in CRDS's sorted order). Inserting a reference walks the tree as CRDS does: an equal
match case (compared conditioned) gets a new or replaced UseAfter date, otherwise a new
match case with a nested UseAfter is added; match values are checked against the site's
valid values and against equal-weight overlaps first. `text()` writes the rmap back in
canonical form. The operations on files are `crds_events.refactoring.refactor`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence

from crds_events.rules.canonical import rewrite_text
from crds_events.rules.checksum import read_mapping_text, verify_checksum
from crds_events.rules.conditioning import condition_match_key, condition_value
from crds_events.rules.dates import DateError, reformat_date
from crds_events.rules.index import OBSERVATORY_EXTRA_KEYS
from crds_events.rules.match import DEFAULT_SUBSTITUTIONS
from crds_events.rules.parse import Call, MappingError, ParsedMapping, parse_mapping
from crds_events.rules.patterns import esoteric_key, glob_compress, glob_list

__all__ = [
    "EditableRmap",
    "InsertionError",
    "SelectorNode",
    "different_match_weight",
    "load_rmap",
    "make_key",
    "match_superset",
]


class InsertionError(MappingError):
    """A reference cannot be inserted (invalid or ambiguous match values, a bad date)."""


def _entry_sort_key(item: Sequence[object]) -> tuple[str, ...]:
    key = item[0]
    return tuple(str(f) for f in key) if isinstance(key, tuple) else (str(key),)


class SelectorNode:
    """A mutable selector (Match, UseAfter, ...) with raw keys in CRDS's sorted order."""

    def __init__(self, name: str, parameters: tuple[str, ...], entries: list[list[object]],
                 rmap: EditableRmap) -> None:
        self.name = name
        self.parameters = parameters
        self.entries = sorted(entries, key=_entry_sort_key)
        self.rmap = rmap

    @classmethod
    def from_call(cls, call: Call, rmap: EditableRmap, level: int = 0) -> SelectorNode:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            items = call.as_dict().items()
        entries = [[key, cls.from_call(value, rmap, level + 1) if isinstance(value, Call) else value]
                   for key, value in items]
        return cls(call.name, rmap.parameters(level), entries, rmap)

    def to_call(self) -> Call:
        return Call(self.name, tuple((key, value.to_call() if isinstance(value, SelectorNode) else value)
                                     for key, value in self.entries))

    # -- keys

    @property
    def is_match(self) -> bool:
        return self.name == "Match"

    @property
    def is_dated(self) -> bool:
        return self.name in ("UseAfter", "VersionAfter", "ClosestTime")

    def condition_key(self, key: object) -> object:
        return condition_match_key(key) if self.is_match else key

    def equal_keys(self, key1: object, key2: object) -> bool:
        if not self.is_match:
            return key1 == key2
        k1, k2 = condition_match_key(key1), condition_match_key(key2)
        if len(k1) != len(k2):
            return False
        comments = self.rmap.comment_parkeys
        return all(a == b for i, (a, b) in enumerate(zip(k1, k2, strict=True))
                   if not (i < len(self.parameters) and self.parameters[i].upper() in comments))

    def find_key(self, key: object) -> int | None:
        for index, (old_key, _) in enumerate(self.entries):
            if self.equal_keys(key, old_key):
                return index
        return None

    def add(self, key: object, value: object) -> None:
        if self.find_key(key) is not None:
            raise InsertionError(f"{self.name} already contains {key!r}")
        self.entries.append([key, value])
        self.entries.sort(key=_entry_sort_key)

    def replace(self, key: object, value: object) -> None:
        index = self.find_key(key)
        if index is None:
            raise InsertionError(f"{self.name} does not contain {key!r}")
        del self.entries[index]
        self.add(key, value)

    def match_item(self, key: object) -> tuple[tuple[str, str], ...]:
        if self.is_dated:
            if len(self.parameters) == 1:
                return ((self.parameters[0], key),)
            sep = "." if self.name == "VersionAfter" else None
            return tuple(zip(self.parameters, str(key).split(sep), strict=False))
        fields = key if isinstance(key, tuple) else (key,)
        return tuple(zip(self.parameters, [str(x) for x in fields], strict=False))

    # -- queries

    def reference_names(self) -> list[str]:
        names: set[str] = set()
        for _, value in self.entries:
            if isinstance(value, SelectorNode):
                names.update(value.reference_names())
            elif isinstance(value, str):
                names.add(value)
            elif isinstance(value, tuple):
                names.update(str(v) for v in value)
            elif isinstance(value, dict):
                names.update(str(v) for v in value.values())
        return sorted(names)

    def file_matches(self, filename: str, sofar: tuple = ()) -> list[tuple]:
        matches = []
        for key, value in self.entries:
            here = sofar + (self.match_item(key),)
            if isinstance(value, SelectorNode):
                matches += value.file_matches(filename, here)
            elif value == filename:
                matches.append(here)
        return sorted(matches)

    def conditioned_keys(self) -> list[tuple[str, ...]]:
        """This Match's keys as CRDS matches them: substitutions made, values conditioned."""
        subs = self.rmap.substitutions
        keys = []
        for key, _ in self.entries:
            fields = list(key) if isinstance(key, tuple) else [key]
            for index, name in enumerate(self.parameters):
                table = subs.get(name)
                if table and index < len(fields) and isinstance(fields[index], str) \
                        and fields[index] in table:
                    fields[index] = table[fields[index]]
            keys.append(condition_match_key(tuple(fields)))
        return keys

    # -- changes

    def delete(self, terminal: str) -> int:
        deleted = 0
        for index in range(len(self.entries) - 1, -1, -1):
            value = self.entries[index][1]
            if value == terminal:
                del self.entries[index]
                deleted += 1
            elif isinstance(value, SelectorNode):
                deleted += value.delete(terminal)
                if not value.reference_names():
                    del self.entries[index]
        return deleted

    def insert(self, header: Mapping[str, object], value: str, parkey: tuple, classes: tuple,
               valid_values: Mapping[str, Sequence[str]]) -> None:
        key = make_key(self.name, header, parkey[0])
        self.validate_key(key, valid_values)
        index = self.find_key(key)
        if len(classes) > 1:
            if index is None:
                self.add(key, self.rmap.create_path(header, value, parkey[1:], classes[1:]))
            else:
                old_key, old_value = self.entries[index]
                if isinstance(old_value, SelectorNode):
                    old_value.insert(header, value, parkey[1:], classes[1:], valid_values)
                else:
                    self.replace(old_key, self.rmap.create_path(header, value, parkey[1:],
                                                                classes[1:]))
        elif index is None:
            self.add(key, value)
        else:
            self.replace(key, value)

    def validate_key(self, key: object, valid_values: Mapping[str, Sequence[str]]) -> None:
        if self.is_dated:
            if self.name == "VersionAfter":
                return
            try:
                reformat_date(str(key))
            except DateError as exc:
                raise InsertionError(
                    f"{self.name} invalid date/time format for {self.parameters!r} "
                    f"value={key!r}: {exc}") from None
            return
        if not self.is_match:
            return
        fields = key if isinstance(key, tuple) else (key,)
        if len(fields) != len(self.parameters):
            raise InsertionError(f"wrong length for parameter list {self.parameters!r} "
                                 f"for key {fields!r}")
        for index, name in enumerate(self.parameters):
            if name.upper() in self.rmap.comment_parkeys or name not in valid_values:
                continue
            for value in glob_list(str(fields[index])):
                _validate_value(name, value, valid_values[name], self.rmap.substitutions)
        conditioned = tuple(condition_value(k) for k in fields)
        if self.rmap.observatory == "hst" and self.rmap.merge_overlaps:
            return  # CRDS only notes equal-weight overlaps for HST, where they are merged
        for other in self.conditioned_keys():
            if conditioned != other and match_superset(other, conditioned) \
                    and not different_match_weight(conditioned, other):
                raise InsertionError(
                    f"Match case {conditioned!r} is an equal weight special case of "
                    f"{other!r}: for some parameter sets both matches are equally good. "
                    "Regenerate the reference with parameter values that coincide with "
                    "an existing category.")


def _validate_value(name: str, value: str, valid: Sequence[str], substitutions: Mapping) -> None:
    """Is an rmap match value allowed by the site's valid values (CRDS, runtime=False)?"""
    if value in valid or condition_value(value) in valid or not valid:
        return
    if value.startswith("NOT"):
        _validate_value(name, value[3:].strip(), valid, substitutions)
        return
    if esoteric_key(value) or value in ("*", "ANY", "N/A"):
        return
    if value.lower().startswith("between"):
        parts = value.split()
        for part in parts[1:3]:
            _validate_value(name, part, valid, substitutions)
        return
    if len(valid) == 1 and ":" in valid[0]:
        try:
            low, high = (float(x) for x in valid[0].split(":"))
            if low <= float(value) <= high:
                return
        except ValueError:
            pass
        raise InsertionError(f"parameter={name!r} value={value!r} is not in range {valid[0]}")
    table = substitutions.get(name, {})
    if value in table:
        _validate_value(name, str(table[value]), valid, substitutions)
        return
    raise InsertionError(f"parameter={name!r} value={value!r} is not in {list(valid)!r}")


def make_key(selector: str, header: Mapping[str, object], parameters: Sequence[str]) -> object:
    """The raw key a reference gets in a selector of kind `selector` (as CRDS writes it)."""
    try:
        values = [header[par] for par in parameters]
    except KeyError as exc:
        raise InsertionError(f"the reference header has no value for {exc.args[0]!r}") from None
    if selector in ("UseAfter", "VersionAfter", "ClosestTime"):
        return " ".join(str(v) for v in values)
    key = tuple(glob_compress(str(v)) for v in values)
    return key[0] if len(key) == 1 else key


def match_superset(general: Sequence[str], specific: Sequence[str]) -> bool:
    """Does match key `general` match whenever `specific` does (CRDS's match_superset)?"""
    for v1, v2 in zip(general, specific, strict=False):
        if v1 == v2 or v1 == "*" or v2 == "N/A" or (v1 == "N/A" and v2 == "*"):
            continue
        if v2 == "*":
            return False
        s1, s2 = set(glob_list(v1)), set(glob_list(v2))
        if s1 > s2:
            continue
        return False
    return True


def different_match_weight(subkey: Sequence[str], superkey: Sequence[str]) -> bool:
    """Do the two keys match with different weights (N/A in one but not the other)?"""
    sub = sup = len(subkey)
    for a, b in zip(subkey, superkey, strict=False):
        if a == "N/A" and b != "N/A":
            sub -= 1
        elif b == "N/A" and a != "N/A":
            sup -= 1
    return sub != sup


class EditableRmap:
    """An rmap being rewritten: its header, comment and a mutable selector tree."""

    def __init__(self, parsed: ParsedMapping) -> None:
        self.filename = parsed.filename
        self.header = dict(parsed.header)
        self.comment = parsed.comment
        for key in ("mapping", "parkey", "name", "derived_from", "observatory", "instrument",
                    "filekind"):
            if key not in self.header:
                raise MappingError(f"{self.filename}: required header key {key!r} is missing")
        if str(self.header["mapping"]).upper() != "REFERENCE":
            raise MappingError(f"{self.filename}: not a reference mapping (.rmap)")
        if not isinstance(parsed.selector, Call) or parsed.selector.name == "dict":
            raise MappingError(f"{self.filename}: an rmap selector must be Match(...), "
                               "UseAfter(...), ...")
        parkey = self.header["parkey"]
        self.parkey = tuple(parkey) if isinstance(parkey, (tuple, list)) else (parkey,)
        self.classes = tuple(self.header.get("classes", ("Match", "UseAfter")))
        self.observatory = str(self.header["observatory"]).lower()
        self.instrument = str(self.header["instrument"]).lower()
        self.comment_parkeys = tuple(str(n).upper() for n in self.header.get("comment_parkeys", ()))
        self.merge_overlaps = str(self.header.get("merge_overlaps", "TRUE")).upper() in ("TRUE", "1")
        self.substitutions = dict(DEFAULT_SUBSTITUTIONS)
        self.substitutions.update(self.header.get("substitutions", {}) or {})
        self.root = SelectorNode.from_call(parsed.selector, self)

    @property
    def name(self) -> str:
        return str(self.header["name"]).lower()

    def parameters(self, level: int) -> tuple[str, ...]:
        params = self.parkey[level] if level < len(self.parkey) else ()
        return tuple(params) if isinstance(params, (tuple, list)) else (params,)

    def create_path(self, header: Mapping[str, object], value: str, parkey: tuple,
                    classes: tuple) -> object:
        if not classes:
            return value
        if not parkey:
            raise InsertionError(f"{self.filename}: 'classes' nests deeper than 'parkey'")
        key = make_key(classes[0], header, parkey[0])
        nested = self.create_path(header, value, parkey[1:], classes[1:])
        return SelectorNode(classes[0], tuple(parkey[0]), [[key, nested]], self)

    # -- parameters

    def required_parkeys(self) -> list[str]:
        keys: list[str] = []
        for level in self.parkey:
            keys += list(level) if isinstance(level, (tuple, list)) else [level]
        switch = str(self.header.get("reffile_switch", "NONE")).upper()
        if switch != "NONE":
            keys.append(switch)
        keys += [str(k) for k in self.header.get("extra_keys", ())]
        keys += list(OBSERVATORY_EXTRA_KEYS.get(self.observatory, ()))
        return keys

    def extra_parkeys(self) -> list[str]:
        extra = [str(k) for k in self.header.get("extra_keys", ())]
        switch = str(self.header.get("reffile_switch", "NONE")).upper()
        if switch != "NONE":
            extra.append(switch)
        return extra

    def reference_parkeys(self) -> list[str]:
        keys = self.required_parkeys()
        for reference, dataset in dict(self.header.get("reference_to_dataset", {}) or {}).items():
            if dataset in keys:
                keys.append(str(reference))
        return sorted(set(keys))

    def file_matches(self, filename: str) -> list[tuple]:
        sofar = ((("observatory", self.observatory), ("instrument", self.instrument),
                  ("filekind", str(self.header["filekind"]).lower())),)
        return self.root.file_matches(filename, sofar)

    def text(self) -> str:
        parsed = ParsedMapping(filename=self.filename, header=self.header,
                               selector=self.root.to_call(), comment=self.comment)
        return rewrite_text(parsed)


def load_rmap(path: str | os.PathLike, verify: bool = False) -> EditableRmap:
    """The rmap at `path`, ready to edit (`verify`: its sha1sum must match its text)."""
    text = read_mapping_text(path)
    parsed = parse_mapping(text, str(path))
    if verify:
        verify_checksum(text, parsed.header, os.path.basename(str(path)))
    return EditableRmap(parsed)
