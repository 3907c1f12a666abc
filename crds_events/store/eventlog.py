"""The SQLite event log: WAL mode, ``synchronous=FULL``, ``BEGIN IMMEDIATE`` writers.

Why these settings: WAL lets readers (the web app, other processes) read while one writer
appends; ``synchronous=FULL`` makes every acknowledged commit survive power loss; and
writers take the write lock up front with ``BEGIN IMMEDIATE`` because a deferred
transaction that later tries to write fails at once with ``SQLITE_BUSY`` when another
writer got there first, whatever the busy timeout.

The database is a `sqlite_utils.Database` (schema, migrations, projections use it); the hot
append path talks to its raw ``sqlite3`` connection (``db.conn``) with fixed statements that
the sqlite3 module caches as prepared statements.

One `SQLiteEventStore` owns one connection. It may be shared between threads (calls are
serialised by a lock), but each long-running thread is better served by its own store.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from crds_events.events import Event
from crds_events.store.dialect import SQLITE, Dialect
from crds_events.store.interface import (
    ANY,
    MAX_EVENT_BYTES,
    NO_STREAM,
    Appendable,
    AppendResult,
    ConcurrencyError,
    PayloadTooLargeError,
    RawEvent,
    RecordedEvent,
    StoreError,
)
from crds_events.store.migrations import apply_migrations
from crds_events.store.reader import LogReader
from crds_events.store.records import dumps

__all__ = ["SQLiteEventStore", "SQLiteTransaction", "open_database", "utc_now"]

_INSERT = (
    "INSERT INTO events (stream, version, type, schema_version, data, meta, recorded_at, "
    "idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def utc_now() -> str:
    """The current UTC time as stored in ``recorded_at`` (ISO 8601, microseconds, Z)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def open_database(path: str | Path, *, busy_timeout: float = 30.0) -> sqlite_utils.Database:
    """Open (creating if needed) the log database with the pragmas the store relies on.

    The connection is in driver autocommit mode (``isolation_level=None``): every
    transaction in this package is explicit, so nothing is committed behind our back.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise StoreError(f"{path}: directory {path.parent} does not exist (run crds-events init)")
    conn = sqlite3.connect(
        str(path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    db = sqlite_utils.Database(conn)
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    db.enable_wal()
    conn.execute("PRAGMA synchronous=FULL")
    return db


class _Fetched:
    """The rows of a finished query, with the cursor methods callers use."""

    def __init__(self, description: Any, rows: list[tuple]):
        self.description = description
        self._rows = rows

    def fetchone(self) -> tuple | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[tuple]:
        return list(self._rows)

    def __iter__(self) -> Iterator[tuple]:
        return iter(self._rows)


class SQLiteTransaction:
    """An open ``BEGIN IMMEDIATE`` transaction on the log database.

    Appends made here, and any writes through `execute` / `db` (projection tables,
    checkpoints), commit or roll back together.
    """

    dialect: Dialect = SQLITE

    def __init__(self, store: SQLiteEventStore):
        self._store = store
        self.db: sqlite_utils.Database = store.db
        self.conn: sqlite3.Connection = store.db.conn

    def append(
        self,
        stream: str,
        events: Appendable | Sequence[Appendable],
        expected_version: int = ANY,
        *,
        meta: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult:
        """Append inside this transaction (see `SQLiteEventStore.append`)."""
        return self._store._append_in_tx(stream, events, expected_version, meta, idempotency_key)

    def record(
        self,
        event: Event,
        expected_version: int = ANY,
        *,
        meta: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult:
        """Append one event to its own stream (``event.stream``)."""
        return self.append(
            event.stream, event, expected_version, meta=meta, idempotency_key=idempotency_key
        )

    # The reads see this transaction's own appends (one connection).

    def read_all(self, after: int = 0, *, streams: Iterable[str] | None = None,
                 types: Iterable[str] | None = None, limit: int | None = None
                 ) -> list[RecordedEvent]:
        return self._store.read_all(after, streams=streams, types=types, limit=limit)

    def iter_all(self, after: int = 0, *, types: Iterable[str] | None = None,
                 batch: int = 5000) -> Iterator[RecordedEvent]:
        return self._store.iter_all(after, types=types, batch=batch)

    def read_stream(self, stream: str, *, after_version: int = 0,
                    limit: int | None = None) -> list[RecordedEvent]:
        return self._store.read_stream(stream, after_version=after_version, limit=limit)

    def get(self, position: int) -> RecordedEvent | None:
        return self._store.get(position)

    def stream_version(self, stream: str) -> int:
        return self._store.stream_version(stream)

    def head(self) -> int:
        return self._store.head()

    def find_key(self, idempotency_key: str) -> RecordedEvent | None:
        return self._store.find_key(idempotency_key)

    def streams_with_prefix(self, prefix: str) -> list[str]:
        return self._store.streams_with_prefix(prefix)

    def read_prefix(self, prefix: str, *, types: Iterable[str] | None = None
                    ) -> list[RecordedEvent]:
        return self._store.read_prefix(prefix, types=types)

    def pointer_events(self, as_of: int | None = None) -> list[RecordedEvent]:
        return self._store.pointer_events(as_of)

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        return self.conn.executemany(sql, rows)


class SQLiteEventStore:
    """The event log in one SQLite file. See `crds_events.store.interface.EventStore`."""

    dialect: Dialect = SQLITE

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0):
        self.path = Path(path)
        self.db = open_database(self.path, busy_timeout=busy_timeout)
        self._conn = self.db.conn
        self._reader = LogReader(self._conn)
        self._lock = threading.RLock()
        self._appended = threading.Condition(threading.Lock())
        self._in_tx = False
        with self._lock:
            apply_migrations(self.db)

    # --- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SQLiteEventStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- writing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[SQLiteTransaction]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception).

        Holds the database write lock for its duration: keep it short, and do slow work
        (certify, SMTP, ...) before opening it. Not re-entrant.
        """
        with self._lock:
            if self._in_tx:
                raise StoreError("transaction already open on this store (not re-entrant)")
            self._conn.execute("BEGIN IMMEDIATE")
            self._in_tx = True
            try:
                yield SQLiteTransaction(self)
            except BaseException:
                self._in_tx = False
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            try:
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            finally:
                self._in_tx = False
        with self._appended:
            self._appended.notify_all()

    def append(
        self,
        stream: str,
        events: Appendable | Sequence[Appendable],
        expected_version: int = ANY,
        *,
        meta: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult:
        """Append ``events`` (one or a sequence) atomically to ``stream``.

        ``expected_version``: `ANY`, `NO_STREAM`, or the stream's exact current version;
        otherwise `ConcurrencyError` and nothing is written. ``meta``: ``actor``,
        ``causation_id``, ``correlation_id`` (see `caused_by`). ``idempotency_key``: if
        already recorded, nothing is appended and the earlier append's positions are
        returned with ``duplicate=True`` (the key is stored on the first event of the batch;
        a retry is assumed to carry the same batch). Returns when the commit is durable.
        """
        with self.transaction() as tx:
            return tx.append(
                stream, events, expected_version, meta=meta, idempotency_key=idempotency_key
            )

    def record(
        self,
        event: Event,
        expected_version: int = ANY,
        *,
        meta: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult:
        """Append one event to its own stream (``event.stream``)."""
        return self.append(
            event.stream, event, expected_version, meta=meta, idempotency_key=idempotency_key
        )

    def _append_in_tx(
        self,
        stream: str,
        events: Appendable | Sequence[Appendable],
        expected_version: int,
        meta: Mapping[str, Any] | None,
        idempotency_key: str | None,
    ) -> AppendResult:
        if isinstance(events, Event | RawEvent):
            events = (events,)
        if not events:
            raise ValueError("append needs at least one event")
        if not isinstance(stream, str) or not stream:
            raise ValueError(f"stream must be a non-empty string, not {stream!r}")
        if not isinstance(expected_version, int) or expected_version < ANY:
            raise ValueError(f"expected_version must be ANY, NO_STREAM or a version >= 1, "
                             f"not {expected_version!r}")
        conn = self._conn
        count = len(events)
        if idempotency_key is not None:
            earlier = conn.execute(
                "SELECT position, version FROM events WHERE idempotency_key = ?",
                (idempotency_key,),
            ).fetchone()
            if earlier is not None:
                first, version = earlier
                return AppendResult(
                    tuple(range(first, first + count)), version + count - 1, duplicate=True
                )
        current = conn.execute(
            "SELECT max(version) FROM events WHERE stream = ?", (stream,)
        ).fetchone()[0] or NO_STREAM
        if expected_version != ANY and expected_version != current:
            raise ConcurrencyError(stream, expected_version, current)
        meta_json = dumps(dict(meta)) if meta else "{}"
        now = utc_now()
        rows = []
        for offset, event in enumerate(events):
            if isinstance(event, Event):
                type_name, schema, data = event.type, event.schema_version, event.to_data()
            elif isinstance(event, RawEvent):
                type_name, schema, data = event.type, event.schema_version, event.data
            else:
                raise TypeError(f"cannot append {type(event).__name__}: not an Event or RawEvent")
            try:
                data_json = dumps(data)
            except (TypeError, ValueError) as exc:
                raise StoreError(f"{type_name}: payload is not JSON: {exc}") from None
            # Characters first (cheap); UTF-8 is at most 4 bytes each, so only a payload
            # near the bound needs encoding to measure.
            if len(data_json) > MAX_EVENT_BYTES // 4 and \
                    len(data_json.encode("utf-8")) > MAX_EVENT_BYTES:
                raise PayloadTooLargeError(type_name, len(data_json.encode("utf-8")))
            rows.append((stream, current + offset + 1, type_name, schema, data_json, meta_json,
                         now, idempotency_key if offset == 0 else None))
        try:
            if count == 1:
                first = conn.execute(_INSERT, rows[0]).lastrowid
            else:
                first = (conn.execute("SELECT max(position) FROM events").fetchone()[0] or 0) + 1
                conn.executemany(_INSERT, rows)
        except sqlite3.IntegrityError as exc:
            # Only reachable if another connection wrote without BEGIN IMMEDIATE.
            if "events.stream" in str(exc):
                raise ConcurrencyError(stream, expected_version, self.stream_version(stream)) from None
            raise
        return AppendResult(tuple(range(first, first + count)), current + count)

    # --- reading -------------------------------------------------------------------------------

    def read_stream(
        self, stream: str, *, after_version: int = 0, limit: int | None = None
    ) -> list[RecordedEvent]:
        """Events of one stream in version order, after ``after_version``."""
        with self._lock:
            return self._reader.read_stream(stream, after_version=after_version, limit=limit)

    def read_all(
        self,
        after: int = 0,
        *,
        streams: Iterable[str] | None = None,
        types: Iterable[str] | None = None,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """Events after global position ``after``, in position order, optionally only of
        the given streams / types, at most ``limit``."""
        with self._lock:
            return self._reader.read_all(after, streams=streams, types=types, limit=limit)

    def iter_all(
        self, after: int = 0, *, types: Iterable[str] | None = None, batch: int = 5000
    ) -> Iterator[RecordedEvent]:
        """Stream every event after ``after`` in batches (constant memory)."""
        types = list(types) if types is not None else None
        while True:
            records = self.read_all(after, types=types, limit=batch)
            yield from records
            if len(records) < batch:
                return
            after = records[-1].position

    def get(self, position: int) -> RecordedEvent | None:
        with self._lock:
            return self._reader.get(position)

    def stream_version(self, stream: str) -> int:
        """The stream's current version (0 = `NO_STREAM`: it has no events)."""
        with self._lock:
            return self._reader.stream_version(stream)

    def head(self) -> int:
        with self._lock:
            return self._reader.head()

    def find_key(self, idempotency_key: str) -> RecordedEvent | None:
        """The first event appended with ``idempotency_key`` (None: never appended)."""
        with self._lock:
            return self._reader.find_key(idempotency_key)

    def streams_with_prefix(self, prefix: str) -> list[str]:
        with self._lock:
            return self._reader.streams_with_prefix(prefix)

    def read_prefix(self, prefix: str, *, types: Iterable[str] | None = None
                    ) -> list[RecordedEvent]:
        with self._lock:
            return self._reader.read_prefix(prefix, types=types)

    def pointer_events(self, as_of: int | None = None) -> list[RecordedEvent]:
        with self._lock:
            return self._reader.pointer_events(as_of)

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> _Fetched:
        """A read of the caller's own tables (projections, checkpoints); the rows are
        fetched at once, under the store's lock, so the cursor is safe to iterate after."""
        with self._lock:
            cursor = self._conn.execute(sql, params)
            return _Fetched(cursor.description, cursor.fetchall())

    def wait_for(self, position: int, timeout: float = 5.0) -> bool:
        """Block until ``position`` is visible (True) or ``timeout`` seconds pass (False).

        Appends made through this store object wake waiters at once; appends by other
        connections or processes are noticed by polling every 20 ms.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.head() >= position:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._appended:
                self._appended.wait(min(0.02, remaining))
