"""State "as of event N" without replaying the log up to N: indexed reads + the folds.

A fold row depends only on the events whose ``fold.keys`` name it, so folding exactly
those events (up to N, in position order) with the projection folds themselves gives the
row a full replay would. The catalog's names at N are read in keyset order from the
file-name index and a context pointer's last events from the pointer index (store
migration m004), so a query costs the same at any N and any depth of the log.

Every function takes the log database's connection (a store's, or the web's read-only
request connection) and falls back to unhinted queries on a log not yet migrated. On
PostgreSQL (a connection whose `crds_events.store.dialect` says so) the payload keys are
spelled ``(data::jsonb) ->> 'key'`` as in its m004 indexes, which its planner picks
without hints, and the few SQLite-only constructs have PostgreSQL twins.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from crds_events.store import folds
from crds_events.store.dialect import POSTGRES, dialect_of
from crds_events.store.interface import RecordedEvent
from crds_events.store.migrations import CONTEXT_POINTER_KEY, FILE_NAME_INDEX_WHERE
from crds_events.store.records import COLUMNS, row_to_record

__all__ = [
    "catalog_names",
    "files_as_of",
    "last_outcomes",
    "file_states",
    "small_catalog",
    "pointer_events",
    "deliveries_as_of",
]

_FILE_TYPES = tuple(sorted(folds.FILES.consumes))
# The state a FILES row takes from each event type (the fold's `_file_apply`): a row's state
# is that of the last such event of its file, since rows are created by FileCertified /
# FileCataloged, never removed, and ignore outcomes that come before them.
_STATE_OF = {
    "FileCertified": "submitted", "FileCataloged": "delivered", "FileReleased": "archived",
    "SubmissionConfirmed": "confirmed", "SubmissionForced": "confirmed",
    "SubmissionRejected": "cancelled", "SubmissionFailed": "cancelled",
    "SubmissionCancelled": "cancelled",
}
_CREATING = ("FileCertified", "FileCataloged")
_NAMED = ("FileCertified", "FileCataloged", "FileReleased", "FileMarkedBad", "FileMarkedOk")
# Events whose fold keys are lists in ``data`` (``files``, ``blacklisted``...): few, so they
# are scanned by type and filtered by key (mark bad / ok name one file *and* list others).
_LISTING = (*(t for t in _FILE_TYPES if t not in _NAMED), "FileMarkedBad", "FileMarkedOk")
if set(_STATE_OF) | set(_NAMED) != set(_FILE_TYPES):  # pragma: no cover - guards the fold
    raise RuntimeError("as-of: the FILES fold consumes event types the as-of queries "
                       "do not know; update _STATE_OF / _NAMED")
_NAME = "json_extract(data, '$.name')"  # as in the events_file_name index
# the key of the events_context_pointer index, spelled as there for the planner to use it
_OBSERVATORY, _POINTER = CONTEXT_POINTER_KEY


def _in(values: Sequence) -> str:
    return ",".join("?" * len(values))


def _pg(conn: sqlite3.Connection) -> bool:
    return dialect_of(conn) is POSTGRES


def _spelled(conn: sqlite3.Connection, sql: str) -> str:
    """``sql`` in the connection's dialect: SQLite's key expressions as PostgreSQL's."""
    if not _pg(conn):
        return sql
    for name in ("name", "observatory", "kind", "pointer", "submission_id", "delivery"):
        sql = sql.replace(f"json_extract(data, '$.{name}')", POSTGRES.json_text("data", name))
    return sql


def _execute(conn: sqlite3.Connection, sql: str, params: list) -> list[tuple]:
    """``sql`` with ``INDEXED BY`` the as-of indexes of store migration m004 where it says
    ``{hint}`` (file names) or ``{pointer_hint}`` (the planner, without statistics, prefers
    the type index), or without them on a log not yet migrated."""
    if _pg(conn):  # no hints: PostgreSQL's planner finds the expression indexes itself
        return conn.execute(_spelled(conn, sql.format(hint="", pointer_hint="")),
                            params).fetchall()
    try:
        return conn.execute(sql.format(hint="INDEXED BY events_file_name",
                                       pointer_hint="INDEXED BY events_context_pointer"),
                            params).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such index" not in str(exc):
            raise
        return conn.execute(sql.format(hint="", pointer_hint=""), params).fetchall()


def _records(conn: sqlite3.Connection, where: str, params: list) -> list[RecordedEvent]:
    sql = _spelled(conn, f"SELECT {COLUMNS} FROM events WHERE {where} ORDER BY position")
    return [row_to_record(r) for r in conn.execute(sql, params)]


