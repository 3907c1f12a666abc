"""The event log on PostgreSQL (psycopg 3 and a connection pool): the same contract as the
SQLite log (`crds_events.store.interface`), for a site whose database is a managed server.

Global order. Positions are gapless and *commit-ordered*: every writer takes one
transaction-level advisory lock (`postgres_schema.WRITE_LOCK`) before it reads or writes
anything, then gives its events ``max(position) + 1 ...``. The lock is released only after
the commit is visible, so no position can become visible before a smaller one, and a
rolled-back append leaves no hole (a sequence would leave holes and commit out of order:
a reader at position 10 could miss 9, committed a moment later). A reader therefore never
skips an event, without tracking in-flight transactions. This is SQLite's one-writer
model (``BEGIN IMMEDIATE``) on purpose: handlers rely on it too (`store.handler.step`
re-reads its checkpoint under the write lock, so two processes cannot handle an event
twice). Writers are short (slow work happens before the transaction), so one lock costs
little; readers never take it.

Appends run in one server-side function (`crds_events_append[_one]`, migration m001): lock,
idempotency key, expected version and insert in one round trip. Commits are durable
(PostgreSQL's default ``synchronous_commit = on``). Each append NOTIFYs channel
``crds_events`` at commit; `wait_for` LISTENs instead of polling.

One `PostgresEventStore` may be shared by threads: each call borrows a pooled connection
(a transaction keeps its connection until it ends). Transactions are not re-entrant within
a thread, as on SQLite.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from crds_events.events import Event
from crds_events.store.dialect import POSTGRES, DatabaseUnavailable, Dialect, database_error
from crds_events.store.eventlog import utc_now
from crds_events.store.interface import (
    ANY,
    MAX_EVENT_BYTES,
    Appendable,
    AppendResult,
    ConcurrencyError,
    PayloadTooLargeError,
    RawEvent,
    RecordedEvent,
    StoreError,
)
from crds_events.store.postgres_reader import PostgresLogReader, TranslatingConnection
from crds_events.store.postgres_schema import CHANNEL, WRITE_LOCK, apply_migrations
from crds_events.store.records import dumps

__all__ = ["PostgresEventStore", "PostgresTransaction", "is_postgres_url", "redact_url"]

_APPEND = ("SELECT outcome, first_position, stream_version FROM crds_events_append("
           "%s, %s, %s, %s, %s, %s::text[], %s::integer[], %s::text[])")
_APPEND_ONE = ("SELECT outcome, first_position, stream_version FROM crds_events_append_one("
               "%s, %s, %s, %s, %s, %s, %s, %s)")


def is_postgres_url(url: str) -> bool:
    """True for ``postgresql://...`` and ``postgres://...`` (libpq's two spellings)."""
    return isinstance(url, str) and url.startswith(("postgresql://", "postgres://"))


