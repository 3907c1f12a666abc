"""The few places where SQLite's SQL and PostgreSQL's differ, behind one small object.

Code above the store writes its own tables' SQL once, in the subset both databases accept
(``?`` placeholders, translated for psycopg by `crds_events.store.postgres_reader`; upserts
as ``INSERT ... ON CONFLICT ... DO UPDATE / DO NOTHING``, which SQLite has accepted since
3.24), and asks the `Dialect` of its connection (``tx.dialect``, ``store.dialect``, or
`dialect_of` for a bare connection) for the rest: whether a table exists, its columns,
creating and dropping a table, a JSON field of a payload, string aggregation, case-blind
LIKE.

``db`` arguments are anything with ``execute(sql, params)`` taking ``?`` placeholders: a
``sqlite3.Connection``, a transaction, a store, a `TranslatingConnection`.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from crds_events.store.interface import StoreError

__all__ = ["Dialect", "SQLITE", "POSTGRES", "dialect_of", "MissingTableError",
           "DatabaseError", "IntegrityViolation", "DatabaseUnavailable", "database_error"]

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class DatabaseError(StoreError, sqlite3.DatabaseError):
    """An error PostgreSQL reported (psycopg's, as ours: one line, no driver traceback).

    Also a ``sqlite3.DatabaseError``, so code that handles SQLite's errors (``/health``
    and ``/metrics`` answer "the log cannot be read") handles PostgreSQL's alike."""


class MissingTableError(DatabaseError, sqlite3.OperationalError):
    """A query named a table that does not exist (PostgreSQL's ``undefined_table``).

    Also a ``sqlite3.OperationalError`` whose message starts "no such table", so the
    callers that treat a projection table not yet created as empty (they catch SQLite's
    error) read the same on both backends."""


class IntegrityViolation(DatabaseError, sqlite3.IntegrityError):
    """A constraint refused a write (PostgreSQL's class 23, SQLite's IntegrityError)."""


class DatabaseUnavailable(DatabaseError, sqlite3.OperationalError):
    """The database cannot be reached, or the connection was lost mid-statement (the
    server restarted, the network broke): the statement did not complete."""


# SQLSTATE classes of a lost or refused connection: 08 connection exception, 53 resources
# (too many connections), 57 operator intervention (admin shutdown, crash shutdown)
_UNAVAILABLE = ("08", "53", "57")


