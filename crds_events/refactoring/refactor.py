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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from pprint import pformat

from crds_events.certify.tpn import tpn_constraints
from crds_events.files.dataset_keys import JWST_PATTERN_TRANSLATIONS, reference_to_dataset
from crds_events.files.errors import ReferenceFileError
from crds_events.files.headers import read_header as read_file_header
from crds_events.refactoring.editable_rmap import EditableRmap, InsertionError, load_rmap
from crds_events.rules.conditioning import condition_header, condition_value
from crds_events.rules.expressions import (
    EvaluationError,
    ExpressionError,
    compile_expression,
    expression_env,
)
from crds_events.rules.parse import MappingError
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


# ----------------------------------------------------------------------------- headers


def prepare_reference_header(rmap: EditableRmap, header: Mapping[str, object], filename: str,
                             substitutions: Substitutions | None,
                             log: RefactorLog | None = None) -> dict[str, object]:
    """The match values a reference header gives in `rmap` (steps 1-4 of the module doc)."""
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


def _irrelevant_to_na(rmap: EditableRmap, header: dict[str, object]) -> dict[str, object]:
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
    rmap = load_rmap(old_rmap)
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


# ----------------------------------------------------------------------------- operations


def _write(rmap: EditableRmap, new_rmap: str | os.PathLike) -> tuple[Path, str]:
    text = rmap.text()
    path = Path(new_rmap)
    path.write_text(text, encoding="utf-8")
    return path, text


def _failed(log: RefactorLog, exc: BaseException) -> RefactorResult:
    log.error(f"Refactoring operation FAILED : {exc}")
    return RefactorResult(None, None, log)


def _operation_errors() -> tuple[type[BaseException], ...]:
    """What a refactor reports as FAILED (anything else is a bug and propagates)."""
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
    read_header = read_header or read_file_header
    try:
        rmap = load_rmap(old_rmap)
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
        rmap = load_rmap(old_rmap)
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
        rmap = load_rmap(old_rmap, verify=True)
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
        rmap = load_rmap(old_rmap, verify=True)
        if key not in rmap.header:
            raise MappingError(f"header key {key!r} is not in {os.path.basename(str(old_rmap))}")
        del rmap.header[key]
        path, text = _write(rmap, new_rmap)
    except _operation_errors() as exc:
        return _failed(log, exc)
    return RefactorResult(path, text, log)
