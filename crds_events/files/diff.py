"""Differences between two reference files, with ``crds diff`` exit-status semantics.

- FITS: astropy's FITSDiff (headers, tables and images, HDU by HDU); its report is the text.
- ASDF, JSON, YAML: the trees compared node by node; each difference is one line naming
  the dotted path (``meta.instrument.detector: 'NRCA1' -> 'NRCB1'``); arrays are compared
  by shape, dtype and values.
- GEIS headers: compared as flat headers.

``status`` is 0 when the files are the same, 1 when they differ, 2 when one cannot be read
(the text then says which and why), as ``crds diff`` exits.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crds_events.files.errors import ReferenceFileError
from crds_events.files.formats import detect_format
from crds_events.files.safeyaml import check_asdf_tree, safe_load_limited

SAME, DIFFERENT, ERROR = 0, 1, 2
#: Keywords that differ between any two writes of a file and say nothing about its content.
DEFAULT_IGNORE_KEYWORDS = ("CHECKSUM", "DATASUM", "DATE", "IRAF-TLM")


@dataclass
class ReferenceDiff:
    """The outcome of comparing two references."""

    old: str
    new: str
    status: int
    differences: list[str] = field(default_factory=list)
    text: str = ""

    @property
    def same(self) -> bool:
        return self.status == SAME


def diff_references(
    old: str | os.PathLike,
    new: str | os.PathLike,
    *,
    ignore_keywords: Iterable[str] = DEFAULT_IGNORE_KEYWORDS,
    ignore_blanks: bool = True,
    rtol: float = 0.0,
) -> ReferenceDiff:
    """Compare references `old` and `new`; see the module doc for the result."""
    old, new = os.fspath(old), os.fspath(new)
    ignore = tuple(key.upper() for key in ignore_keywords)
    try:
        old_fmt, new_fmt = detect_format(old), detect_format(new)
        if old_fmt != new_fmt:
            line = f"formats differ: {old_fmt.upper()} vs {new_fmt.upper()}"
            return ReferenceDiff(old, new, DIFFERENT, [line], _frame(old, new, [line]))
        if old_fmt == "fits":
            return _diff_fits(old, new, ignore, ignore_blanks, rtol)
        if old_fmt == "geis":
            from crds_events.files.headers import read_header

            lines = _diff_trees(read_header(old), read_header(new), "", ignore, rtol)
        else:
            lines = _diff_trees(_load_tree(old, old_fmt), _load_tree(new, new_fmt), "", ignore, rtol)
    except ReferenceFileError as exc:
        return ReferenceDiff(old, new, ERROR, [], f"ERROR: {exc}")
    return ReferenceDiff(old, new, DIFFERENT if lines else SAME, lines, _frame(old, new, lines))


def _frame(old: str, new: str, lines: list[str]) -> str:
    if not lines:
        return f"No differences found between {os.path.basename(old)} and {os.path.basename(new)}."
    head = f"Differences between {os.path.basename(old)} and {os.path.basename(new)}:"
    return "\n".join([head] + [f"  {line}" for line in lines])


def _diff_fits(old: str, new: str, ignore: tuple[str, ...], ignore_blanks: bool, rtol: float) -> ReferenceDiff:
    from astropy.io.fits import FITSDiff

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = FITSDiff(old, new, ignore_keywords=list(ignore), ignore_blanks=ignore_blanks,
                              ignore_blank_cards=True, rtol=rtol)
            report = io.StringIO()
            result.report(report)
    except Exception as exc:
        which = _unreadable(old, new)
        return ReferenceDiff(old, new, ERROR, [], f"ERROR: {which}: cannot compare FITS files: {exc}")
    text = report.getvalue()
    if result.identical:
        return ReferenceDiff(old, new, SAME, [], text)
    lines = _fits_difference_lines(result)
    return ReferenceDiff(old, new, DIFFERENT, lines, text)


def _fits_difference_lines(result: Any) -> list[str]:
    """One line per difference FITSDiff found, naming the HDU and keyword or column."""
    lines = []
    if result.diff_hdu_count:
        lines.append(f"HDU count: {result.diff_hdu_count[0]} -> {result.diff_hdu_count[1]}")
    for index, hdu, *_ in result.diff_hdus:  # (index, HDUDiff, extname) in astropy 6+
        where = f"HDU {index}"
        if hdu.diff_extnames:
            lines.append(f"{where}: EXTNAME {hdu.diff_extnames[0]!r} -> {hdu.diff_extnames[1]!r}")
        if hdu.diff_extension_types:
            lines.append(f"{where}: type {hdu.diff_extension_types[0]} -> {hdu.diff_extension_types[1]}")
        headers = hdu.diff_headers
        if headers is not None:
            removed, added = headers.diff_keywords or ((), ())
            lines += [f"{where}: keyword {key} removed" for key in removed]
            lines += [f"{where}: keyword {key} added" for key in added]
            for key, pairs in sorted(headers.diff_keyword_values.items()):
                lines += [f"{where}: keyword {key}: {a!r} -> {b!r}" for a, b in pairs]
        data = hdu.diff_data
        if data is not None and not data.identical:
            total = getattr(data, "diff_total", 0) or len(getattr(data, "diff_values", ()))
            lines.append(f"{where}: data differ ({total} element(s))")
            for (column, row), (a, b) in list(getattr(data, "diff_values", ()))[:10]:
                lines.append(f"{where}: column {column} row {int(row)}: {_show(a)} -> {_show(b)}")
    return lines


def _unreadable(old: str, new: str) -> str:
    from astropy.io import fits

    for path in (old, new):
        try:
            with fits.open(path):
                pass
        except Exception:
            return os.path.basename(path)
    return f"{os.path.basename(old)} vs {os.path.basename(new)}"


def _load_tree(path: str, fmt: str) -> Any:
    try:
        if fmt == "json":
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
        if fmt == "yaml":
            with open(path, encoding="utf-8") as handle:
                return safe_load_limited(handle.read())  # alias bombs refused
        import asdf

        check_asdf_tree(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with asdf.open(path, lazy_load=False, memmap=False) as handle:
                return _materialise(handle.tree)
    except Exception as exc:
        raise ReferenceFileError(path, f"cannot read {fmt.upper()} tree: {exc}") from exc


def _materialise(node: Any) -> Any:
    """A plain copy of an ASDF tree (arrays as numpy arrays) usable after the file closes."""
    if isinstance(node, Mapping):
        return {key: _materialise(value) for key, value in node.items()}
    if isinstance(node, list | tuple):
        return [_materialise(value) for value in node]
    if hasattr(node, "shape") and hasattr(node, "dtype"):
        return np.array(node)
    return node


def _diff_trees(old: Any, new: Any, path: str, ignore: tuple[str, ...], rtol: float) -> list[str]:
    where = path or "<root>"
    if path and path.rsplit(".", 1)[-1].upper() in ignore:
        return []
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        lines = []
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in new:
                if str(key).upper() not in ignore:
                    lines.append(f"{sub}: removed (was {_show(old[key])})")
            elif key not in old:
                if str(key).upper() not in ignore:
                    lines.append(f"{sub}: added {_show(new[key])}")
            else:
                lines += _diff_trees(old[key], new[key], sub, ignore, rtol)
        return lines
    if isinstance(old, np.ndarray) or isinstance(new, np.ndarray):
        return _diff_arrays(np.asarray(old), np.asarray(new), where, rtol)
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return [f"{where}: list length {len(old)} -> {len(new)}"]
        lines = []
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            lines += _diff_trees(a, b, f"{path}[{index}]", ignore, rtol)
        return lines
    if type(old) is not type(new) and not (_is_number(old) and _is_number(new)):
        return [f"{where}: {_show(old)} -> {_show(new)}"]
    try:
        equal = bool(old == new)
    except Exception:
        equal = repr(old) == repr(new)
    if not equal and rtol and _is_number(old) and _is_number(new):
        equal = abs(old - new) <= rtol * max(abs(old), abs(new))
    return [] if equal else [f"{where}: {_show(old)} -> {_show(new)}"]


def _diff_arrays(old: np.ndarray, new: np.ndarray, where: str, rtol: float) -> list[str]:
    if old.shape != new.shape:
        return [f"{where}: array shape {old.shape} -> {new.shape}"]
    if old.dtype != new.dtype:
        return [f"{where}: array dtype {old.dtype} -> {new.dtype}"]
    try:
        if old.dtype.kind in "fc":
            close = np.isclose(old, new, rtol=rtol, atol=0.0, equal_nan=True)
        else:
            close = old == new
        differing = int(np.size(close) - np.count_nonzero(close))
    except Exception:
        differing = 0 if np.array_equal(old, new) else -1
    if differing == 0:
        return []
    count = "some" if differing < 0 else f"{differing} of {old.size}"
    return [f"{where}: array values differ ({count} elements)"]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _show(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        return f"array{value.shape} {value.dtype}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
