"""Read a reference file's metadata into one flat dict of KEYWORD -> str value.

The shape is the one CRDS works with (``crds.data_file.get_header``): keys upper-cased, values
as strings, so headers from every format compare and condition alike.

- FITS: the union of the cards of every HDU, read lazily (headers only, the data is never
  touched); on a duplicate keyword the first HDU wins, except COMMENT and HISTORY, whose
  values are joined with newlines.
- GEIS (``.rNh``; a ``.rNd`` path reads its header): the 80-column text header, HISTORY
  lines joined.
- ASDF, JSON, YAML: the tree flattened to dotted upper-case paths
  (``meta.instrument.detector`` -> ``META.INSTRUMENT.DETECTOR``); lists become tuples,
  dates become ``YYYY-MM-DDTHH:MM:SS``, arrays and other objects are named, not expanded.

Every failure becomes a ReferenceFileError naming the file and the reason.
"""

from __future__ import annotations

import datetime
import json
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import yaml

from crds_events.files.errors import ReferenceFileError
from crds_events.files.formats import Format, detect_format, geis_header_path
from crds_events.files.safeyaml import YamlLimitError, check_asdf_tree, safe_load_limited

#: Keywords that may repeat in a FITS/GEIS header; these are joined rather than dropped.
APPEND_KEYS = ("COMMENT", "HISTORY")

Header = dict[str, str]


def read_header(
    path: str | os.PathLike,
    needed_keys: Iterable[str] = (),
    *,
    original_name: str | None = None,
) -> Header:
    """Return the flat metadata dict of the reference at `path`.

    With `needed_keys`, only those keys are kept and any missing one is set to
    ``"UNDEFINED"`` (as CRDS does, so rmap parameters are always defined). The result has an
    extra ``FILE_FORMAT`` key (``FITS``, ``GEIS``, ``ASDF``, ``JSON`` or ``YAML``).
    """
    path = os.fspath(path)
    fmt = detect_format(path, original_name)
    items = _READERS[fmt](path)
    header = _reduce(items, needed_keys)
    header["FILE_FORMAT"] = fmt.upper()
    return header


def header_items(path: str | os.PathLike, fmt: Format | None = None) -> list[tuple[str, Any]]:
    """The raw (KEY, value) pairs of `path` in file order, duplicates included."""
    path = os.fspath(path)
    return list(_READERS[fmt or detect_format(path)](path))


def _reduce(items: Iterable[tuple[str, Any]], needed_keys: Iterable[str]) -> Header:
    needed = {key.upper() for key in needed_keys}
    header: Header = {}
    for key, value in items:
        value = str(value)  # CRDS headers are all strings, tuples included
        if needed and key not in needed:
            continue
        if key in header:
            # As CRDS: COMMENT/HISTORY accumulate (a repeat of the whole text so far is
            # dropped); any other duplicate keeps its first value.
            if key in APPEND_KEYS and header[key] != value:
                header[key] = f"{header[key]}\n{value}"
            continue
        header[key] = value
    for key in needed:
        if header.get(key) in (None, "UNDEFINED"):
            header[key] = "UNDEFINED"
    return header


# ---------------------------------------------------------------------------------- FITS


def _fits_items(path: str) -> Iterator[tuple[str, str]]:
    from astropy.io import fits

    items: list[tuple[str, str]] = []
    try:
        with warnings.catch_warnings():
            # Truncation and non-standard cards are the checker's business (certify), not
            # the header reader's: CRDS reads such headers too.
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=True, lazy_load_hdus=True, checksum=False) as hdus:
                for hdu in hdus:
                    for card in hdu.header.cards:
                        key = card.keyword
                        if not key:
                            continue
                        items.append((key.upper(), fits_value_to_str(card)))
    except ReferenceFileError:
        raise
    except Exception as exc:  # astropy signals corrupt files with many exception types
        raise ReferenceFileError(path, f"not a readable FITS file: {_reason(exc)}") from exc
    if not items:
        raise ReferenceFileError(path, "not a readable FITS file: no header cards")
    return iter(items)


def fits_value_to_str(card: Any) -> str:
    """A FITS card's value as CRDS shows it: ``str(value)``; a malformed card's raw text."""
    try:
        value = card.value
    except Exception:  # a card astropy cannot parse: keep its text rather than fail the file
        image = card.image
        return image[10:].split("/")[0].strip().strip("'").strip()
    if value is None or type(value).__name__ == "Undefined":
        return ""
    return str(value)


# ---------------------------------------------------------------------------------- GEIS