# --- the files catalog -----------------------------------------------------------------------


def catalog_names(conn: sqlite3.Connection, position: int, after: str, limit: int) -> list[str]:
    """The first ``limit`` names after ``after`` (by name) of the files that exist as of
    ``position`` (a FileCertified or FileCataloged event at or before it)."""
    rows = _execute(
        conn,
        f"SELECT DISTINCT {_NAME} FROM events {{hint}} WHERE {FILE_NAME_INDEX_WHERE} "
        f"AND type IN ({_in(_CREATING)}) AND {_NAME} > ? AND position <= ? "
        f"ORDER BY {_NAME} LIMIT ?", [*_CREATING, after, position, limit])
    return [r[0] for r in rows]


def files_as_of(conn: sqlite3.Connection, names: list[str], position: int) -> dict[str, dict]:
    """The FILES rows of ``names`` as of ``position``: the fold over just their events."""
    if not names:
        return {}
    wanted = set(names)
    found = {r.position: r for r in _records(
        conn, f"{FILE_NAME_INDEX_WHERE} AND {_NAME} IN ({_in(names)}) AND position <= ?",
        [*names, position])}
    for record in _records(conn, f"type IN ({_in(_LISTING)}) AND position <= ?",
                           [*_LISTING, position]):
        if any(key[0] in wanted for key in folds.FILES.keys(record)):
            found[record.position] = record
    state = folds.replay(folds.FILES, (found[p] for p in sorted(found)))
    return {n: state[(n,)] for n in names if (n,) in state}


def last_outcomes(conn: sqlite3.Connection, position: int
                  ) -> dict[str, dict[str, tuple[int, str]]]:
    """name -> submission id -> (position, state) of that submission's last outcome naming
    the file, up to N (an outcome changes a row only when its submission owns the row)."""
    outcomes = [t for t in _LISTING if t in _STATE_OF]
    last: dict[str, dict[str, tuple[int, str]]] = {}
    for record in _records(conn, f"type IN ({_in(outcomes)}) AND position <= ?",
                           [*outcomes, position]):
        submission = record.data.get("submission_id", "")
        for (name,) in folds.FILES.keys(record):
            last.setdefault(name, {})[submission] = (record.position, _STATE_OF[record.type])
    return last


def file_states(conn: sqlite3.Connection, position: int, after: str = "", limit: int = -1,
                outcomes: dict | None = None) -> list[tuple[str, str]]:
    """(name, state) of the files of the catalog as of ``position``, by name, the first
    ``limit`` (-1: all) after ``after``: grouped from the file-name index, without folding
    (``outcomes``: `last_outcomes` of ``position``, when the caller already has them)."""
    outcomes = last_outcomes(conn, position) if outcomes is None else outcomes
    state_types = [t for t in _NAMED if t in _STATE_OF]
    if _pg(conn):  # no bare columns beside max(), no sum of booleans, string_agg
        last_type, owners = ("(array_agg(type ORDER BY position DESC))[1]",
                             "string_agg(DISTINCT CASE WHEN type IN ({}) THEN "
                             "json_extract(data, '$.submission_id') END, ',')")
    else:
        last_type, owners = ("type", "group_concat(DISTINCT CASE WHEN type IN ({}) "
                             "THEN json_extract(data, '$.submission_id') END)")
    rows = _execute(
        conn,
        f"SELECT {_NAME}, {last_type}, max(position), "
        f"sum(CASE WHEN type = 'FileCertified' THEN 1 ELSE 0 END), "
        f"{owners.format(_in(_CREATING))} FROM events "
        f"{{hint}} WHERE {FILE_NAME_INDEX_WHERE} AND type IN ({_in(state_types)}) "
        f"AND {_NAME} > ? AND position <= ? GROUP BY {_NAME} "
        f"HAVING sum(CASE WHEN type IN ({_in(_CREATING)}) THEN 1 ELSE 0 END) > 0 "
        f"ORDER BY {_NAME} LIMIT ?",
        [*state_types, *_CREATING, after, position, *_CREATING,
         limit if limit >= 0 or not _pg(conn) else None])
    found = []
    # A name certified by more than one submission (a refused duplicate under a stored
    # name, a resubmission) takes its state from whose submission owns the row, which the
    # last event alone does not tell: those few names are folded exactly.
    # (Only max() may pick the bare ``type``: the other aggregates are sum/group_concat.)
    folded = files_as_of(conn, [name for name, _, _, certified, owners in rows
                                if certified > 1 or "," in (owners or "")], position)
    for name, type_, at, _, owner in rows:
        if name in folded:
            found.append((name, folded[name]["state"]))
            continue
        outcome = outcomes.get(name, {}).get(owner or "")
        found.append((name, outcome[1] if outcome and outcome[0] > at else _STATE_OF[type_]))
    return found


