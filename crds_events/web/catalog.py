"""Read functions over the projection tables, for the web (one read connection each call).

Everything here is a plain query of a projection table on a `sqlite3.Connection` (the
request's, see `crds_events.web.get_db`). A projection table that does not exist yet (a
server whose handler runner has not created it) reads as empty rather than failing the
request. The context pointers are read from the log (`crds_events.contexts.pointers`).
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

from crds_events.store.dialect import dialect_of

__all__ = [
    "FileInfo",
    "SERVED_STATES",
    "KNOWN_STATES",
    "file_info",
    "file_infos",
    "available_files",
    "bad_files",
    "latest_history",
    "remote_context",
    "remote_contexts",
    "state_token",
    "query",
    "dataset_key",
    "same_dataset",
]

# A file is downloadable only once archived and released (the `available` flag).
SERVED_STATES = ("archived",)
# Files the catalog reports on (get_file_info*): everything an operator confirmed; files of
# submissions still under review or cancelled have no official existence yet.
KNOWN_STATES = ("confirmed", "delivered", "archived")

FileInfo = dict[str, Any]
_FILE_COLUMNS = ("name", "observatory", "kind", "instrument", "filekind", "useafter", "sha1",
                 "size", "state", "available", "rejected", "blacklisted", "reject_reason",
                 "submission_id", "delivery", "created_at", "updated_at")


def query(conn: sqlite3.Connection, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
    """Rows of ``sql``; a missing projection table reads as no rows."""
    try:
        return conn.execute(sql, tuple(params)).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise


def _row(values: tuple) -> FileInfo:
    row = dict(zip(_FILE_COLUMNS, values, strict=True))
    for flag in ("available", "rejected", "blacklisted"):
        row[flag] = bool(row[flag])
    return row


_SELECT_FILES = f"SELECT {', '.join(_FILE_COLUMNS)} FROM files"


def file_info(conn: sqlite3.Connection, name: str) -> FileInfo | None:
    """The catalog row of ``name`` if the catalog knows it officially, else None."""
    rows = query(conn, f"{_SELECT_FILES} WHERE name = ?", (name,))
    if not rows:
        return None
    row = _row(rows[0])
    return row if row["state"] in KNOWN_STATES else None


def file_infos(conn: sqlite3.Connection, names: Iterable[str] | None = None) -> dict[str, FileInfo]:
    """Catalog rows by name (all known files when ``names`` is None)."""
    states = ",".join("?" * len(KNOWN_STATES))
    if names is None:
        rows = query(conn, f"{_SELECT_FILES} WHERE state IN ({states})", KNOWN_STATES)
    else:
        wanted = list(dict.fromkeys(names))
        rows = []
        for start in range(0, len(wanted), 500):  # SQLite's host-parameter limit
            chunk = wanted[start:start + 500]
            rows += query(conn, f"{_SELECT_FILES} WHERE state IN ({states}) AND name IN "
                                f"({','.join('?' * len(chunk))})", (*KNOWN_STATES, *chunk))
    return {row["name"]: row for row in map(_row, rows)}


def available_files(conn: sqlite3.Connection, kind: str | None = None) -> Iterator[tuple[str, str, int, str]]:
    """``(name, kind, size, sha1)`` of every downloadable file (archived and released)."""
    sql = "SELECT name, kind, size, sha1 FROM files WHERE available = 1 AND state = 'archived'"
    params: tuple = ()
    if kind is not None:
        sql += " AND kind = ?"
        params = (kind,)
    yield from query(conn, sql + " ORDER BY name", params)


def bad_files(conn: sqlite3.Connection) -> list[str]:
    """Rejected references and blacklisted mappings, sorted."""
    return [r[0] for r in query(
        conn, "SELECT name FROM files WHERE rejected = 1 OR blacklisted = 1 ORDER BY name")]


def latest_history(conn: sqlite3.Connection, observatory: str) -> list[tuple[str, str, str]]:
    """``(start date, context, description)`` of each change of ``latest``, oldest first.

    Dates are CRDS's ``YYYY-MM-DD HH:MM:SS`` (UTC), so they sort as text.
    """
    rows = query(conn, "SELECT recorded_at, context, description FROM context_history "
                       "WHERE observatory = ? AND kind IN ('latest', 'operational') "
                       "ORDER BY position", (observatory,))
    return [(crds_date(at), context, description or "") for at, context, description in rows]


def crds_date(recorded_at: str) -> str:
    """``2026-01-02T03:04:05.678Z`` -> ``2026-01-02 03:04:05``."""
    return recorded_at.replace("T", " ")[:19]


def remote_context(conn: sqlite3.Connection, observatory: str, pipeline: str) -> str | None:
    rows = query(conn, "SELECT context FROM remote_contexts WHERE observatory = ? AND "
                       "pipeline = ?", (observatory, pipeline))
    return rows[0][0] if rows else None


def remote_contexts(conn: sqlite3.Connection, observatory: str) -> dict[str, str]:
    return dict(query(conn, "SELECT pipeline, context FROM remote_contexts WHERE "
                            "observatory = ?", (observatory,)))


def state_token(conn: sqlite3.Connection, tables: Iterable[str]) -> tuple:
    """Changes whenever any of the projections ``tables`` changes (for caches)."""
    names = [f"projection:{t}" for t in tables]
    return tuple(sorted(query(
        conn, f"SELECT handler, position FROM _checkpoints WHERE handler IN "
              f"({','.join('?' * len(names))})", names)))


# --- the archive's dataset parameters (table `datasets`, kept by crds_events.reprocessing.datasets) ---------


def dataset_ids(conn: sqlite3.Connection, instrument: str, since: str | None = None
                ) -> list[str]:
    """Ids of ``instrument``'s datasets (exposed at or after ``since``), sorted."""
    sql = "SELECT id FROM datasets WHERE instrument = ?"
    params: list[Any] = [instrument.upper()]
    if since:
        sql += " AND exposure_date >= ?"
        params.append(since)
    return [r[0] for r in query(conn, sql + " ORDER BY id", params)]


