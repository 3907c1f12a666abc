"""CRDS's canonical mapping layout (what `Mapping.format()` / `Mapping.write()` produce).

The layout, as CRDS 14 writes it:

    header = {                       sorted (key, value) items, 4-space indent,
        'key' : repr(value),         a nested dict is laid out the same way, one level in
    }
                                     one blank line
    comment = \"\"\"<text>\"\"\"           only if the comment is non-empty, then a blank line

    selector = Match({               selector entries sorted by the string form of their
        repr(key) : UseAfter({       key (each tuple element through str()), ties kept in
            repr(key) : repr(value), file order; nested selectors one level deeper
        }),
    })                               a plain dict selector (pmap/imap) is laid out like
                                     the header
Duplicate keys collapse as Python builds a dict literal: the last value, at the position of
the first occurrence (only that position survives the sort's tie order).

The comment is written raw between triple quotes, exactly as CRDS does; a comment with a
backslash, a triple quote or a trailing quote therefore does not read back the same.
"""

from __future__ import annotations

import warnings

from crds_events.rules.checksum import mapping_checksum
from crds_events.rules.parse import Call, DuplicateKeyWarning, MappingFormatError, ParsedMapping

__all__ = ["canonical_checksum", "format_mapping", "format_selector", "rewrite_text"]

_INDENT = "    "


def _format_dict(value: dict, indent: int = 0) -> str:
    """A dict laid out like CRDS's Mapping._format_dict: sorted items, one per line."""
    prefix = _INDENT * indent
    out = ["{\n"]
    for key, val in sorted(value.items()):
        rval = _format_dict(val, indent + 1) if isinstance(val, dict) else repr(val)
        out.append(f"{prefix}{_INDENT}{key!r} : {rval},\n")
    out.append(prefix + "}")
    return "".join(out)


def _selection_sort_key(item: tuple[object, object]) -> tuple[str, ...]:
    """CRDS sorts selector entries by str() of each key element (a tuple key) or of the key."""
    key = item[0]
    return tuple(str(field) for field in key) if isinstance(key, tuple) else (str(key),)


def _collapsed_entries(call: Call) -> list[tuple[object, object]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicateKeyWarning)  # loading warns; formatting not
        return list(call.as_dict().items())


def format_selector(call: Call, indent: int = 0) -> str:
    """A selector call laid out like CRDS's Selector.format(indent)."""
    if call.name == "dict":
        return _format_dict(dict(_collapsed_entries(call)), indent)
    lines = [call.name + "({"]
    inner = _INDENT * (indent + 1)
    for key, value in sorted(_collapsed_entries(call), key=_selection_sort_key):
        text = format_selector(value, indent + 1) if isinstance(value, Call) else repr(value)
        lines.append(f"{inner}{key!r} : {text},")
    lines.append(_INDENT * indent + "})")
    return "\n".join(lines)


def format_mapping(mapping: ParsedMapping, header: dict | None = None) -> str:
    """The canonical text of `mapping` (with `header` in place of its own, if given)."""
    try:
        head = _format_dict(mapping.header if header is None else header)
        body = format_selector(mapping.selector)
    except TypeError as exc:  # keys of different types cannot be sorted (CRDS fails too)
        raise MappingFormatError(f"cannot sort keys: {exc}", filename=mapping.filename,
                                 construct="key order") from None
    if mapping.comment:
        return f'header = {head}\n\ncomment = """{mapping.comment}"""\n\nselector = {body}\n'
    return f"header = {head}\n\nselector = {body}\n"


def canonical_checksum(mapping: ParsedMapping) -> str:
    """The sha1sum CRDS writes when it rewrites `mapping` (checksum of its canonical text)."""
    return mapping_checksum(format_mapping(mapping))


def rewrite_text(mapping: ParsedMapping) -> str:
    """What CRDS's Mapping.write() writes: the canonical text holding a fresh sha1sum."""
    header = dict(mapping.header)
    header["sha1sum"] = canonical_checksum(mapping)
    return format_mapping(mapping, header)