def database_error(exc: BaseException) -> DatabaseError:
    """``exc`` (a psycopg error) as one of ours, its message's first line kept."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    state = getattr(exc, "sqlstate", None) or ""
    if state == "42P01":  # undefined_table
        return MissingTableError(f"no such table ({first})")
    if state.startswith("23"):
        return IntegrityViolation(first)
    import psycopg  # only PostgreSQL's errors come here

    # a connection error has no SQLSTATE when the client found the socket gone; the pool's
    # PoolTimeout (no connection in time) is an OperationalError too
    if state[:2] in _UNAVAILABLE or (not state and isinstance(
            exc, psycopg.OperationalError | psycopg.InterfaceError)):
        return DatabaseUnavailable(f"the event log's database is unavailable: {first}")
    return DatabaseError(first)


class Dialect:
    """SQLite's spelling; `PostgresDialect` overrides what PostgreSQL spells otherwise."""

    name = "sqlite"
    like_ci = "LIKE"  # case-blind (for ASCII) on SQLite
    # a read transaction whose statements all see one state (a SQLite transaction does)
    begin_snapshot = "BEGIN"
    # each statement a network round trip: batch reads and writes rather than one per row
    round_trips = False
    _TYPES: Mapping[type, str] = {str: "TEXT", int: "INTEGER", bool: "INTEGER",
                                  float: "REAL", tuple: "TEXT", bytes: "BLOB"}

    def __repr__(self) -> str:
        return f"<{self.name} dialect>"

    @staticmethod
    def quote(identifier: str) -> str:
        """``identifier`` quoted the standard way (both databases accept double quotes)."""
        return '"' + identifier.replace('"', '""') + '"'

    def sql_type(self, kind: type) -> str:
        return self._TYPES[kind]

    # --- the catalog ---------------------------------------------------------------------

    def table_exists(self, db: Any, table: str) -> bool:
        return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                          (table,)).fetchone() is not None

    def columns_of(self, db: Any, table: str) -> list[str]:
        """The column names of ``table`` in order (empty: no such table)."""
        return [row[1] for row in db.execute(f"PRAGMA table_info({self.quote(table)})")]

    def create_table(self, db: Any, table: str, columns: Mapping[str, type],
                     pk: str | Sequence[str]) -> None:
        keys = [pk] if isinstance(pk, str) else list(pk)
        defs = [f"{self.quote(c)} {self.sql_type(k)}" for c, k in columns.items()]
        defs.append(f"PRIMARY KEY ({', '.join(self.quote(c) for c in keys)})")
        db.execute(f"CREATE TABLE {self.quote(table)} ({', '.join(defs)})")

    def drop_table(self, db: Any, table: str) -> None:
        db.execute(f"DROP TABLE IF EXISTS {self.quote(table)}")

    # --- statements ------------------------------------------------------------------------

    def upsert(self, table: str, columns: Sequence[str], pk: Sequence[str]) -> str:
        """``INSERT`` of one row of ``columns`` (``?`` each) replacing the row of the same
        ``pk`` (a primary key or unique constraint) in place."""
        cols = ", ".join(self.quote(c) for c in columns)
        marks = "(" + ", ".join("?" * len(columns)) + ")"
        rest = [c for c in columns if c not in pk]
        target = ", ".join(self.quote(c) for c in pk)
        action = ("DO UPDATE SET " + ", ".join(f"{self.quote(c)} = excluded.{self.quote(c)}"
                                               for c in rest)) if rest else "DO NOTHING"
        return (f"INSERT INTO {self.quote(table)} ({cols}) VALUES {marks} "
                f"ON CONFLICT ({target}) {action}")

    def upsert_many(self, db: Any, table: str, columns: Mapping[str, type],
                    pk: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """`upsert` of every row of ``rows`` (values in the order of ``columns``, which
        maps each to its Python type; no two rows share a key)."""
        db.executemany(self.upsert(table, list(columns), pk), rows)

    def keys_in(self, pk: Sequence[str], kinds: Sequence[type],
                keys: Sequence[Sequence[Any]]) -> tuple[str, list[Any]]:
        """A condition "``pk`` is one of ``keys``" and its parameters."""
        one = "(" + ", ".join("?" * len(pk)) + ")"
        # a row-value list: SQLite >= 3.15
        return (f"({', '.join(self.quote(c) for c in pk)}) IN "
                f"(VALUES {', '.join([one] * len(keys))})",
                [value for key in keys for value in key])

    def insert_ignore(self, table: str, columns: Sequence[str]) -> str:
        """``INSERT`` of one row of ``columns`` that does nothing when it would violate a
        unique constraint (``INSERT OR IGNORE``, for unique constraints only)."""
        cols = ", ".join(self.quote(c) for c in columns)
        return (f"INSERT INTO {self.quote(table)} ({cols}) "
                f"VALUES ({', '.join('?' * len(columns))}) ON CONFLICT DO NOTHING")

    # --- expressions -------------------------------------------------------------------------

    def json_text(self, column: str, field: str) -> str:
        """The top-level ``field`` of the JSON text in ``column`` (scalars as SQL values)."""
        if not _FIELD.fullmatch(field):
            raise ValueError(f"JSON field {field!r}: not a field name")
        return f"json_extract({column}, '$.{field}')"

    def group_concat(self, expr: str, separator: str = ",") -> str:
        return f"group_concat({expr}, '{separator}')"

    def json_param(self, value: Any) -> Any:
        """``value`` as compared with a `json_text` (SQLite's json_extract keeps types)."""
        return value


class PostgresDialect(Dialect):
    name = "postgresql"
    like_ci = "ILIKE"  # PostgreSQL's LIKE is case-sensitive
    # READ COMMITTED (the default) takes a new snapshot per statement
    begin_snapshot = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
    round_trips = True
    _TYPES: Mapping[type, str] = {str: "text", int: "bigint", bool: "integer",
                                  float: "double precision", tuple: "text", bytes: "bytea"}

    def table_exists(self, db: Any, table: str) -> bool:
        # to_regclass follows search_path, as unqualified names in queries do
        return db.execute("SELECT to_regclass(?) IS NOT NULL",
                          (self.quote(table),)).fetchone()[0]

    def columns_of(self, db: Any, table: str) -> list[str]:
        return [name for (name,) in db.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(?) "
            "AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (self.quote(table),))]

    def _rows_of(self, kinds: Sequence[type]) -> str:
        """A SELECT of rows sent as one JSON array of arrays (the one parameter)."""
        fields = ", ".join(f"(r ->> {i})::{self.sql_type(kind)}"
                           for i, kind in enumerate(kinds))
        return f"SELECT {fields} FROM json_array_elements(?::json) AS r"

    def upsert_many(self, db: Any, table: str, columns: Mapping[str, type],
                    pk: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        # One statement with the rows as one JSON parameter: executemany runs a statement
        # per row (server work and a pipeline round each), a VALUES list of thousands of
        # placeholders costs more to build and parse than it saves, and arrays per column
        # cost the driver more to encode than json.dumps does.
        if not rows:
            return
        names = list(columns)
        cols = ", ".join(self.quote(c) for c in names)
        rest = [c for c in names if c not in pk]
        action = ("DO UPDATE SET " + ", ".join(f"{self.quote(c)} = excluded.{self.quote(c)}"
                                               for c in rest)) if rest else "DO NOTHING"
        db.execute(f"INSERT INTO {self.quote(table)} ({cols}) "
                   f"{self._rows_of(list(columns.values()))} ON CONFLICT "
                   f"({', '.join(self.quote(c) for c in pk)}) {action}",
                   [json.dumps(rows, ensure_ascii=False)])

    def keys_in(self, pk: Sequence[str], kinds: Sequence[type],
                keys: Sequence[Sequence[Any]]) -> tuple[str, list[Any]]:
        return (f"({', '.join(self.quote(c) for c in pk)}) IN ({self._rows_of(kinds)})",
                [json.dumps(keys, ensure_ascii=False)])

    def json_text(self, column: str, field: str) -> str:
        if not _FIELD.fullmatch(field):
            raise ValueError(f"JSON field {field!r}: not a field name")
        return f"(({column})::jsonb ->> '{field}')"

    def group_concat(self, expr: str, separator: str = ",") -> str:
        return f"string_agg(({expr})::text, '{separator}')"

    def json_param(self, value: Any) -> Any:
        # ->> gives text: compare with the JSON spelling of a scalar
        if isinstance(value, bool):
            return "true" if value else "false"
        return value if value is None or isinstance(value, str) else str(value)


SQLITE = Dialect()
POSTGRES = PostgresDialect()


def dialect_of(db: Any) -> Dialect:
    """The dialect of ``db`` (a store, transaction, reader or connection): its ``dialect``
    attribute, else SQLite (a plain ``sqlite3`` connection has none)."""
    found = getattr(db, "dialect", None)
    if isinstance(found, Dialect):
        return found
    inner = getattr(db, "conn", None)  # a LogReader over a connection
    if inner is not None and inner is not db:
        found = getattr(inner, "dialect", None)
        if isinstance(found, Dialect):
            return found
    return SQLITE