def _geis_items(path: str) -> Iterator[tuple[str, str]]:
    header_path = geis_header_path(path)
    try:
        with open(header_path, encoding="ascii") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError as exc:
        raise ReferenceFileError(path, f"GEIS header {os.path.basename(header_path)} not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ReferenceFileError(path, f"not a readable GEIS header: {_reason(exc)}") from exc
    items: list[tuple[str, str]] = []
    history: list[str] = []
    for line in lines:
        if len(line) >= 32 and line[31] == "/":  # column 32 starts the comment
            line = line[:31]
        if line.startswith("HISTORY"):
            history.append(line[len("HISTORY") :].strip())
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == "'" and value[-1] == "'":
            value = value[1:-1].strip()
        items.append((key.upper(), value))
    if not items:
        raise ReferenceFileError(path, "not a GEIS header: no KEYWORD = value lines")
    items.append(("HISTORY", "\n".join(history)))
    return iter(items)


# ---------------------------------------------------------------------------------- trees


def _asdf_items(path: str) -> Iterator[tuple[str, Any]]:
    import asdf

    try:  # the tree's aliases and size first: asdf would expand an alias bomb
        check_asdf_tree(path)
    except (OSError, YamlLimitError) as exc:
        raise ReferenceFileError(path, f"not a readable ASDF file: {_reason(exc)}") from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unknown tags: the tree is still readable
            with asdf.open(path, lazy_load=True, memmap=False) as handle:
                flat = flatten_tree(handle.tree)
                flat["HISTORY"] = _asdf_history(handle)
    except ReferenceFileError:
        raise
    except Exception as exc:
        raise ReferenceFileError(path, f"not a readable ASDF file: {_reason(exc)}") from exc
    return iter(flat.items())


def _asdf_history(handle: Any) -> str:
    try:
        entries = handle.get_history_entries()
    except Exception:
        return "UNDEFINED"
    lines = []
    for entry in entries:
        when = entry.get("time")
        stamp = _simple_value(when).replace("T", " ") if when is not None else ""
        lines.append(f"{stamp} :: {entry.get('description', '')}".strip())
    return "\n".join(lines) if lines else "UNDEFINED"


def _json_items(path: str) -> Iterator[tuple[str, Any]]:
    try:
        with open(path, encoding="utf-8") as handle:
            tree = json.load(handle)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ReferenceFileError(path, f"not a readable JSON file: {_reason(exc)}") from exc
    return iter(_tree_or_error(path, tree, "JSON").items())


def _yaml_items(path: str) -> Iterator[tuple[str, Any]]:
    try:
        with open(path, encoding="utf-8") as handle:
            tree = safe_load_limited(handle.read())  # aliases, depth and size bounded
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError, ValueError) as exc:
        raise ReferenceFileError(path, f"not a readable YAML file: {_reason(exc)}") from exc
    return iter(_tree_or_error(path, tree, "YAML").items())


def _tree_or_error(path: str, tree: Any, kind: str) -> dict[str, Any]:
    if not isinstance(tree, Mapping):
        raise ReferenceFileError(
            path, f"not a {kind} reference: top level is {type(tree).__name__}, not a mapping"
        )
    try:
        return flatten_tree(tree)
    except RecursionError as exc:
        raise ReferenceFileError(path, f"{kind} tree nested too deeply") from exc


def flatten_tree(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to ``{"A.B.C": simple value}`` with upper-cased path parts.

    Non-string keys are skipped (as in CRDS). Values become strings, tuples of simple values,
    or a ``SUPRESSED_NONSTD_TYPE: 'Class'`` marker for arrays and other objects, which keeps
    large data out of headers.
    """
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if not isinstance(key, str):
            continue
        name = prefix + key.upper()
        if isinstance(value, Mapping):
            flat.update(flatten_tree(value, name + "."))
        else:
            flat[name] = _simple_value(value)
    return flat


def _simple_value(value: Any) -> Any:
    if isinstance(value, bool | str | int | float | complex):
        return str(value)
    if isinstance(value, list | tuple):
        return tuple(_simple_value(item) for item in value)
    if isinstance(value, datetime.datetime | datetime.date):
        if not isinstance(value, datetime.datetime):
            value = datetime.datetime(value.year, value.month, value.day)
        return value.replace(microsecond=0, tzinfo=None).isoformat("T")
    if type(value).__name__ == "Time" and hasattr(value, "utc"):
        try:
            return value.utc.datetime.replace(microsecond=0).isoformat("T")
        except Exception:
            return str(value)
    return f"SUPRESSED_NONSTD_TYPE: {type(value).__name__!r}"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


_READERS = {
    "fits": _fits_items,
    "geis": _geis_items,
    "asdf": _asdf_items,
    "json": _json_items,
    "yaml": _yaml_items,
}
