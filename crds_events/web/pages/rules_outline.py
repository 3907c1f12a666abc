"""The rules display of a context as an outline: instruments and types, rules on demand.

A real HST context names ~100 rmaps; drawing every one as a table made a 5 MB page (41,700
px, 0.9 s). The page of a pmap or imap is an outline instead: one collapsed section per
instrument (its imap), one collapsed section per type (its rmap); an rmap's rules are
fetched when its section is opened, from a fragment URL (``/contexts/<rmap>/rules``), and an
rmap's own page still shows them in full. Only the pmap and its imaps are read to draw the
page, never the rmaps.

``q`` narrows the outline server-side (the filter box works without JavaScript too): an
instrument, type or mapping name containing it (case-insensitive).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from werkzeug.exceptions import HTTPException

__all__ = ["outline", "MAPPING_SUFFIXES"]

MAPPING_SUFFIXES = (".pmap", ".imap", ".rmap")


def _types(imap: dict[str, Any]) -> list[dict[str, str]]:
    """(type, rmap) of an imap's tables, in the imap's order; N/A entries kept as text."""
    found = []
    for row in imap.get("rows", ()):
        filekind = " ".join(row["cells"])
        for child in row["files"]:
            found.append({"filekind": filekind, "rmap": child,
                          "is_rmap": child.endswith(".rmap")})
    return found


def _matches(q: str, *texts: str) -> bool:
    return not q or any(q in text.lower() for text in texts)


def outline(tables: dict[str, Any], load: Callable[[str], dict[str, Any]],
            q: str = "") -> list[dict[str, Any]]:
    """Per instrument: ``instrument``, ``imap``, ``types`` (filekind, rmap), ``error`` and
    ``open`` (the section starts open: an imap page, or a filter narrowed to it).

    ``tables``: the displayed mapping's `mapping_tables`; ``load``: the same for a child
    (raising an HTTPException for one missing from the store, shown as the error).
    """
    q = q.strip().lower()
    if tables["kind"] == "instrument":
        instruments = [("", tables["name"], tables, "")]
    elif tables["kind"] == "pipeline":
        instruments = []
        for row in tables["rows"]:
            instrument = " ".join(row["cells"])
            for child in row["files"]:
                if not child.endswith(".imap"):
                    instruments.append((instrument, child, None, ""))
                    continue
                try:
                    instruments.append((instrument, child, load(child), ""))
                except HTTPException as exc:  # a missing child is shown, not fatal
                    instruments.append((instrument, child, None, str(exc.description)))
    else:
        return []
    shown = []
    for instrument, imap_name, imap, error in instruments:
        instrument = instrument or str((imap or {}).get("header", {}).get("instrument", ""))
        types = _types(imap) if imap else []
        whole = _matches(q, instrument, imap_name)
        kept = types if whole else [t for t in types if _matches(q, t["filekind"], t["rmap"])]
        if q and not whole and not kept:
            continue
        shown.append({"instrument": instrument, "imap": imap_name, "types": kept,
                      "count": len(types), "error": error,
                      "open": tables["kind"] == "instrument" or bool(q)})
    return shown
