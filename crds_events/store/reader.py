"""Reading the log over one SQLite connection: every query of the ``events`` table.

`LogReader` is the reading half of the store interface (`EventReader`) over a plain
``sqlite3.Connection``: the store's own (`crds_events.store.eventlog.SQLiteEventStore`
reads through one, under its lock) or the web's read-only request connection, so library
reads such as `crds_events.contexts.pointers.context_history` run unchanged on either. It
adds what the web's timeline needs: newest-first keyset pages with filters, dates as
positions, counts by type.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from crds_events.store import asof
from crds_events.store.dialect import Dialect, dialect_of
from crds_events.store.interface import NO_STREAM, RecordedEvent
from crds_events.store.records import COLUMNS, row_to_record, where

__all__ = ["LogReader"]

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class LogReader:
    """Read-only view of the event log over ``conn`` (see the module docstring)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    @property
    def dialect(self) -> Dialect:
        """The SQL dialect of the connection (SQLite for a plain ``sqlite3`` one)."""
        return dialect_of(self.conn)

    def _select(self, sql: str, params: Iterable[Any] = ()) -> list[RecordedEvent]:
        return [row_to_record(r) for r in self.conn.execute(sql, list(params))]

    # --- the store interface's reads ------------------------------------------------------

    def read_all(self, after: int = 0, *, streams: Iterable[str] | None = None,
                 types: Iterable[str] | None = None, limit: int | None = None
                 ) -> list[RecordedEvent]:
        clause, params = where(after, streams, types)
        sql = f"SELECT {COLUMNS} FROM events WHERE {clause} ORDER BY position"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return self._select(sql, params)

    def iter_all(self, after: int = 0, *, types: Iterable[str] | None = None,
                 batch: int = 5000, until: int | None = None) -> Iterator[RecordedEvent]:
        """Every event after ``after`` (and at most ``until``) in batches."""
        types = list(types) if types is not None else None
        while True:
            clause, params = where(after, None, types)
            if until is not None:
                clause += " AND position <= ?"
                params.append(until)
            records = self._select(
                f"SELECT {COLUMNS} FROM events WHERE {clause} ORDER BY position LIMIT ?",
                [*params, batch])
            yield from records
            if len(records) < batch:
                return
            after = records[-1].position

    def read_stream(self, stream: str, *, after_version: int = 0,
                    limit: int | None = None) -> list[RecordedEvent]:
        sql = f"SELECT {COLUMNS} FROM events WHERE stream = ? AND version > ? ORDER BY version"
        params: list[Any] = [stream, after_version]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return self._select(sql, params)

    def get(self, position: int) -> RecordedEvent | None:
        row = self.conn.execute(f"SELECT {COLUMNS} FROM events WHERE position = ?",
                                (position,)).fetchone()
        return row_to_record(row) if row else None

    def head(self) -> int:
        return self.conn.execute("SELECT max(position) FROM events").fetchone()[0] or 0

    def stream_version(self, stream: str) -> int:
        row = self.conn.execute(
            "SELECT max(version) FROM events WHERE stream = ?", (stream,)).fetchone()
        return row[0] or NO_STREAM

    def find_key(self, idempotency_key: str) -> RecordedEvent | None:
        row = self.conn.execute(f"SELECT {COLUMNS} FROM events WHERE idempotency_key = ?",
                                (idempotency_key,)).fetchone()
        return row_to_record(row) if row else None

    def streams_with_prefix(self, prefix: str) -> list[str]:
        # A range over the (stream, version) index: cheap however long the log is.
        return [stream for (stream,) in self.conn.execute(
            "SELECT DISTINCT stream FROM events WHERE stream >= ? AND stream < ? "
            "ORDER BY stream", (prefix, _prefix_end(prefix)))]

    def read_prefix(self, prefix: str, *, types: Iterable[str] | None = None
                    ) -> list[RecordedEvent]:
        sql = f"SELECT {COLUMNS} FROM events WHERE stream >= ? AND stream < ?"
        params: list[Any] = [prefix, _prefix_end(prefix)]
        if types is not None:
            types = list(types)
            sql += f" AND type IN ({','.join('?' * len(types))})"
            params += types
        return self._select(sql + " ORDER BY position", params)

    def pointer_events(self, as_of: int | None = None) -> list[RecordedEvent]:
        return asof.pointer_events(self.conn, as_of)

    # --- the timeline's queries ------------------------------------------------------------

    def newest(self, limit: int, *, before: int | None = None, stream: str | None = None,
               stream_prefix: str | None = None, type: str | None = None,
               actor: str | None = None, since: int | None = None,
               until: int | None = None, fields: Mapping[str, Any] | None = None
               ) -> list[RecordedEvent]:
        """Up to ``limit`` events newest first, with position < ``before`` (keyset paging:
        the cost does not grow with the page number), of one stream (or streams starting
        with ``stream_prefix``), type and actor (``meta.actor``), between the positions
        ``since`` and ``until`` (inclusive), whose payload has ``fields`` (name -> value).
        The stream, type and actor filters are served by indexes (m001, m003)."""
        conditions: list[tuple[str, Any]] = []  # (SQL with one "?", its parameter)
        dialect = self.dialect
        for name, value in (fields or {}).items():
            if not _FIELD.fullmatch(name):
                raise ValueError(f"payload field {name!r}: not a field name")
            conditions.append((f"{dialect.json_text('data', name)} = ?",
                               dialect.json_param(value)))
        if stream_prefix is not None:
            conditions += [("stream >= ?", stream_prefix),
                           ("stream < ?", stream_prefix + "\U0010ffff")]
        for sql, value in (("stream = ?", stream), ("type = ?", type),
                           (f"{dialect.json_text('meta', 'actor')} = ?", actor),
                           ("position >= ?", since), ("position <= ?", until),
                           ("position < ?", before)):
            if value is not None:
                conditions.append((sql, value))
        clauses = [sql for sql, _ in conditions]
        params = [value for _, value in conditions]
        clause = " AND ".join(clauses) or "1 = 1"
        return self._select(
            f"SELECT {COLUMNS} FROM events WHERE {clause} ORDER BY position DESC LIMIT ?",
            [*params, limit])

    def _recorded_at(self, position: int) -> str:
        row = self.conn.execute("SELECT recorded_at FROM events WHERE position = ?",
                                (position,)).fetchone()
        return row[0] if row else ""

    def _last_position_where(self, before: Callable[[str], bool]) -> int:
        """The last position whose ``recorded_at`` satisfies ``before`` (0 when none), by
        binary search on the primary key: positions are in recorded order, so ``before``
        holds for a prefix of the log."""
        lo, hi, answer = 1, self.head(), 0
        while lo <= hi:
            mid = (lo + hi) // 2
            recorded = self._recorded_at(mid)
            if recorded and before(recorded):
                answer, lo = mid, mid + 1
            else:
                hi = mid - 1
        return answer

    def first_position_since(self, when: str) -> int:
        """The first position recorded at or after ``when`` (an ISO prefix; head + 1 when
        none)."""
        return self._last_position_where(lambda recorded: recorded < when) + 1

    def last_position_until(self, when: str) -> int:
        """The last position recorded at or before ``when`` (0 when none); "until
        2026-01-02" includes that whole day."""
        return self._last_position_where(lambda recorded: recorded[:len(when)] <= when)

    def count_by_type(self) -> dict[str, int]:
        """How many events of each type the log holds, by type name."""
        return dict(self.conn.execute(
            "SELECT type, count(*) FROM events GROUP BY type ORDER BY type"))

    def mentioning(self, types: Iterable[str], text: str) -> list[RecordedEvent]:
        """Events of ``types`` whose JSON payload contains ``text`` (through the type index,
        then a LIKE over those events' payloads), in position order."""
        types = list(types)
        like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return self._select(
            f"SELECT {COLUMNS} FROM events WHERE type IN ({','.join('?' * len(types))}) "
            f"AND data {self.dialect.like_ci} ? ESCAPE '\\' ORDER BY position", [*types, like])
