"""Shared helpers of the page blueprints: reads, the `.json` twin convention, caches.

Convention: every list page ``/x`` has a JSON twin ``/x.json`` with the same query
parameters; `respond` renders the template or returns the data depending on the path.
Reads go through the request's read-only connection (`crds_events.web.get_db`): projection
tables with `rows`, the event log with `log` (a `crds_events.store.reader.LogReader`, the
reading half of the store interface).
"""

from __future__ import annotations

import datetime as _dt
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from flask import abort, jsonify, render_template, request

from crds_events.contexts.pointers import get_pointers
from crds_events.rules.bestrefs import load_context
from crds_events.rules.context import ContextLoadError
from crds_events.store.filestore import FileStore, FileStoreError, check_name
from crds_events.store.reader import LogReader
from crds_events.web import get_db, get_state
from crds_events.web.converters import SQLITE_MAX_INT  # positions are SQLite INTEGERs

__all__ = ["respond", "wants_json", "log", "rows", "pointers", "int_arg",
           "date_arg", "cached", "load_rules", "latest_references", "file_store", "head",
           "PAGE_SIZE"]

PAGE_SIZE = 50


def wants_json() -> bool:
    return request.path.endswith(".json")


def respond(template: str, data: dict, **context: Any):
    """The page (``template`` with ``data`` and ``context``) or, for ``.json``, the data."""
    if wants_json():
        return jsonify(data)
    return render_template(template, **data, **context)


def log() -> LogReader:
    """The event log over the request's read-only connection."""
    return LogReader(get_db())


def head() -> int:
    return log().head()


def rows(sql: str, params: Iterable[Any] = ()) -> list[dict]:
    """Rows of ``sql`` on the request connection as dicts (a missing table: no rows)."""
    conn = get_db()
    try:
        cursor = conn.execute(sql, tuple(params))
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


def pointers() -> dict[str, dict]:
    """kind -> the context pointer row now (`crds_events.contexts.pointers.get_pointers`)."""
    return get_pointers(log(), get_state().settings.observatory)


def int_arg(name: str, default: int | None = None, *, minimum: int = 0,
            maximum: int | None = None) -> int | None:
    """An integer query parameter; 400 naming it when it is not one or out of range.

    Without ``maximum`` the bound is SQLite's (signed 64-bit): a larger number would be an
    OverflowError deep in a query.
    """
    text = request.args.get(name, "").strip()
    if not text:
        return default
    if len(text) > 25:  # int() of a 10 KB digit string is slow and no position is that long
        abort(400, f"parameter {name!r}: not an integer between {minimum} and "
                   f"{SQLITE_MAX_INT if maximum is None else maximum}")
    try:
        value = int(text)
    except ValueError:
        abort(400, f"parameter {name!r}: {text[:40]!r} is not an integer")
    top = SQLITE_MAX_INT if maximum is None else maximum
    if value < minimum or value > top:
        abort(400, f"parameter {name!r}: {value} must be between {minimum} and {top}")
    return value


def choice_arg(name: str, choices: tuple[str, ...]) -> str:
    """A query parameter that is one of ``choices`` (case folded), "" when absent; 400 naming
    it and the choices when it is none of them."""
    text = request.args.get(name, "").strip().lower()
    if text and text not in choices:
        abort(400, f"parameter {name!r}: {text[:40]!r} must be one of {', '.join(choices)}")
    return text


def date_arg(name: str) -> str | None:
    """A date (``YYYY-MM-DD`` or ISO date-time) query parameter as the ISO prefix stored in
    ``recorded_at``; 400 naming it when it is not a date."""
    text = request.args.get(name, "").strip()
    if not text:
        return None
    try:
        parsed = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        abort(400, f"parameter {name!r}: {text!r} is not a date (YYYY-MM-DD[THH:MM:SS])")
    if len(text) <= 10:
        return parsed.strftime("%Y-%m-%d")
    return parsed.strftime("%Y-%m-%dT%H:%M:%S")


def file_store() -> FileStore:
    return FileStore.from_settings(get_state().settings)


# --- caches ------------------------------------------------------------------------------

_CACHE_LOCK = threading.Lock()


def cached(area: str, key: Any, build, limit: int = 64):
    """``build()`` cached under ``(area, key)`` in the app's state (small LRU per area).

    Keys must change when the answer would (a pmap name, a log head position).
    """
    caches = get_state().caches
    with _CACHE_LOCK:
        lru = caches.setdefault(f"pages:{area}", OrderedDict())
        if key in lru:
            lru.move_to_end(key)
            return lru[key]
    value = build()
    with _CACHE_LOCK:
        lru[key] = value
        while len(lru) > limit:
            lru.popitem(last=False)
    return value


def mapping_path(name: str):
    try:
        check_name(name)
        path = file_store().path_for(name, "mapping")
    except FileStoreError as exc:
        abort(404, str(exc))
    if not path.is_file():
        abort(404, f"mapping {name}: not in the file store")
    return path


def load_rules(pmap: str):
    """The `crds_events.rules.bestrefs.Context` of ``pmap`` from the file store (cached per
    pmap: a mapping never changes once stored)."""
    path = mapping_path(pmap)
    return cached("rules", pmap, lambda: load_context(path, ignore_checksum=True), limit=8)


def latest_references(pmap: str) -> list[dict]:
    """Per instrument and type of ``pmap``: the rmap and its references (newest first)."""
    def build() -> list[dict]:
        context = load_rules(pmap)
        found = []
        pipeline = context.pipeline
        for instrument in pipeline.instruments:
            try:
                imap = pipeline.imap(instrument)
                rmaps = imap.rmaps()
            except (ContextLoadError, OSError, ValueError) as exc:
                found.append({"instrument": instrument, "filekind": "", "rmap": "",
                              "references": [], "error": str(exc)})
                continue
            for filekind, rmap in sorted(rmaps.items()):
                names = sorted(rmap.reference_names(), reverse=True)
                found.append({"instrument": instrument, "filekind": filekind,
                              "rmap": rmap.name, "count": len(names),
                              "references": names[:3], "error": ""})
        return found
    return cached("latest_references", pmap, build, limit=8)


def recorded_date(recorded_at: str | None) -> str:
    return (recorded_at or "").replace("T", " ")[:19]