def small_catalog(conn: sqlite3.Connection, position: int, limit: int) -> bool:
    """Are there at most ``limit`` file events up to ``position`` (cheap to count all)?"""
    (count,) = _execute(
        conn,
        f"SELECT count(*) FROM (SELECT 1 FROM events {{hint}} WHERE {FILE_NAME_INDEX_WHERE} "
        f"AND position <= ? LIMIT ?) AS found", [position, limit + 1])[0]
    return count <= limit


# --- context pointers ------------------------------------------------------------------------


def _pointer_keys(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """Every (observatory, kind) a ContextSet ever named: a skip scan of the pointer index
    (one seek per key; there are a handful)."""
    keys: list[tuple[str, str]] = []
    select = (f"SELECT {_OBSERVATORY}, {_POINTER} FROM events {{pointer_hint}} "
              "WHERE type = 'ContextSet' AND ")
    observatory, kind = "", None
    while True:
        row = None
        if kind is not None:
            row = _execute(conn, select + f"{_OBSERVATORY} = ? AND {_POINTER} > ? "
                           f"ORDER BY {_POINTER} LIMIT 1", [observatory, kind])
        if not row:
            row = _execute(conn, select + f"{_OBSERVATORY} > ? ORDER BY {_OBSERVATORY}, "
                           f"{_POINTER} LIMIT 1", [observatory])
        if not row:
            return keys
        observatory, kind = row[0]
        keys.append((observatory, kind))


def pointer_events(conn: sqlite3.Connection, as_of: int | None = None) -> list[RecordedEvent]:
    """The last two ContextSet events of each (observatory, kind) at or before ``as_of``
    (None: the head), in position order. A pointer row is made by its last ContextSet from
    the one before (whose context is the default ``previous``), so folding these gives
    every pointer's row as a full replay would."""
    upto = as_of if as_of is not None else (
        conn.execute("SELECT max(position) FROM events").fetchone()[0] or 0)
    if _pg(conn):  # one window query over the pointer index
        observatory, kind = (_spelled(conn, key) for key in CONTEXT_POINTER_KEY)
        return [row_to_record(r) for r in conn.execute(
            f"SELECT {COLUMNS} FROM (SELECT {COLUMNS}, row_number() OVER (PARTITION BY "
            f"{observatory}, {kind} ORDER BY position DESC) AS rank FROM events "
            "WHERE type = 'ContextSet' AND position <= ?) AS latest WHERE rank <= 2 "
            "ORDER BY position", [upto])]
    tail: list[int] = []
    for observatory, kind in _pointer_keys(conn):
        tail += [r[0] for r in _execute(
            conn,
            f"SELECT position FROM events {{pointer_hint}} WHERE type = 'ContextSet' "
            f"AND {_OBSERVATORY} = ? AND {_POINTER} = ? AND position <= ? "
            "ORDER BY position DESC LIMIT 2", [observatory, kind, upto])]
    return _records(conn, f"position IN ({_in(tail)})", tail) if tail else []


# --- deliveries ------------------------------------------------------------------------------


def deliveries_as_of(conn: sqlite3.Connection, position: int, limit: int) -> list[dict]:
    """The ``limit`` deliveries created last up to ``position`` (newest first), as of it."""
    fold = folds.DELIVERIES
    created: dict[str, int] = {}  # name -> position of its (last) DeliveryCreated
    for name, at in conn.execute(  # newest first: read only as far as needed
            _spelled(conn, "SELECT json_extract(data, '$.delivery'), position FROM events "
                     "WHERE type = 'DeliveryCreated' AND position <= ? "
                     "ORDER BY position DESC"), (position,)):
        created.setdefault(name, at)
        if len(created) == limit:
            break
    if not created:
        return []
    # a delivery's row starts at its DeliveryCreated (the fold ignores earlier events), so
    # only events from the oldest of these creations on can change these rows
    types = sorted(fold.consumes)
    names = list(created)
    records = [r for r in _records(
        conn,
        f"type IN ({_in(types)}) AND position BETWEEN ? AND ? "
        f"AND json_extract(data, '$.delivery') IN ({_in(names)})",
        [*types, min(created.values()), position, *names])
        if any(key[0] in created for key in fold.keys(r))]
    state = folds.replay(fold, records)
    return [state[(n,)] for n in names if (n,) in state]
