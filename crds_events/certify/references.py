"""Certify a reference file: readable, constraints satisfied, USEAFTER valid, checksums right.

``check_reference(path)`` reads the file's header once, works out its observatory,
instrument and type, gathers the constraints (our YAML specs by default, a site's .tpn
directory, or a list given by the caller), and reports every problem as a Message naming the
file, the keyword and the reason. It never raises for a bad file: unreadable, truncated or
garbage files are ERRORS in the result.

Rmap-aware checks (are the reference's matching values valid for the rmap's parameters?)
belong to the rules engine; they plug in through the `parkey_values` hook: a mapping from
dataset keyword to the allowed values, or a callable ``(keyword, value) -> reason | None``.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from crds_events.certify.constraints import Constraint
from crds_events.certify.expressions import (
    ConstraintExpressionError,
    evaluate,
    header_namespace,
    identifiers,
)
from crds_events.certify.fitsverify import run_fitsverify
from crds_events.certify.patterns import apply_pattern_keywords
from crds_events.certify.result import FileResult
from crds_events.certify.specs import constraints_for
from crds_events.certify.tpn import tpn_constraints
from crds_events.files.arrays import read_array_info
from crds_events.files.checksums import verify_checksum
from crds_events.files.dataset_keys import cross_strap, reference_to_dataset
from crds_events.files.dates import parse_date
from crds_events.files.errors import ReferenceFileError
from crds_events.files.formats import detect_format
from crds_events.files.headers import read_header
from crds_events.files.reftypes import reference_type

UNDEFINED = "UNDEFINED"
#: Hook for rmap-aware checks: allowed values per dataset keyword, or a callable returning a
#: reason string when (keyword, value) is not acceptable (None when it is).
ParkeyHook = Mapping[str, Iterable[str]] | Callable[[str, str], str | None]


def check_reference(
    path: str | os.PathLike,
    *,
    constraints: Iterable[Constraint] | None = None,
    tpn_dir: str | os.PathLike | None = None,
    observatory: str | None = None,
    original_name: str | None = None,
    parkey_values: ParkeyHook | None = None,
    run_fitsverify_program: bool = False,
) -> FileResult:
    """Certify the reference at `path`; returns its FileResult (never raises for bad files).

    Constraints: `constraints` if given, else those of the .tpn files in `tpn_dir` if given,
    else the built-in YAML specs, for the file's (observatory, instrument, filekind).
    `original_name` is the name the file was delivered as (for a temporary upload path).
    """
    path = os.fspath(path)
    result = FileResult(path)
    try:
        fmt = detect_format(path, original_name)
        header = read_header(path, original_name=original_name)
        kind = reference_type(original_name or path, header, observatory)
    except ReferenceFileError as exc:
        result.add("error", exc.keyword, exc.reason)
        return result
    if fmt == "fits":
        _check_fits_structure(path, result)
    if constraints is None:
        if tpn_dir is not None:
            constraints = tpn_constraints(tpn_dir, kind.observatory, kind.instrument, kind.filekind,
                                          kind.suffix)
        else:
            constraints = constraints_for(kind.observatory, kind.instrument, kind.filekind)
    constraints = list(constraints)
    result.constraints = [item.describe() for item in constraints]
    if kind.observatory == "jwst":
        header = cross_strap(header)
    if kind.observatory in ("jwst", "roman"):
        # CRDS checks a pattern keyword's or-list as the value of the keyword it stands
        # for (P_DETECT -> META.INSTRUMENT.DETECTOR), item by item; then cross-straps
        # again, so a target undefined in FITS spelling gets it too (P_BAND -> BAND).
        header = apply_pattern_keywords(header, kind.observatory, result)
    if kind.observatory == "jwst":
        header = cross_strap(header)
        header.setdefault("SUBARRAY", header.get("META.SUBARRAY.NAME", UNDEFINED))
        header.setdefault("EXP_TYPE", header.get("META.EXPOSURE.TYPE", UNDEFINED))
    _check_useafter(path, header, kind.observatory, result)
    namespace = _Namespace(path, header)
    for constraint in constraints:
        try:
            _apply(constraint, path, header, namespace, result)
        except ReferenceFileError as exc:
            result.add("error", constraint.name, exc.reason)
    if parkey_values is not None:
        check_parkey_values(path, header, kind.observatory, parkey_values, result)
    if fmt == "fits" and run_fitsverify_program:
        run_fitsverify(path, result)
    return result


def check_references(paths: Iterable[str | os.PathLike], **options: Any) -> list[FileResult]:
    """check_reference() for each path, same options."""
    return [check_reference(path, **options) for path in paths]


# ------------------------------------------------------------------ file-level checks


def _check_fits_structure(path: str, result: FileResult) -> None:
    """FITS conformance, truncation and checksums (data is not read, only its extent)."""
    from astropy.io import fits

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path, memmap=True, lazy_load_hdus=False) as hdus:
                hdus.verify("exception")
                end = 0
                for hdu in hdus:
                    info = hdu.fileinfo()
                    end = max(end, info["datLoc"] + hdu._data_size) if info else end
                if "ASDF" in hdus:
                    result.add("error", "ASDF", "FITS references must not have an ASDF extension")
    except Exception as exc:
        result.add("error", None, f"FITS file does not conform to the standard: {_first_line(exc)}")
        return
    size = os.path.getsize(path)
    truncated = [w for w in caught if "truncated" in str(w.message).lower()]
    if truncated or size < end:
        result.add("error", None, f"truncated FITS file: {size} bytes, its headers describe {end}"
                   if size < end else f"truncated FITS file: {_first_line(truncated[0].message)}")
    try:
        for problem in verify_checksum(path):
            result.add("error", "CHECKSUM", problem)
    except ReferenceFileError as exc:
        result.add("error", "CHECKSUM", exc.reason)


def _check_useafter(path: str, header: Mapping[str, Any], observatory: str, result: FileResult) -> None:
    try:
        reference_to_dataset(header, observatory, filename=os.path.basename(path))
    except ReferenceFileError as exc:
        result.add("error", exc.keyword, exc.reason)


def check_parkey_values(path: str, header: Mapping[str, Any], observatory: str,
                        hook: ParkeyHook, result: FileResult) -> None:
    """The rmap-aware hook: check the reference's dataset-keyword values.

    `hook` maps each rmap parameter (dataset keyword) to its allowed values (``*`` and
    ``N/A`` always pass; or-patterns ``A|B`` are checked item by item), or is a callable
    ``(keyword, value) -> reason | None``. Values come from the header translated to dataset
    keywords (reference_to_dataset); a missing parameter is not checked here.
    """
    try:
        dataset = reference_to_dataset(header, observatory, filename=os.path.basename(path))
    except ReferenceFileError:
        return  # already reported by the USEAFTER check
    keywords = [] if callable(hook) else list(hook)
    if callable(hook):
        keywords = sorted(dataset)
    for keyword in keywords:
        value = dataset.get(keyword.upper(), UNDEFINED)
        if value in (UNDEFINED, None):
            continue
        if callable(hook):
            reason = hook(keyword, str(value))
            if reason:
                result.add("error", keyword, reason)
            continue
        allowed = {str(v).strip().upper() for v in hook[keyword]}
        for item in str(value).split("|"):
            item = item.strip().upper()
            if item and item not in ("*", "N/A", "ANY") and item not in allowed:
                result.add("error", keyword, f"value {item!r} is not one of the rmap's values "
                                             f"{sorted(allowed)[:12]}")


# ------------------------------------------------------------------ constraints


class _Namespace(Mapping):
    """Header names for expressions, plus arrays (``SCI_ARRAY``) read from the file on demand."""

    def __init__(self, path: str, header: Mapping[str, Any]):
        self.path = path
        self.values = header_namespace(header)
        self.arrays: dict[str, Any] = {}

    def _array(self, key: str) -> Any:
        match = re.fullmatch(r"ARRAY_(\d+)|([A-Z0-9_]+?)_ARRAY", key)
        if not match:
            return None
        if key not in self.arrays:
            info = read_array_info(self.path, match.group(1) or match.group(2))
            self.arrays[key] = UNDEFINED if info is None else info
        return self.arrays[key]

    def __getitem__(self, key: str) -> Any:
        if key in self.values:
            return self.values[key]
        found = self._array(key)
        if found is None:
            raise KeyError(key)
        return found

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (key in self.values or self._array(key) is not None)

    def __iter__(self):  # pragma: no cover - not needed by the evaluator
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def _apply(c: Constraint, path: str, header: Mapping[str, Any], ns: _Namespace, result: FileResult) -> None:
    presence = c.presence
    if c.condition:
        try:
            applies = evaluate(c.condition, ns)
        except ConstraintExpressionError as exc:
            result.add("warning", c.name, f"cannot evaluate condition {c.condition}: {exc}; skipped")
            return
        if not applies:
            return
        presence = {"O": "optional", "W": "warn", "R": "required", "F": "if_full_frame",
                    "S": "if_subarray", "A": "any_subarray"}.get(applies, "required") \
            if isinstance(applies, str) else "required"
    subarray = header.get("SUBARRAY", UNDEFINED)
    if presence == "if_full_frame" and subarray not in ("FULL", "GENERIC", "N/A", "ANY", "*"):
        return
    if presence == "if_subarray" and (subarray == UNDEFINED or subarray in ("FULL", "GENERIC", "N/A", "ANY", "*")):
        return
    if c.keytype == "group":
        result.add("info", c.name, "group constraints are not supported (GEIS groups); skipped")
        return
    if c.keytype == "column":
        _check_column(c, path, result, presence)
        return
    key = (f"ARRAY_{c.name}" if c.name.isdigit() else f"{c.name.upper()}_ARRAY") if c.is_array else c.name
    value = ns[key] if key in ns else (header.get(c.name, UNDEFINED) if not c.is_array else UNDEFINED)
    if c.keytype == "expression" or c.datatype == "expression":
        if c.is_array and value in (None, UNDEFINED):
            _missing(c, presence, result)
            return
        if c.special:
            _check_special_array(c, value, result)
        elif c.expression:
            _check_expression(c, ns, result)
        return
    if value in (None, UNDEFINED):
        _missing(c, presence, result)
        return
    if presence == "excluded":
        result.add("error", c.name, "must not be defined")
        return
    reason = check_value(c, value)
    if reason:
        result.add("error", c.name, reason)
    elif isinstance(reason, str):
        pass


def _missing(c: Constraint, presence: str, result: FileResult) -> None:
    what = "array" if c.is_array else "keyword"
    if presence == "required":
        result.add("error", c.name, f"missing required {what}")
    elif presence == "warn":
        result.add("warning", c.name, f"missing suggested {what}")


def _check_expression(c: Constraint, ns: _Namespace, result: FileResult) -> None:
    assert c.expression is not None
    for name in identifiers(c.expression):
        if ns.get(name, UNDEFINED) == UNDEFINED:
            return  # CRDS: an expression over an undefined keyword/array is not checked
    try:
        satisfied = evaluate(c.expression, ns)
    except ConstraintExpressionError as exc:
        result.add("error", c.name, f"failed checking constraint {c.expression}: {exc}")
        return
    if isinstance(satisfied, str) and satisfied == "W":
        result.add("warning", c.name, f"constraint {c.expression} is not satisfied")
    elif not satisfied:
        result.add("error", c.name, f"constraint {c.expression} is not satisfied")


def _check_special_array(c: Constraint, info: Any, result: FileResult) -> None:
    if c.special == "KERNELUNITY":
        data = np.asarray(info.DATA, dtype=float).transpose()
        images = data.reshape((-1,) + data.shape[-2:]) if data.ndim >= 2 else data.reshape(1, 1, -1)
        for index, image in enumerate(images):
            if abs(image.sum() - 1.0) > 1.0e-6:
                result.add("error", c.name, f"kernel #{index} sums to {image.sum():.8g}, not 1 +- 1e-6")
        center = images[..., images.shape[-2] // 2, images.shape[-1] // 2]
        if not np.all(center >= 1.0):
            result.add("warning", c.name, "possible bad IPC kernel: a center pixel is below 1.0")
    else:
        result.add("info", c.name, f"&{c.special} check is not implemented; skipped")


def _check_column(c: Constraint, path: str, result: FileResult, presence: str) -> None:
    from astropy.io import fits

    seen = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=True) as hdus:
                for hdu in hdus:
                    if not isinstance(hdu, fits.BinTableHDU | fits.TableHDU):
                        continue
                    names = {name.upper(): name for name in hdu.columns.names}
                    if c.name.upper() not in names:
                        continue
                    seen = True
                    column = hdu.data[names[c.name.upper()]]
                    checked: set = set()  # tables repeat values; check each distinct one once
                    for row, value in enumerate(column):
                        if isinstance(value, bytes):
                            value = value.decode("ascii", "replace")
                        try:
                            if value in checked:
                                continue
                            checked.add(value)
                        except TypeError:  # an array cell: not hashable, always checked
                            pass
                        if c.expression:
                            try:
                                ok = evaluate(c.expression, {"VALUE": value})
                            except ConstraintExpressionError as exc:
                                result.add("error", c.name, f"row {row}: failed checking {c.expression}: {exc}")
                                return
                            if not ok or ok == "W":
                                level = "warning" if ok == "W" else "error"
                                result.add(level, c.name, f"row {row}: {value!r} fails {c.expression}")
                                return
                        elif not c.special:
                            reason = check_value(c, value)
                            if reason:
                                result.add("error", c.name, f"row {row}: {reason}")
                                return
    except Exception as exc:
        result.add("error", c.name, f"cannot read table column: {_first_line(exc)}")
        return
    if not seen:
        _missing(c, presence, result)


# ------------------------------------------------------------------ single values


def check_value(c: Constraint, value: Any) -> str | None:
    """Why `value` fails constraint `c` (None when it passes)."""
    text = str(value)
    if c.special:
        return _check_special(c.special, text)
    if c.datatype in ("string", "string_case"):
        conditioned = text.strip() if c.datatype == "string_case" else text.strip().upper()
        if c.values:
            for item in conditioned.split("|") if "|" in conditioned else [conditioned]:
                if item not in c.values:
                    return f"value {item!r} is not one of {_show_values(c.values)}"
        return None
    if c.datatype == "boolean":
        conditioned = {"TRUE": "T", "FALSE": "F"}.get(text.strip().upper(), text.strip().upper())
        return None if conditioned in ("T", "F") else f"value {text!r} is not a logical (T or F)"
    if c.datatype == "date":
        try:
            parse_date(text)
        except ValueError as exc:
            return str(exc)
        return None
    if c.datatype in ("int", "float", "double"):
        try:
            number: float = int(text) if c.datatype == "int" else float(text)
        except ValueError:
            kind = "an integer" if c.datatype == "int" else "a number"
            return f"value {text!r} is not {kind}"
        if c.value_range is not None:
            low, high = c.value_range
            if not low <= number <= high:
                return f"value {number!r} is outside the range {low:g}..{high:g}"
        elif c.values:
            epsilon = {"int": 0.0, "float": 1e-7, "double": 1e-14}[c.datatype]
            allowed = []
            for item in c.values:
                try:
                    allowed.append(float(item))
                except ValueError:
                    continue
            # np.isclose(number, item, rtol=epsilon, atol=0), without numpy's per-call cost
            if not any(abs(number - item) <= epsilon * abs(item) for item in allowed):
                return f"value {number!r} is not one of {_show_values(c.values)}"
    return None


_SYBDATE = re.compile(r"^[A-Za-z]{1,10}\s+\d{1,2},?\s+\d{1,4}(\s+\d{1,2}:\d{1,2}:\d{1,2}\s*(am|pm|AM|PM)?)?")
_JWSTDATE = re.compile(r"^\d{4}-\d\d-\d\d(T\d\d:\d\d:\d\d)?$")


def _check_special(special: str, text: str) -> str | None:
    text = text.strip()
    if special in ("SYBDATE", "ANYDATE", "SLASHDATE", "JWSTDATE"):
        if special == "JWSTDATE" and _JWSTDATE.match(text):
            try:
                parse_date(text)
                return None
            except ValueError as exc:
                return str(exc)
        if special == "SYBDATE" and not _SYBDATE.match(text):
            return f"date {text!r} should look like 'Mar 21 2001 12:00:00 am'"
        try:
            parse_date(text)
        except ValueError as exc:
            return str(exc)
        return None
    if special in ("PEDIGREE", "JWSTPEDIGREE"):
        return _check_pedigree(special, text)
    return None  # array-level specials are handled elsewhere


def _check_pedigree(special: str, text: str) -> str | None:
    words = text.split()
    kinds = ("INFLIGHT", "GROUND", "MODEL", "DUMMY", "SIMULATION")
    undated = ("GROUND", "MODEL", "DUMMY", "SIMULATION")
    dated = kinds if special == "PEDIGREE" else ("INFLIGHT", "MODEL")
    if not words:
        return "PEDIGREE is empty"
    kind = words[0].upper()
    if kind not in kinds:
        return f"PEDIGREE {kind!r} is not one of {', '.join(kinds)}"
    if len(words) == 1:
        return None if kind in undated else f"PEDIGREE {kind} needs start and stop dates"
    if len(words) == 3 or (len(words) == 4 and words[2] == "-"):
        if kind not in dated:
            return f"PEDIGREE {kind} cannot have dates"
        start, stop = words[1], words[-1]
        if any(char in start + stop for char in "T :"):
            return f"PEDIGREE dates must not include a time: {text!r}"
        try:
            begin, end = _pedigree_date(start), _pedigree_date(stop)
        except ValueError as exc:
            return f"PEDIGREE {text!r}: {exc}"
        return None if begin <= end else f"PEDIGREE {text!r}: start date is after stop date"
    return f"PEDIGREE {text!r} should be a kind or 'INFLIGHT <start> <stop>'"


def _pedigree_date(text: str) -> Any:
    import datetime

    for fmt in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise ValueError(f"bad date {text!r} (YYYY-MM-DD or DD/MM/YYYY)")


def _show_values(values: tuple[str, ...]) -> str:
    shown = ", ".join(values[:12])
    return f"[{shown}{', ...' if len(values) > 12 else ''}]"


def _first_line(exc: Any) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