def dataset_key(dataset_id: str) -> str:
    """The spelling-free form of a dataset id (or one half of ``<product>:<exposure>``):
    upper case, and a JWST id's detector joined with a dot, so ``jw..._00011_mirimage``,
    ``JW..._00011_MIRIMAGE`` and ``jw..._00011.MIRIMAGE`` are one id (crds's bestrefs turns
    the underscore form into the dotted one the archive's API uses)."""
    parts = []
    for part in dataset_id.upper().split(":"):
        if "_" in part and "." not in part:
            head, _sep, detector = part.rpartition("_")
            part = head + "." + detector
        parts.append(part)
    return ":".join(parts)


def same_dataset(wanted: str, found: str) -> bool:
    """Is the stored id ``found`` what ``wanted`` asks for (the id, or one of its halves)?"""
    wanted, found = dataset_key(wanted), dataset_key(found)
    return found == wanted or wanted in found.split(":")


def dataset_headers(conn: sqlite3.Connection, ids: Iterable[str], since: str | None = None
                    ) -> dict[str, dict]:
    """``{id: header}`` for ``ids``; an id may also be one half of ``<product>:<exposure>``
    (every dataset of that product, or that exposure), in any of the spellings
    `dataset_key` equates (keyed by the catalog's spelling)."""
    wanted = list(dict.fromkeys(ids))
    date = " AND exposure_date >= ?" if since else ""
    extra = [since] if since else []
    found: dict[str, dict] = {}
    for start in range(0, len(wanted), 400):
        chunk = wanted[start:start + 400]
        rows = query(conn, f"SELECT id, header FROM datasets WHERE id IN "
                           f"({','.join('?' * len(chunk))}){date}", (*chunk, *extra))
        found.update((i, json.loads(h)) for i, h in rows)
    for asked in wanted:
        if asked in found:
            continue
        halves = asked.split(":")
        if len(halves) > 2 or not all(halves):
            continue
        # the other spellings of the id, looked up exactly (the index serves them)
        spellings = sorted({":".join(c) for c in itertools.product(*map(_spellings, halves))}
                           - {asked})[:64]
        rows = query(conn, f"SELECT id, header FROM datasets WHERE id IN "
                           f"({','.join('?' * len(spellings))}){date}", (*spellings, *extra))
        found.update((i, json.loads(h)) for i, h in rows)
        if len(halves) == 2 or any(same_dataset(asked, i) for i in found):
            continue
        # one half of <product>:<exposure>. LIKE is case-blind for ASCII and its "_" matches
        # a "." too; each candidate is then checked with `same_dataset`.
        half = _like(halves[0])
        like = dialect_of(conn).like_ci  # case-blind on both backends
        rows = query(conn, f"SELECT id, header FROM datasets WHERE (id {like} ? ESCAPE '\\' OR "
                           f"id {like} ? ESCAPE '\\'){date}", (half + ":%", "%:" + half, *extra))
        found.update((i, json.loads(h)) for i, h in rows if same_dataset(asked, i))
    return found


def _spellings(half: str) -> set[str]:
    """``half`` in upper, lower and its own case, its JWST detector after "." or "_"."""
    found = set()
    for form in {half, half.upper(), half.lower()}:
        found.add(form)
        head, sep, detector = form.rpartition("." if "." in form else "_")
        if sep and "_" in head:
            found.add(head + ("_" if sep == "." else ".") + detector)
    return found


def _like(text: str) -> str:
    """``text`` as a LIKE pattern (escaped), with "_" (any one character) where it has "."
    or "_"."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%")
    return "".join("_" if char in "._" else char for char in escaped)
