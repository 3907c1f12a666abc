"""Certify a rules file (.pmap, .imap, .rmap): the checks CRDS's certify runs on mappings.

``check_mapping(path)`` reports, as Messages naming the file, where and why:

1. **syntax**: the text is a safe CRDS mapping (parse errors name the line and construct);
   the header has the keys its kind needs and well-formed relevance expressions;
2. **checksum**: the stored ``sha1sum`` matches the text (an error here; CRDS only warns);
3. **duplicates**: a header key or selector key written twice (CRDS keeps the last one
   silently when it loads the file; certify names the key, lines and both values);
4. **names**: the file name is a CRDS mapping name, agrees with the header's observatory,
   instrument, filekind and mapping kind; the ``name`` header is the file name; every file
   the mapping names is a plain CRDS file name of the observatory's patterns (never a path:
   a cache would open `<CRDS_PATH>/references/<obs>/../../x`), an error otherwise;
5. **observatory/instrument/filekind** are ones the observatory has;
6. **children** of a pmap/imap exist (in `mappings_dir`, the mapping's own directory or the
   `context`'s directory) and agree with their parent (kind, observatory, instrument, type);
7. for an rmap, **match values** are valid per the site's ``_ld.tpn`` files (`tpn_dir`) or,
   without one, our built-in specs; dates, versions and numbers of the other selectors are
   well-formed; **equal-weight overlaps** are reported as CRDS reports them
   (``match_values``);
8. with a `comparison_context`, the differences from the mapping it replaces (``changes``).

It never raises for a bad file; the checks that cannot run after an earlier failure are
skipped (a file that does not parse has no keys to check).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from crds_events.certify.changes import comparison_changes
from crds_events.certify.match_values import ValueChecker, check_overlaps, check_selector_keys
from crds_events.certify.result import FileResult
from crds_events.certify.specs import constraints_for
from crds_events.certify.tpn import TpnError, ld_valid_values
from crds_events.files.reftypes import hst_types
from crds_events.rules.checksum import verify_checksum
from crds_events.rules.conditioning import condition_value, is_na_value, is_omit_value
from crds_events.rules.document import MappingDocument, header_value, load_mapping_text
from crds_events.rules.naming import NamingError, parse_mapping_name, rules_name_problem
from crds_events.rules.parse import (
    Call,
    MappingError,
    UnsafeNameError,
    duplicate_keys,
    parse_mapping,
)
from crds_events.rules.parsed import named_files

OBSERVATORY_INSTRUMENTS = {
    "jwst": ("fgs", "miri", "nircam", "niriss", "nirspec", "system"),
    "roman": ("wfi", "system"),
}
_KIND_EXTENSION = {"pipeline": ".pmap", "instrument": ".imap", "reference": ".rmap"}
_CHILD_KIND = {"pipeline": "instrument", "instrument": "reference"}


def check_mapping(
    path: str | os.PathLike,
    *,
    context: str | os.PathLike | None = None,
    comparison_context: str | os.PathLike | None = None,
    mappings_dir: str | os.PathLike | None = None,
    tpn_dir: str | os.PathLike | None = None,
    original_name: str | None = None,
    verbose: bool = False,
    comparison_cache: dict | None = None,
) -> FileResult:
    """Certify the mapping at `path`; returns its FileResult (never raises for bad files).

    `comparison_cache` (any dict, reused across calls) keeps the comparison context loaded.

    `original_name` is the name the file was delivered as (for a temporary upload path).
    `verbose` turns HST equal-weight overlaps from info into warnings, as CRDS shows them.
    """
    path = os.fspath(path)
    name = os.path.basename(original_name or path)
    result = FileResult(path)
    applied = result.constraints
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        result.add("error", None, f"cannot read mapping: {exc.strerror or exc}")
        return result
    except UnicodeDecodeError as exc:
        result.add("error", None, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
        return result

    applied.append("syntax: safe CRDS mapping grammar (header, comment, selector of literals)")
    applied.append("header: the keys this kind of mapping requires; relevance expressions")
    try:
        document = load_mapping_text(text, name, ignore_checksum=True)
    except MappingError as load_error:
        try:  # which stage failed: the text itself, or what its header says?
            parsed = parse_mapping(text, name)
        except UnsafeNameError as exc:
            for line, reason in exc.problems:
                result.add("error", "name", f"line {line}: {reason}" if line else reason)
            return result
        except MappingError as exc:
            result.add("error", "syntax", str(exc))
            return result
        result.add("error", "header", str(load_error))
        _check_duplicates(parsed.header, parsed.header_duplicates, parsed.selector, result)
        return result
    parsed = document.parsed

    applied.append("sha1sum: matches the text (CRDS checksum rule)")
    try:
        verify_checksum(text, parsed.header, name)
    except MappingError as exc:
        result.add("error", "sha1sum", str(exc))
    applied.append("duplicates: no header or selector key written twice")
    _check_duplicates(parsed.header, parsed.header_duplicates, parsed.selector, result)
    applied.append("names: file name, 'name' header, observatory/instrument/filekind agree")
    _check_names(name, document, result)
    _check_named_files(document, result)
    _check_known(document, result)

    if document.kind in _CHILD_KIND:
        applied.append("children: every child mapping exists and agrees with its parent")
        dirs = _search_dirs(path, mappings_dir, context)
        _check_children(document, dirs, result)
    else:
        _check_rmap(document, tpn_dir, verbose, result)

    if comparison_context is not None:
        applied.append(f"changes: differences from the mapping it replaces in "
                       f"{os.path.basename(os.fspath(comparison_context))}")
        try:
            changes = comparison_changes(path, document.header, document.kind, comparison_context,
                                         _search_dirs(path, mappings_dir, context),
                                         cache=comparison_cache)
        except MappingError as exc:
            result.add("error", "comparison", f"cannot compare with the comparison context: {exc}")
        else:
            for level, reason in changes:
                result.add(level, "comparison", reason)  # type: ignore[arg-type]
    return result


def check_mappings(paths: Iterable[str | os.PathLike], **options) -> list[FileResult]:
    """check_mapping() for each path, same options."""
    return [check_mapping(path, **options) for path in paths]


# ----------------------------------------------------------------------------- duplicates


def _check_duplicates(header: dict, header_duplicates: tuple[str, ...], selector: Call,
                      result: FileResult) -> None:
    for key in header_duplicates:
        result.add("error", "header", f"duplicate entry at header {key!r} (CRDS keeps the last "
                                      f"one, {header.get(key)!r})")
    stack: list[tuple[Call, str]] = [(selector, "selector")]
    while stack:
        call, where = stack.pop()
        for key, lines in duplicate_keys(call).items():
            values = [value for k, value in call.entries if k == key]
            shown = " vs. ".join(_show(value) for value in values)
            at = ", ".join(str(line) for line in lines if line)
            result.add("error", "selector",
                       f"duplicate entry at {where} {call.name} {key!r}"
                       f"{f' (lines {at})' if at else ''}: {shown}")
        for key, value in reversed(call.entries):
            if isinstance(value, Call):
                stack.append((value, f"{where} {call.name}({key!r})"))


def _show(value: object) -> str:
    if isinstance(value, Call):
        return f"{value.name}({{...{len(value.entries)} entries}})"
    return repr(value)


# ----------------------------------------------------------------------------- names


def _check_names(name: str, document: MappingDocument, result: FileResult) -> None:
    header = document.header
    kind = header_value(header, "mapping")
    extension = os.path.splitext(name)[1]
    if kind in _KIND_EXTENSION and extension in _KIND_EXTENSION.values() \
            and _KIND_EXTENSION[kind] != extension:
        result.add("error", "mapping", f"header says mapping={str(header.get('mapping'))!r} "
                                       f"but the file is a {extension}")
    stated = header.get("name")
    if isinstance(stated, str) and os.path.basename(stated) != name:
        result.add("warning", "name", f"header name {stated!r} is not the file name {name!r}")
    try:
        parts = parse_mapping_name(name)
    except NamingError as exc:
        result.add("warning", "name", str(exc))
        return
    for field, from_name in (("observatory", parts.observatory),
                             ("instrument", parts.instrument)):
        value = document.get(field)
        if from_name is not None and value is not None and str(value) != from_name:
            result.add("error", field, f"file name says {field} {from_name!r} but the header "
                                       f"says {str(header.get(field))!r}")
    filekind = document.filekind
    if parts.filekind is not None and filekind is not None and parts.filekind != filekind \
            and not parts.filekind.startswith(f"{filekind}_"):
        result.add("warning", "filekind", f"file name says filekind {parts.filekind!r} but "
                                        f"the header says {str(header.get('filekind'))!r}")


def _check_named_files(document: MappingDocument, result: FileResult) -> None:
    """Every file the selector names is a CRDS file name of this observatory (the parser
    already refused paths): a mapping name of the right kind in a pmap/imap, a reference
    name in an rmap."""
    observatory = document.observatory
    wanted = {"pipeline": ".imap", "instrument": ".rmap"}.get(document.kind)
    seen: set = set()
    for line, value in named_files(document.selector):
        if not isinstance(value, str) or value in seen or is_na_value(value) \
                or is_omit_value(value):
            continue
        seen.add(value)
        at = f"line {line}: " if line else ""
        reason = rules_name_problem(value, observatory)
        if reason is None:
            extension = os.path.splitext(value)[1]
            if wanted is not None and extension != wanted:
                reason = f"{value!r} is not a {wanted} name (a {document.kind} mapping names " \
                         f"{wanted} files)"
            elif wanted is None and extension in (".pmap", ".imap", ".rmap"):
                reason = f"{value!r} is a mapping name; an rmap names reference files"
        if reason is not None:
            result.add("error", "name", at + reason)


def _check_known(document: MappingDocument, result: FileResult) -> None:
    observatory = str(document.observatory)
    if observatory not in ("hst", "jwst", "roman"):
        result.add("error", "observatory", f"invalid observatory {observatory!r}")
        return
    instrument = document.instrument
    if instrument is None:
        return
    known = tuple(hst_types()) if observatory == "hst" else OBSERVATORY_INSTRUMENTS[observatory]
    if str(instrument) not in known:
        result.add("error", "instrument", f"invalid instrument {instrument!r} for "
                                          f"{observatory.upper()}: not one of {', '.join(known)}")
        return
    filekind = document.filekind
    if observatory == "hst" and filekind is not None:
        kinds = hst_types().get(str(instrument), {})
        if str(filekind) not in kinds:
            result.add("error", "filekind", f"invalid filekind {filekind!r} for "
                                            f"{str(instrument).upper()}")


# ----------------------------------------------------------------------------- children


def _search_dirs(path: str, mappings_dir: str | os.PathLike | None,
                 context: str | os.PathLike | None) -> list[Path]:
    dirs = [Path(mappings_dir)] if mappings_dir is not None else []
    dirs.append(Path(path).parent)
    if context is not None:
        dirs.append(Path(context).parent)
    return list(dict.fromkeys(dirs))


def _check_children(document: MappingDocument, dirs: list[Path], result: FileResult) -> None:
    """Each child a pmap/imap names exists and agrees with it (as CRDS validates contexts)."""
    child_kind = _CHILD_KIND[document.kind]
    field = "instrument" if document.kind == "pipeline" else "filekind"
    observatory = document.observatory
    for key, value in document.selector.entries:
        if not isinstance(value, str):
            result.add("error", "selector", f"{key!r} maps to {value!r}, not a mapping name")
            continue
        if is_na_value(value) or is_omit_value(value):
            continue
        base = os.path.basename(value)
        found = next((d / base for d in dirs if (d / base).is_file()), None)
        if found is None:
            result.add("error", "selector", f"child mapping {value!r} (for {key!r}) not found in "
                                            f"{', '.join(str(d) for d in dirs)}")
            continue
        try:
            child = _load_child(found)
        except MappingError as exc:
            result.add("error", "selector", f"child mapping {base!r} cannot be loaded: {exc}")
            continue
        if child.kind != child_kind:
            result.add("error", "selector", f"{base!r} (for {key!r}) is a {child.kind} mapping, "
                                            f"expected {child_kind}")
            continue
        if child.observatory != observatory:
            result.add("error", "observatory", f"{base!r} has observatory {child.observatory!r}, "
                                               f"this mapping {observatory!r}")
        if str(child.get(field)) != str(key).lower():
            result.add("error", field, f"{base!r} has {field} {child.get(field)!r} but "
                                       f"{document.name!r} files it under {key!r}")
        if document.kind == "instrument" and child.instrument != document.instrument:
            result.add("error", "instrument", f"{base!r} has instrument {child.instrument!r}, "
                                              f"this imap {document.instrument!r}")


_CHILD_CACHE: dict[tuple[str, float, int], MappingDocument] = {}


def _load_child(path: Path) -> MappingDocument:
    """A child mapping loaded for its header (checksum not verified), cached by mtime/size."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime, stat.st_size)
    if key not in _CHILD_CACHE:
        if len(_CHILD_CACHE) > 4096:
            _CHILD_CACHE.clear()
        with open(path, encoding="utf-8") as handle:
            _CHILD_CACHE[key] = load_mapping_text(handle.read(), path.name, ignore_checksum=True)
    return _CHILD_CACHE[key]


