"""Shared helpers of the page blueprints: reads, the `.json` twin convention, caches.

Convention: every list page ``/x`` has a JSON twin ``/x.json`` with the same query
parameters; `respond` renders the template or returns the data depending on the path.
Reads go through the request's read-only connection (`crds_events.web.get_db`); the event
log is read with `RequestLog`, which speaks the same record format as the store.
"""

from __future__ import annotations

import datetime as _dt
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from flask import abort, jsonify, render_template, request

from crds_events.store.eventlog import _COLUMNS, _row_to_record, _where
from crds_events.store.filestore import FileStore, FileStoreError, check_name
from crds_events.store.interface import RecordedEvent
from crds_events.web import get_db, get_state

__all__ = ["RequestLog", "respond", "wants_json", "log", "rows", "pointers", "int_arg",
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


class RequestLog:
    """Read-only view of the event log over the request's connection.

    Offers the reading half of the store interface (``read_all``, ``read_stream``,
    ``iter_all``, ``get``, ``head``) so library reads such as
    `crds_events.contexts.pointers.context_history` run on it unchanged, plus newest-first pages.
    """

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def read_all(self, after: int = 0, *, streams: Iterable[str] | None = None,
                 types: Iterable[str] | None = None, limit: int | None = None
                 ) -> list[RecordedEvent]:
        where, params = _where(after, streams, types)
        sql = f"SELECT {_COLUMNS} FROM events WHERE {where} ORDER BY position"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_row_to_record(r) for r in self.conn.execute(sql, params)]

    def iter_all(self, after: int = 0, *, types: Iterable[str] | None = None,
                 batch: int = 5000, until: int | None = None) -> Iterator[RecordedEvent]:
        types = list(types) if types is not None else None
        while True:
            where, params = _where(after, None, types)
            if until is not None:
                where += " AND position <= ?"
                params.append(until)
            records = [_row_to_record(r) for r in self.conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE {where} ORDER BY position LIMIT ?",
                [*params, batch])]
            yield from records
            if len(records) < batch:
                return
            after = records[-1].position

    def read_stream(self, stream: str, *, after_version: int = 0,
                    limit: int | None = None) -> list[RecordedEvent]:
        sql = f"SELECT {_COLUMNS} FROM events WHERE stream = ? AND version > ? ORDER BY version"
        params: list[Any] = [stream, after_version]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_row_to_record(r) for r in self.conn.execute(sql, params)]

    def get(self, position: int) -> RecordedEvent | None:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM events WHERE position = ?",
                                (position,)).fetchone()
        return _row_to_record(row) if row else None

    def head(self) -> int:
        return self.conn.execute("SELECT max(position) FROM events").fetchone()[0] or 0

    def newest(self, clauses: Sequence[str], params: Sequence[Any], before: int | None,
               limit: int) -> list[RecordedEvent]:
        """Up to ``limit`` events matching ``clauses`` (SQL, AND-ed), newest first, with
        position < ``before`` (keyset paging: the cost does not grow with the page number)."""
        clauses, params = list(clauses), list(params)
        if before is not None:
            clauses.append("position < ?")
            params.append(before)
        where = " AND ".join(clauses) or "1"
        sql = (f"SELECT {_COLUMNS} FROM events WHERE {where} ORDER BY position DESC LIMIT ?")
        return [_row_to_record(r) for r in self.conn.execute(sql, [*params, limit])]


def log() -> RequestLog:
    return RequestLog(get_db())


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
    """kind -> the context pointer row (context_pointers projection)."""
    observatory = get_state().settings.observatory
    return {r["kind"]: r for r in rows(
        "SELECT * FROM context_pointers WHERE observatory = ? ORDER BY kind", (observatory,))}


def int_arg(name: str, default: int | None = None, *, minimum: int = 0,
            maximum: int | None = None) -> int | None:
    """An integer query parameter; 400 naming it when it is not one or out of range."""
    text = request.args.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        abort(400, f"parameter {name!r}: {text!r} is not an integer")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        abort(400, f"parameter {name!r}: {value} must be {bound}")
    return value


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
    from crds_events.rules.bestrefs import load_context

    path = mapping_path(pmap)
    return cached("rules", pmap, lambda: load_context(path, ignore_checksum=True), limit=8)


def latest_references(pmap: str) -> list[dict]:
    """Per instrument and type of ``pmap``: the rmap and its references (newest first)."""
    def build() -> list[dict]:
        from crds_events.rules.context import ContextError as RulesContextError

        context = load_rules(pmap)
        found = []
        pipeline = context.pipeline
        for instrument in pipeline.instruments:
            try:
                imap = pipeline.imap(instrument)
                rmaps = imap.rmaps()
            except (RulesContextError, OSError, ValueError) as exc:
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