def redact_url(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _encode(events: Sequence[Appendable]) -> tuple[list[str], list[int], list[str]]:
    """Types, schema versions and JSON payloads of ``events``; the same checks and errors
    as the SQLite log (`SQLiteEventStore._append_in_tx`)."""
    types: list[str] = []
    schemas: list[int] = []
    datas: list[str] = []
    for event in events:
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
        if len(data_json) > MAX_EVENT_BYTES // 4 and \
                len(data_json.encode("utf-8")) > MAX_EVENT_BYTES:
            raise PayloadTooLargeError(type_name, len(data_json.encode("utf-8")))
        types.append(type_name)
        schemas.append(schema)
        datas.append(data_json)
    return types, schemas, datas


def _append(conn: Any, stream: str, events: Appendable | Sequence[Appendable],
            expected_version: int, meta: Mapping[str, Any] | None,
            idempotency_key: str | None) -> AppendResult:
    """One call of ``crds_events_append`` on ``conn`` (its own transaction in autocommit
    mode, or part of the caller's)."""
    if isinstance(events, Event | RawEvent):
        events = (events,)
    if not events:
        raise ValueError("append needs at least one event")
    if not isinstance(stream, str) or not stream:
        raise ValueError(f"stream must be a non-empty string, not {stream!r}")
    if not isinstance(expected_version, int) or expected_version < ANY:
        raise ValueError(f"expected_version must be ANY, NO_STREAM or a version >= 1, "
                         f"not {expected_version!r}")
    types, schemas, datas = _encode(events)
    meta_json = dumps(dict(meta)) if meta else "{}"
    count = len(types)
    if count == 1:  # scalars: cheaper to send than one-element arrays
        sql, args = _APPEND_ONE, (types[0], schemas[0], datas[0])
    else:
        sql, args = _APPEND, (types, schemas, datas)
    outcome, first, version = conn.execute(
        sql, (stream, expected_version, idempotency_key, meta_json, utc_now(), *args)
    ).fetchone()
    if outcome == "conflict":
        raise ConcurrencyError(stream, expected_version, version)
    if outcome == "duplicate":
        return AppendResult(tuple(range(first, first + count)), version + count - 1,
                            duplicate=True)
    return AppendResult(tuple(range(first, first + count)), version)


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


class PostgresTransaction:
    """An open transaction holding the log's write lock, on one pooled connection.

    Appends made here and any writes through `execute` (projection tables, checkpoints)
    commit or roll back together; reads see this transaction's own appends.
    """

    dialect: Dialect = POSTGRES

    def __init__(self, conn: Any):
        self.conn = conn
        self._sql = TranslatingConnection(conn)
        self._reader = PostgresLogReader(conn)

    def append(self, stream: str, events: Appendable | Sequence[Appendable],
               expected_version: int = ANY, *, meta: Mapping[str, Any] | None = None,
               idempotency_key: str | None = None) -> AppendResult:
        """Append inside this transaction (see `PostgresEventStore.append`)."""
        return _append(self.conn, stream, events, expected_version, meta, idempotency_key)

    def record(self, event: Event, expected_version: int = ANY, *,
               meta: Mapping[str, Any] | None = None,
               idempotency_key: str | None = None) -> AppendResult:
        """Append one event to its own stream (``event.stream``)."""
        return self.append(event.stream, event, expected_version, meta=meta,
                           idempotency_key=idempotency_key)

    def read_all(self, after: int = 0, *, streams: Iterable[str] | None = None,
                 types: Iterable[str] | None = None, limit: int | None = None
                 ) -> list[RecordedEvent]:
        return self._reader.read_all(after, streams=streams, types=types, limit=limit)

    def iter_all(self, after: int = 0, *, types: Iterable[str] | None = None,
                 batch: int = 5000) -> Iterator[RecordedEvent]:
        return self._reader.iter_all(after, types=types, batch=batch)

    def read_stream(self, stream: str, *, after_version: int = 0,
                    limit: int | None = None) -> list[RecordedEvent]:
        return self._reader.read_stream(stream, after_version=after_version, limit=limit)

    def get(self, position: int) -> RecordedEvent | None:
        return self._reader.get(position)

    def stream_version(self, stream: str) -> int:
        return self._reader.stream_version(stream)

    def head(self) -> int:
        return self._reader.head()

    def find_key(self, idempotency_key: str) -> RecordedEvent | None:
        return self._reader.find_key(idempotency_key)

    def streams_with_prefix(self, prefix: str) -> list[str]:
        return self._reader.streams_with_prefix(prefix)

    def read_prefix(self, prefix: str, *, types: Iterable[str] | None = None
                    ) -> list[RecordedEvent]:
        return self._reader.read_prefix(prefix, types=types)

    def pointer_events(self, as_of: int | None = None) -> list[RecordedEvent]:
        return self._reader.pointer_events(as_of)

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        """SQL on the caller's own tables, SQLite placeholders accepted (see
        `crds_events.store.postgres_reader.translate`)."""
        return self._sql.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        return self._sql.executemany(sql, rows)


class PostgresEventStore:
    """The event log in a PostgreSQL database. See `crds_events.store.interface.EventStore`.

    ``url``: a libpq URL (``postgresql://user:password@host:port/database``). The schema is
    migrated on open. ``pool_size``: connections kept at most (one per concurrent caller).
    """

    dialect: Dialect = POSTGRES

    def __init__(self, url: str, *, pool_size: int = 4, connect_timeout: float = 10.0):
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError:  # pragma: no cover - depends on the installation
            raise StoreError("database_url names PostgreSQL but psycopg is not installed: "
                             "pip install 'psycopg[binary]' psycopg_pool") from None
        if not is_postgres_url(url):
            raise StoreError(f"not a PostgreSQL URL: {redact_url(str(url))!r}")
        self.url = url
        self._psycopg = psycopg
        # The first connection checks the URL (one clear error, instead of a pool retrying
        # in the background) and migrates the schema.
        try:
            with psycopg.connect(url, autocommit=True,
                                 connect_timeout=max(1, int(connect_timeout))) as conn:
                apply_migrations(conn)
        except psycopg.OperationalError as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "no answer"
            raise DatabaseUnavailable(f"cannot open the event log at {redact_url(url)}: "
                                      f"{reason}") from None
        self._pool = ConnectionPool(
            url, min_size=1, max_size=max(1, pool_size), kwargs={"autocommit": True},
            timeout=connect_timeout, open=False, name="crds-events-log")
        self._pool.open(wait=True, timeout=connect_timeout)
        self._local = threading.local()
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.close()

    def __enter__(self) -> PostgresEventStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        """A pooled connection; psycopg's errors in the block (the pool's timeout, a lost
        connection, a failed commit) leave it as ours (`dialect.database_error`), so no
        caller sees a driver traceback. The pool replaces a broken connection itself."""
        if self._closed:
            raise StoreError("the event log is closed")
        try:
            with self._pool.connection() as conn:
                yield conn
        except self._psycopg.Error as exc:
            raise database_error(exc) from exc

    # --- writing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[PostgresTransaction]:
        """``BEGIN`` + the write lock ... ``COMMIT`` (``ROLLBACK`` on any exception).

        Like SQLite's ``BEGIN IMMEDIATE``, the lock is taken first, so the transaction's
        reads (checkpoints, the head) see every earlier commit and nothing can change them
        before this commits: keep it short. Not re-entrant.
        """
        if getattr(self._local, "in_tx", False):
            raise StoreError("transaction already open on this store (not re-entrant)")
        self._local.in_tx = True
        try:
            with self._connection() as conn, conn.transaction():
                conn.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")
                yield PostgresTransaction(conn)
        finally:
            self._local.in_tx = False

    def append(self, stream: str, events: Appendable | Sequence[Appendable],
               expected_version: int = ANY, *, meta: Mapping[str, Any] | None = None,
               idempotency_key: str | None = None) -> AppendResult:
        """Append ``events`` atomically to ``stream`` in one round trip (see
        `crds_events.store.eventlog.SQLiteEventStore.append` for the arguments). Returns
        when the commit is durable."""
        if getattr(self._local, "in_tx", False):
            # on SQLite this would be a nested BEGIN: refuse alike rather than append
            # outside the open transaction on another connection
            raise StoreError("transaction already open on this store (not re-entrant)")
        with self._connection() as conn:
            return _append(conn, stream, events, expected_version, meta, idempotency_key)

    def record(self, event: Event, expected_version: int = ANY, *,
               meta: Mapping[str, Any] | None = None,
               idempotency_key: str | None = None) -> AppendResult:
        """Append one event to its own stream (``event.stream``)."""
        return self.append(event.stream, event, expected_version, meta=meta,
                           idempotency_key=idempotency_key)

    # --- reading -------------------------------------------------------------------------------

    def _read(self, method: str, *args: Any, **kwargs: Any) -> Any:
        with self._connection() as conn:
            return getattr(PostgresLogReader(conn), method)(*args, **kwargs)

    def read_stream(self, stream: str, *, after_version: int = 0,
                    limit: int | None = None) -> list[RecordedEvent]:
        """Events of one stream in version order, after ``after_version``."""
        return self._read("read_stream", stream, after_version=after_version, limit=limit)

    def read_all(self, after: int = 0, *, streams: Iterable[str] | None = None,
                 types: Iterable[str] | None = None, limit: int | None = None
                 ) -> list[RecordedEvent]:
        """Events after global position ``after``, in position order, optionally only of
        the given streams / types, at most ``limit``."""
        return self._read("read_all", after, streams=streams, types=types, limit=limit)

    def iter_all(self, after: int = 0, *, types: Iterable[str] | None = None,
                 batch: int = 5000) -> Iterator[RecordedEvent]:
        """Every event after ``after`` in batches (constant memory; a connection is held
        only while a batch is read)."""
        types = list(types) if types is not None else None
        while True:
            records = self.read_all(after, types=types, limit=batch)
            yield from records
            if len(records) < batch:
                return
            after = records[-1].position

    def get(self, position: int) -> RecordedEvent | None:
        return self._read("get", position)

    def stream_version(self, stream: str) -> int:
        """The stream's current version (0 = `NO_STREAM`: it has no events)."""
        return self._read("stream_version", stream)

    def head(self) -> int:
        return self._read("head")

    def find_key(self, idempotency_key: str) -> RecordedEvent | None:
        """The first event appended with ``idempotency_key`` (None: never appended)."""
        return self._read("find_key", idempotency_key)

    def streams_with_prefix(self, prefix: str) -> list[str]:
        return self._read("streams_with_prefix", prefix)

    def read_prefix(self, prefix: str, *, types: Iterable[str] | None = None
                    ) -> list[RecordedEvent]:
        return self._read("read_prefix", prefix, types=types)

    def pointer_events(self, as_of: int | None = None) -> list[RecordedEvent]:
        return self._read("pointer_events", as_of)

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> _Fetched:
        """A read of the caller's own tables (SQLite placeholders accepted); the rows are
        fetched at once, so the connection goes back to the pool before they are used."""
        with self._connection() as conn:
            cursor = TranslatingConnection(conn).execute(sql, params)
            rows = cursor.fetchall() if cursor.description is not None else []
            return _Fetched(cursor.description, rows)

    def wait_for(self, position: int, timeout: float = 5.0) -> bool:
        """Block until ``position`` is visible (True) or ``timeout`` seconds pass (False):
        LISTEN on the append channel, so a commit by any process wakes it at once."""
        if self.head() >= position:
            return True
        deadline = time.monotonic() + timeout
        if timeout <= 0:
            return False
        with self._connection() as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            try:
                while True:
                    # listening first, then looking: a commit in between is not missed
                    if PostgresLogReader(conn).head() >= position:
                        return True
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    # short waits bound the cost of a notification consumed by the head
                    # query above (its commit may not have been in that query's snapshot)
                    for _ in conn.notifies(timeout=min(remaining, 0.25), stop_after=1):
                        pass
            finally:
                conn.execute(f"UNLISTEN {CHANNEL}")
