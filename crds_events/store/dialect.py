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

import re
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from crds_events.store.interface import StoreError

__all__ = ["Dialect", "SQLITE", "POSTGRES", "dialect_of", "MissingTableError"]

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class MissingTableError(StoreError, sqlite3.OperationalError):
    """A query named a table that does not exist (PostgreSQL's ``undefined_table``).

    Also a ``sqlite3.OperationalError`` whose message starts "no such table", so the
    callers that treat a projection table not yet created as empty (they catch SQLite's
    error) read the same on both backends."""


class Dialect:
    """SQLite's spelling; `PostgresDialect` overrides what PostgreSQL spells otherwise."""

    name = "sqlite"
    like_ci = "LIKE"  # case-blind (for ASCII) on SQLite
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
        marks = ", ".join("?" * len(columns))
        rest = [c for c in columns if c not in pk]
        target = ", ".join(self.quote(c) for c in pk)
        action = ("DO UPDATE SET " + ", ".join(f"{self.quote(c)} = excluded.{self.quote(c)}"
                                               for c in rest)) if rest else "DO NOTHING"
        return (f"INSERT INTO {self.quote(table)} ({cols}) VALUES ({marks}) "
                f"ON CONFLICT ({target}) {action}")

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
