"""Rewrite an rmap: insert or delete references, set or delete header keys (`crds refactor`).

`insert` turns each reference's header into the rmap's match values, as CRDS does:

1. read the reference header; rmap parameters it lacks are `UNDEFINED`;
2. translate reference keywords to dataset keywords (`USEAFTER` -> `DATE-OBS`/`TIME-OBS`,
   JWST `P_*` patterns, the rmap's `reference_to_dataset`);
3. expand the site's wildcards (`substitutions.dat`);
4. condition the values (HST), set parameters whose `parkey_relevance` is false to `N/A`,
   and the rmap's `extra_keys` and `reffile_switch` to `N/A`;
5. walk the selector tree: an equal match case (compared conditioned) gets a new or replaced
   UseAfter date; otherwise a new match case with a nested UseAfter is added. A reference
   without USEAFTER gives the date `UNDEFINED UNDEFINED`, which only a new case accepts.

Two inserted references with identical matching criteria are an error (the rmap is still
written, as CRDS writes it). `derived_from` becomes the old rmap's name; the output is in
canonical form with a fresh sha1sum. Where CRDS refuses a change, so does this module:
nothing is written and the error says why.

Results carry CRDS-like log messages (level, text) and counts; exit status 1 on any error.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from pprint import pformat

from crds_events.rules.canonical import rewrite_text
from crds_events.rules.checksum import read_mapping_text, verify_checksum
from crds_events.rules.conditioning import condition_header, condition_match_key, condition_value
from crds_events.rules.dates import DateError, reformat_date
from crds_events.rules.expressions import (
    EvaluationError,
    ExpressionError,
    compile_expression,
    expression_env,
)
from crds_events.rules.parse import Call, MappingError, ParsedMapping, parse_mapping
from crds_events.rules.patterns import esoteric_key, glob_compress, glob_list
from crds_events.rules.substitutions import Substitutions

__all__ = [
    "InsertionError",
    "RefactorLog",
    "RefactorResult",
    "del_header",
    "delete_references",
    "insert_references",
    "set_header",
    "valid_values_from_tpns",
]

#: Keys JWST adds to every rmap's required parameters (crds.jwst.extra_keys).
OBSERVATORY_EXTRA_KEYS = {"jwst": ("META.VISIT.TSOVISIT", "META.INSTRUMENT.LAMP_STATE")}

#: Rmap match values that hold a file for "don't care" cases.
DEFAULT_SUBSTITUTIONS = {"META.SUBARRAY.NAME": {"GENERIC": "N/A"}, "SUBARRAY": {"GENERIC": "N/A"}}


class InsertionError(MappingError):
    """A reference cannot be inserted (invalid or ambiguous match values, a bad date)."""


# ----------------------------------------------------------------------------- log


@dataclass
class RefactorLog:
    """CRDS-style messages: (level, text), level one of INFO / WARNING / ERROR."""

    messages: list[tuple[str, str]] = field(default_factory=list)

    def info(self, text: str) -> None:
        self.messages.append(("INFO", text))

    def warning(self, text: str) -> None:
        self.messages.append(("WARNING", text))

    def error(self, text: str) -> None:
        self.messages.append(("ERROR", text))

    def count(self, level: str) -> int:
        return sum(1 for lvl, _ in self.messages if lvl == level)

    @property
    def errors(self) -> int:
        return self.count("ERROR")

    def lines(self) -> list[str]:
        """The messages and the closing counts, one `LEVEL - text` line each."""
        lines = [f"CRDS-EVENTS - {level} - {text}" for level, text in self.messages]
        lines += [f"CRDS-EVENTS - INFO - {self.errors} errors",
                  f"CRDS-EVENTS - INFO - {self.count('WARNING')} warnings",
                  f"CRDS-EVENTS - INFO - {self.count('INFO')} infos"]
        return lines


@dataclass
class RefactorResult:
    """What a refactor operation did: the new text (None if nothing was written) and its log."""

    output: Path | None
    text: str | None
    log: RefactorLog

    @property
    def exit_code(self) -> int:
        return 1 if self.log.errors else 0


# ----------------------------------------------------------------------------- rmap model


def _entry_sort_key(item: Sequence[object]) -> tuple[str, ...]:
    key = item[0]
    return tuple(str(f) for f in key) if isinstance(key, tuple) else (str(key),)


class _Node:
    """A mutable selector (Match, UseAfter, ...) with raw keys in CRDS's sorted order."""

    def __init__(self, name: str, parameters: tuple[str, ...], entries: list[list[object]],
                 rmap: _Rmap) -> None:
        self.name = name
        self.parameters = parameters
        self.entries = sorted(entries, key=_entry_sort_key)
        self.rmap = rmap

    @classmethod
    def from_call(cls, call: Call, rmap: _Rmap, level: int = 0) -> _Node:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            items = call.as_dict().items()
        entries = [[key, cls.from_call(value, rmap, level + 1) if isinstance(value, Call) else value]
                   for key, value in items]
        return cls(call.name, rmap.parameters(level), entries, rmap)

    def to_call(self) -> Call:
        return Call(self.name, tuple((key, value.to_call() if isinstance(value, _Node) else value)
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
            if isinstance(value, _Node):
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
            if isinstance(value, _Node):
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
            elif isinstance(value, _Node):
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
                if isinstance(old_value, _Node):
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


class _Rmap:
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
        self.root = _Node.from_call(parsed.selector, self)

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
        return _Node(classes[0], tuple(parkey[0]), [[key, nested]], self)

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


def _load_rmap(path: str | os.PathLike, verify: bool = False) -> _Rmap:
    text = read_mapping_text(path)
    parsed = parse_mapping(text, str(path))
    if verify:
        verify_checksum(text, parsed.header, os.path.basename(str(path)))
    return _Rmap(parsed)


# ----------------------------------------------------------------------------- headers


def prepare_reference_header(rmap: _Rmap, header: Mapping[str, object], filename: str,
                             substitutions: Substitutions | None,
                             log: RefactorLog | None = None) -> dict[str, object]:
    """The match values a reference header gives in `rmap` (steps 1-4 of the module doc)."""
    from crds_events.files.dataset_keys import JWST_PATTERN_TRANSLATIONS, reference_to_dataset

    header = {str(k).upper(): v for k, v in header.items()}
    for key in rmap.reference_parkeys():
        if header.get(key) in (None, "UNDEFINED"):
            header[key] = "UNDEFINED"
    to_dataset = dict(rmap.header.get("reference_to_dataset", {}) or {})
    translated = reference_to_dataset(header, rmap.observatory, reference_to_dataset=to_dataset,
                                      filename=filename)
    if log is not None and rmap.observatory != "hst":
        table = dict(JWST_PATTERN_TRANSLATIONS) if rmap.observatory == "jwst" else {}
        table.update({str(k).upper(): str(v).upper() for k, v in to_dataset.items()})
        for rkey in sorted(table):
            dkey = table[rkey]
            if rkey in header and header[rkey] not in (None, "UNDEFINED") \
                    and header[rkey] != header.get(dkey):
                log.info(f"Setting {dkey!r} = {header.get(dkey, 'UNDEFINED')!r} to value of "
                         f"{rkey!r} = {header[rkey]!r}")
    required = rmap.required_parkeys()
    if substitutions is not None:
        translated = substitutions.expand(rmap.instrument, translated, required)
    if rmap.observatory == "hst":
        translated = condition_header(translated)
    translated = _irrelevant_to_na(rmap, translated)
    for key in rmap.extra_parkeys():
        translated[key] = "N/A"
    return translated


def _irrelevant_to_na(rmap: _Rmap, header: dict[str, object]) -> dict[str, object]:
    """Parameters whose `parkey_relevance` expression is false become N/A."""
    relevance = dict(rmap.header.get("parkey_relevance", {}) or {})
    relevance.update({name.lower(): "keep_comments" for name in rmap.comment_parkeys})
    if not relevance:
        return header
    required = rmap.required_parkeys()
    env_header = {str(k).upper(): v for k, v in header.items()}
    for key in required:
        if env_header.get(key) in (None, "UNDEFINED"):
            env_header[key] = "UNDEFINED"
    env = expression_env(env_header)
    env["keep_comments"] = True
    result = dict(header)
    lowered = {str(k).lower(): v for k, v in relevance.items()}
    for parkey in required:
        source = lowered.get(parkey.lower())
        if source is None:
            continue
        try:
            relevant = compile_expression(str(source), required).evaluate(env)
        except (ExpressionError, EvaluationError) as exc:
            raise InsertionError(f"parkey_relevance for {parkey!r}: {exc}") from None
        if not relevant:
            result[parkey] = "N/A"
    return result


def valid_values_from_tpns(old_rmap: str | os.PathLike, tpn_dir: str | os.PathLike
                           ) -> dict[str, list[str]]:
    """The values a site's `_ld.tpn` files allow for each of the rmap's parameters.

    Simple constraints only (value lists and ranges; integer ranges listed value by value),
    conditioned as rmap values are - what CRDS checks inserted match values against.
    """
    from crds_events.certify.tpn import tpn_constraints

    rmap = _load_rmap(old_rmap)
    required = set(rmap.required_parkeys())
    valid: dict[str, list[str]] = {}
    for constraint in tpn_constraints(tpn_dir, rmap.observatory, rmap.instrument,
                                      str(rmap.header["filekind"]), rmap=True):
        if constraint.name not in required or constraint.condition or constraint.expression:
            continue
        if constraint.values:
            values = list(constraint.values)
        elif constraint.value_range is not None:
            low, high = constraint.value_range
            if float(low).is_integer() and float(high).is_integer():
                values = [str(v) for v in range(int(low), int(high) + 1)]
            else:
                values = [f"{low}:{high}"]
        else:
            values = []
        valid[constraint.name] = [condition_value(v) for v in values]
    return valid


def _read_reference_header(path: str | os.PathLike) -> dict[str, object]:
    from crds_events.files.headers import read_header

    return read_header(path)


# ----------------------------------------------------------------------------- operations


def _write(rmap: _Rmap, new_rmap: str | os.PathLike) -> tuple[Path, str]:
    text = rmap.text()
    path = Path(new_rmap)
    path.write_text(text, encoding="utf-8")
    return path, text


def _failed(log: RefactorLog, exc: BaseException) -> RefactorResult:
    log.error(f"Refactoring operation FAILED : {exc}")
    return RefactorResult(None, None, log)


def _operation_errors() -> tuple[type[BaseException], ...]:
    """What a refactor reports as FAILED (anything else is a bug and propagates)."""
    from crds_events.files.errors import ReferenceFileError

    return (MappingError, ReferenceFileError, OSError, ValueError, KeyError, IndexError)


def insert_references(old_rmap: str | os.PathLike, new_rmap: str | os.PathLike,
                      references: Iterable[str | os.PathLike], *,
                      substitutions: Substitutions | None = None,
                      valid_values: Mapping[str, Sequence[str]] | None = None,
                      read_header: Callable[[str | os.PathLike], Mapping[str, object]] | None = None,
                      ) -> RefactorResult:
    """Insert `references` into `old_rmap`, writing `new_rmap` (crds refactor insert).

    `valid_values` (parameter -> allowed values, e.g. from a site's `_ld.tpn` files) makes
    invalid match values an error, as in CRDS; without it they are not checked.
    """
    log = RefactorLog()
    read_header = read_header or _read_reference_header
    try:
        rmap = _load_rmap(old_rmap)
        old_basename = os.path.basename(str(old_rmap))
        inserted_cases: dict[tuple, str] = {}
        for reference in references:
            basename = os.path.basename(str(reference))
            log.info(f"Inserting {basename} into {rmap.name!r}")
            header = prepare_reference_header(rmap, read_header(reference), basename,
                                              substitutions, log)
            try:
                rmap.root.insert(header, basename, rmap.parkey, rmap.classes, valid_values or {})
            except InsertionError as exc:
                raise InsertionError(f"Failed inserting {basename!r} into rmap {rmap.name!r}: "
                                     f"{exc}") from None
            for full_case in rmap.file_matches(basename):
                case = full_case[1:]
                if case not in inserted_cases:
                    inserted_cases[case] = basename
                else:
                    log.error(
                        "----------------------------------------\n"
                        f"Both {basename!r} and {inserted_cases[case]!r} identically match "
                        f"case:\n {pformat(case)} \n"
                        "Each reference would replace the other in the rmap.\n"
                        "Either reference file matching parameters need correction\n"
                        "or additional matching parameters should be added to the rmap\n"
                        "to enable CRDS to differentiate between the two files.")
        rmap.header["derived_from"] = old_basename
        path, text = _write(rmap, new_rmap)
    except _operation_errors() as exc:
        return _failed(log, exc)
    return RefactorResult(path, text, log)


def delete_references(old_rmap: str | os.PathLike, new_rmap: str | os.PathLike,
                      references: Iterable[str | os.PathLike]) -> RefactorResult:
    """Delete every occurrence of `references` (by basename) from `old_rmap` -> `new_rmap`.

    A reference that is not in the rmap is an error and nothing is written.
    """
    log = RefactorLog()
    try:
        rmap = _load_rmap(old_rmap)
        for reference in references:
            shown = str(reference) if os.path.dirname(str(reference)) else f"./{reference}"
            log.info(f"Deleting {shown!r} from {rmap.name!r}")
            terminal = os.path.basename(str(reference))
            if rmap.root.delete(terminal) == 0:
                raise MappingError(f"Terminal {terminal!r} could not be found and deleted.")
        rmap.header["derived_from"] = os.path.basename(str(old_rmap))
        text = rmap.text()
        for reference in references:
            if os.path.basename(str(reference)) in text:
                raise MappingError(f"Rules update failure. Deleted {reference!r} still appears "
                                   "in new rmap.")
        path = Path(new_rmap)
        path.write_text(text, encoding="utf-8")
    except _operation_errors() as exc:
        return _failed(log, exc)
    return RefactorResult(path, text, log)


def set_header(old_rmap: str | os.PathLike, new_rmap: str | os.PathLike, key: str,
               value: str) -> RefactorResult:
    """Set header `key` to the string `value` (the old rmap's checksum must verify)."""
    log = RefactorLog()
    try:
        rmap = _load_rmap(old_rmap, verify=True)
        rmap.header[key] = value
        path, text = _write(rmap, new_rmap)
    except _operation_errors() as exc:
        return _failed(log, exc)
    return RefactorResult(path, text, log)


def del_header(old_rmap: str | os.PathLike, new_rmap: str | os.PathLike,
               key: str) -> RefactorResult:
    """Delete header `key` (which must exist; the old rmap's checksum must verify)."""
    log = RefactorLog()
    try:
        rmap = _load_rmap(old_rmap, verify=True)
        if key not in rmap.header:
            raise MappingError(f"header key {key!r} is not in {os.path.basename(str(old_rmap))}")
        del rmap.header[key]
        path, text = _write(rmap, new_rmap)
    except _operation_errors() as exc:
        return _failed(log, exc)
    return RefactorResult(path, text, log)