# ----------------------------------------------------------------------------- rmaps


def rmap_parkeys(header: Mapping[str, object]) -> list[str]:
    """The dataset keywords an rmap matches on (every parkey level, switch, extra keys)."""
    names: list[str] = []
    for level in header.get("parkey", ()) or ():  # type: ignore[union-attr]
        if isinstance(level, (tuple, list)):
            names += [str(name).upper() for name in level]
    switch = header.get("reffile_switch")
    if isinstance(switch, str) and switch.upper() != "NONE":
        names.append(switch.upper())
    names += [str(name).upper() for name in header.get("extra_keys", ()) or ()]  # type: ignore[union-attr]
    return list(dict.fromkeys(names))


def valid_match_values(observatory: str, instrument: str, filekind: str, parkeys: Iterable[str],
                       tpn_dir: str | os.PathLike | None = None) -> tuple[dict[str, list[str]], str]:
    """Allowed values per rmap parameter and where they came from: the site's ``_ld.tpn``
    files in `tpn_dir`, else the value lists of our built-in specs."""
    parkeys = [str(key).upper() for key in parkeys]
    if tpn_dir is not None:
        valid = ld_valid_values(tpn_dir, instrument, filekind, parkeys, observatory=observatory)
        return valid, f"_ld.tpn files in {os.fspath(tpn_dir)}"
    valid = {}
    for constraint in constraints_for(observatory, instrument, filekind):
        name = constraint.name.upper()
        if name in parkeys and constraint.values and constraint.keytype == "header" \
                and not constraint.condition:
            valid.setdefault(name, [condition_value(value) for value in constraint.values])
    return valid, "built-in specs"


