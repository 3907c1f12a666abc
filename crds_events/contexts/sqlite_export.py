"""The catalog as a SQLite database in CRDS's schema: what ``get_sqlite_db`` serves.

``crds sync --fetch-sqlite-db`` and ``crds sql`` download one SQLite file holding two
tables, named as CRDS's server names them:

* ``crds_<obs>_catalog``: one row per file the catalog knows officially (confirmed,
  delivered or archived), with CRDS's columns (``id, name, blob, state, blacklisted,
  rejected, observatory, instrument, filekind, type, derived_from, sha1sum, delivery_date,
  activation_date, useafter_date, change_level, pedigree, reference_file_type, size,
  uploaded_as, creator_name, deliverer_user, deliverer_email, description, catalog_link,
  replaced_by_filename, comment, aperture``); what this server does not record is ''.
  The deliverer and the submission's description are personal data of the submitter
  (`crds_events.events.visibility`): the RPC answers anyone, so they stay empty.
* ``crds_<obs>_context_history``: one row per context change (``id, start_date, context,
  state, description``); ``state`` is the pointer changed (``latest``, ``edit``, ...).

Built from the projection tables (``files``, ``submissions``, ``context_history``) inside
one read transaction (on either backend: the request's connection and its dialect), so the
two tables agree with each other, and entirely in memory
(`sqlite3.Connection.serialize`): nothing is written on the server's disk. `SqliteExport`
keeps the last build keyed on the projections' checkpoints (the last event each folded), so
a change of the catalog or of the history rebuilds it on the next request and repeated
requests cost one small query.
"""

from __future__ import annotations

import base64
import sqlite3
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from crds_events.errors import CrdsEventsError
from crds_events.store.dialect import dialect_of
from crds_events.store.projections import PROJECTION_PREFIX

__all__ = ["SqliteExportError", "SqliteExport", "build_catalog_db", "encode_db",
           "CATALOG_COLUMNS", "HISTORY_COLUMNS", "table_names"]

# A file the catalog reports on (as get_file_info does): confirmed or later.
_KNOWN_STATES = ("confirmed", "delivered", "archived")
_TABLES = ("files", "submissions", "context_history")

CATALOG_COLUMNS = (
    ("id", "integer PRIMARY KEY"), ("name", "varchar(128)"), ("blob", "text"),
    ("state", "varchar(32)"), ("blacklisted", "bool"), ("rejected", "bool"),
    ("observatory", "varchar(32)"), ("instrument", "varchar(32)"),
    ("filekind", "varchar(32)"), ("type", "varchar(32)"), ("derived_from", "varchar(128)"),
    ("sha1sum", "varchar(40)"), ("delivery_date", "datetime"),
    ("activation_date", "datetime"), ("useafter_date", "datetime"),
    ("change_level", "varchar(16)"), ("pedigree", "varchar(80)"),
    ("reference_file_type", "varchar(32)"), ("size", "bigint"),
    ("uploaded_as", "varchar(128)"), ("creator_name", "varchar(128)"),
    ("deliverer_user", "varchar(64)"), ("deliverer_email", "varchar(128)"),
    ("description", "text"), ("catalog_link", "varchar(128)"),
    ("replaced_by_filename", "varchar(128)"), ("comment", "text"), ("aperture", "varchar(80)"),
)
HISTORY_COLUMNS = (
    ("id", "integer PRIMARY KEY"), ("start_date", "datetime"), ("context", "varchar(64)"),
    ("state", "varchar(32)"), ("description", "text"),
)


class SqliteExportError(CrdsEventsError):
    """The catalog database cannot be built (names the table and the reason)."""


def table_names(observatory: str) -> tuple[str, str]:
    """(catalog table, context history table) for ``observatory``."""
    return f"crds_{observatory}_catalog", f"crds_{observatory}_context_history"


def _crds_date(recorded_at: str | None) -> str:
    """``2026-01-02T03:04:05.678Z`` -> CRDS's ``2026-01-02 03:04:05``."""
    return (recorded_at or "").replace("T", " ")[:19]


def _rows(conn: Any, sql: str, params: Iterable[object] = ()) -> list[tuple]:
    try:
        return [tuple(row) for row in conn.execute(sql, tuple(params)).fetchall()]
    except sqlite3.OperationalError as exc:
        # (also PostgreSQL's missing table: `crds_events.store.dialect.MissingTableError`)
        if "no such table" in str(exc):  # a projection not created yet reads as empty
            return []
        raise SqliteExportError(f"catalog database: reading the projections failed: "
                                f"{exc}") from None


