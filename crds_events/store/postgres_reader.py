"""Reading the log on PostgreSQL, and the SQL spelling bridge from SQLite's.

The store's own queries, the handlers' checkpoint SQL and simple projection SQL are
written with SQLite's ``?`` (and ``:name``) placeholders. `translate` rewrites them into
psycopg's ``%s`` / ``%(name)s`` (and doubles a literal ``%``), outside quoted text, so the
same statement runs on both backends. It does not translate functions (``json_extract``,
``INSERT OR IGNORE`` ...): SQL that uses them is dialect-specific and must say so.

`PostgresLogReader` is `crds_events.store.reader.LogReader` over a psycopg connection
(through `TranslatingConnection`): every read of the log answers alike on both backends.
Queries written in SQLite's dialect (``pointer_events`` goes through SQLite's ``INDEXED
BY`` hints) are overridden here.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from crds_events.store.dialect import POSTGRES, Dialect, database_error
from crds_events.store.interface import RecordedEvent
from crds_events.store.reader import LogReader
from crds_events.store.records import COLUMNS, row_to_record

__all__ = ["translate", "TranslatingConnection", "PostgresLogReader", "ReadConnection"]


@functools.lru_cache(maxsize=1024)
def translate(sql: str, named: bool = False) -> str:
    """``sql`` with SQLite placeholders (``?``, or ``:name`` when ``named``) as psycopg's,
    and ``%`` doubled; quoted strings and identifiers are copied unchanged but for ``%``."""
    out: list[str] = []
    i, n = 0, len(sql)
    quote: str | None = None
    while i < n:
        char = sql[i]
        if char == "%":
            out.append("%%")
        elif quote:
            out.append(char)
            if char == quote:
                quote = None
        elif char in ("'", '"'):
            quote = char
            out.append(char)
        elif char == "?" and not named:
            out.append("%s")
        elif char == ":" and named and i + 1 < n and (sql[i + 1].isalpha() or sql[i + 1] == "_") \
                and not (i > 0 and sql[i - 1] == ":"):
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] == "_"):
                j += 1
            out.append(f"%({sql[i + 1:j]})s")
            i = j
            continue
        else:
            out.append(char)
        i += 1
    return "".join(out)


class TranslatingConnection:
    """The ``execute`` of a psycopg connection, taking SQLite-placeholder SQL.

    A psycopg error is raised as ours (`crds_events.store.dialect.database_error`): a
    missing table as `MissingTableError` (also a ``sqlite3.OperationalError`` "no such
    table", which callers that read a projection not yet created as empty expect), a lost
    connection as `DatabaseUnavailable`.
    """

    dialect: Dialect = POSTGRES

    def __init__(self, conn: Any):
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        named = isinstance(params, Mapping)
        try:
            return self.conn.execute(translate(sql, named), params if named else list(params))
        except Exception as exc:
            _reraise(exc)
            raise

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        cursor = self.conn.cursor()
        try:
            cursor.executemany(translate(sql), [list(row) for row in rows])
        except Exception as exc:
            _reraise(exc)
            raise
        return cursor


def _reraise(exc: Exception) -> None:
    """Raise a psycopg error as ours (`crds_events.store.dialect.database_error`: a
    missing table, a constraint, a database gone), which callers handle by kind on both
    backends; anything else is left to propagate as it is."""
    import psycopg

    if isinstance(exc, psycopg.Error):
        raise database_error(exc) from exc


class PostgresLogReader(LogReader):
    """`LogReader` over a psycopg connection (see the module docstring)."""

    def __init__(self, conn: Any):
        super().__init__(TranslatingConnection(conn))  # type: ignore[arg-type]

    def pointer_events(self, as_of: int | None = None) -> list[RecordedEvent]:
        # The last two ContextSet events of each (observatory, kind) up to as_of, as
        # `crds_events.store.asof.pointer_events` on SQLite; the key expressions are those
        # of the events_context_pointer index (m004).
        upto = as_of if as_of is not None else self.head()
        rows = self.conn.execute(
            f"SELECT {COLUMNS} FROM (SELECT {COLUMNS}, row_number() OVER (PARTITION BY "
            "(data::jsonb) ->> 'observatory', coalesce((data::jsonb) ->> 'kind', "
            "(data::jsonb) ->> 'pointer') ORDER BY position DESC) AS rank FROM events "
            "WHERE type = 'ContextSet' AND position <= ?) AS latest WHERE rank <= 2 "
            "ORDER BY position", [upto])
        return [row_to_record(row) for row in rows]


class ReadConnection(TranslatingConnection):
    """A read-only psycopg connection in autocommit mode (every statement sees the latest
    commits), for the web's requests: what ``sqlite3.connect`` + ``PRAGMA query_only``
    is on SQLite. A server thread keeps one and lends it to one request at a time."""

    def __init__(self, url: str, *, connect_timeout: float = 10.0):
        import psycopg

        try:
            conn = psycopg.connect(url, autocommit=True,
                                   connect_timeout=max(1, int(connect_timeout)))
        except psycopg.Error as exc:  # a sqlite3.Error too: /health answers 503 alike
            raise database_error(exc) from None
        conn.execute("SET default_transaction_read_only = on")
        super().__init__(conn)

    @property
    def in_transaction(self) -> bool:
        """True unless the connection is idle and healthy (only such a one is reused)."""
        from psycopg.pq import TransactionStatus

        return self.conn.broken or self.conn.info.transaction_status != TransactionStatus.IDLE

    def close(self) -> None:
        self.conn.close()