def _check_rmap(document: MappingDocument, tpn_dir, verbose: bool, result: FileResult) -> None:
    header = document.header
    observatory = str(document.observatory)
    parkeys = rmap_parkeys(header)
    try:
        valid, source = valid_match_values(observatory, str(document.instrument),
                                           str(document.filekind), parkeys, tpn_dir)
    except TpnError as exc:
        result.add("error", "tpn", f"cannot read the match value constraints: {exc}")
        valid, source = {}, "none"
    for name in parkeys:
        if name in valid:
            shown = ", ".join(valid[name][:10]) + (", ..." if len(valid[name]) > 10 else "")
            result.constraints.append(f"{name} [match value] one of {shown or 'anything'}  ({source})")
        else:
            result.constraints.append(f"{name} [match value] unchecked (no constraint in {source})")
    result.constraints.append("selector keys: UseAfter dates, versions, numbers; file name choices")
    result.constraints.append("overlaps: no match case is an equal-weight special case of another")

    def add(level: str, where: str, reason: str) -> None:
        result.add(level, where, reason)  # type: ignore[arg-type]

    substitutions = header.get("substitutions")
    checker = ValueChecker(valid, substitutions if isinstance(substitutions, Mapping) else None)
    check_selector_keys(header, document.selector, checker, add)
    check_overlaps(header, document.selector, observatory, verbose, add)