def _token(conn: Any) -> tuple:
    names = [f"{PROJECTION_PREFIX}{table}" for table in _TABLES]
    return tuple(sorted(_rows(
        conn, f"SELECT handler, position FROM _checkpoints WHERE handler IN "
              f"({','.join('?' * len(names))})", names)))


def _catalog_rows(conn: Any, observatory: str) -> list[tuple]:
    levels = dict(_rows(conn, "SELECT submission_id, change_level FROM submissions"))
    states = ",".join("?" * len(_KNOWN_STATES))
    rows = _rows(conn, f"SELECT name, observatory, kind, instrument, filekind, useafter, sha1, "
                       f"size, state, rejected, blacklisted, reject_reason, submission_id, "
                       f"delivery, created_at, updated_at FROM files WHERE state IN ({states}) "
                       f"ORDER BY name", _KNOWN_STATES)
    out = []
    for number, (name, obs, kind, instrument, filekind, useafter, sha1, size, state,
                 rejected, blacklisted, reason, submission, delivery, created,
                 updated) in enumerate(rows, 1):
        out.append((
            number, name, "", state, bool(blacklisted), bool(rejected), obs or observatory,
            instrument or "", filekind or "", kind, "", sha1 or "", _crds_date(created),
            # archived is when the archive had it and it became downloadable
            _crds_date(updated) if state == "archived" else "", useafter or "",
            levels.get(submission, "") if submission else "", "",
            (filekind or "").upper(), int(size or 0), "", "", "", "", "",
            delivery or "", "", reason or "", "",
        ))
    return out


def _history_rows(conn: Any, observatory: str) -> list[tuple]:
    rows = _rows(conn, "SELECT recorded_at, context, kind, description FROM context_history "
                       "WHERE observatory = ? ORDER BY position", (observatory,))
    return [(number, _crds_date(at), context, kind, description or "")
            for number, (at, context, kind, description) in enumerate(rows, 1)]


def _create(db: sqlite3.Connection, table: str, columns: tuple, rows: list[tuple]) -> None:
    db.execute(f'CREATE TABLE "{table}" ({", ".join(f"{n} {t}" for n, t in columns)})')
    db.executemany(f'INSERT INTO "{table}" VALUES ({",".join("?" * len(columns))})', rows)


def build_catalog_db(conn: Any, observatory: str) -> tuple[tuple, bytes]:
    """(the projections' checkpoints it was built at, the SQLite database file's bytes).

    ``conn``: a read connection to the log's database, SQLite or PostgreSQL (the web's
    `crds_events.web.get_db`)."""
    conn.execute(dialect_of(conn).begin_snapshot)  # the tables and the token agree
    try:
        token = _token(conn)
        catalog = _catalog_rows(conn, observatory)
        history = _history_rows(conn, observatory)
    finally:
        conn.execute("ROLLBACK")
    catalog_table, history_table = table_names(observatory)
    db = sqlite3.connect(":memory:")
    try:
        _create(db, catalog_table, CATALOG_COLUMNS, catalog)
        _create(db, history_table, HISTORY_COLUMNS, history)
        db.commit()
        return token, db.serialize()
    finally:
        db.close()


def encode_db(data: bytes) -> str:
    """What CRDS's ``get_sqlite_db`` answers: the file zlib-compressed, then base64."""
    return base64.b64encode(zlib.compress(data, 6)).decode("ascii")


@dataclass
class _Built:
    token: tuple
    encoded: str


class SqliteExport:
    """The encoded catalog database, rebuilt when the projections it reads have moved on.

    Thread-safe: concurrent requests for a stale copy build it once (the others wait for
    that build and share it).
    """

    def __init__(self, observatory: str):
        self.observatory = observatory
        self._lock = threading.Lock()
        self._built: _Built | None = None

    def encoded(self, conn: Any) -> str:
        """The current database, compressed and base64-encoded."""
        token = _token(conn)
        built = self._built
        if built is not None and built.token == token:
            return built.encoded
        with self._lock:
            built = self._built
            if built is not None and built.token == _token(conn):
                return built.encoded
            token, data = build_catalog_db(conn, self.observatory)
            self._built = _Built(token, encode_db(data))
            return self._built.encoded
