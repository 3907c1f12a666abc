"""Copy an event log from SQLite to PostgreSQL (`crds-events migrate-store`), verified.

The events are copied as stored (the same JSON text, positions, versions, times and
idempotency keys), in position order, with PostgreSQL's COPY, inside one transaction that
holds the log's write lock: the target is checked empty *under the lock* (two migrations at
once cannot both copy; the second finds the first's events and refuses), and a copy that is
killed half-way rolls back whole. Before committing, the target is read back and its count
and `stream_digest` must equal the source's, or nothing is committed.

Handler checkpoints (``_checkpoints``) are copied too, so reactions with effects outside
the log (e-mails, deliveries) do not run again on the new backend; those of projections are
not, with their tables: they are derived. `rebuild_target` then replays every projection on
the target and compares each with the source's table where that one is up to date. Should
the rebuild be interrupted, nothing is lost: projections without a checkpoint are replayed
from the start by the server's handler runner (or by `crds-events rebuild`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from crds_events.store.handler import get_checkpoint
from crds_events.store.interface import StoreError
from crds_events.store.postgres import PostgresEventStore, redact_url
from crds_events.store.postgres_schema import WRITE_LOCK
from crds_events.store.projections import (
    PROJECTION_PREFIX,
    default_projections,
    read_table,
    rebuild,
)
from crds_events.store.records import COLUMNS

__all__ = ["TransferReport", "StreamDigest", "RebuildReport", "copy_sqlite_to_postgres",
           "rebuild_target"]

_BATCH = 10_000


class StreamDigest:
    """SHA-256 over every event row in position order, each field as stored (so equal
    digests mean the same events, in the same order, with the same payload bytes)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.count = 0
        self.last = 0

    def add(self, row: tuple) -> None:
        # position, stream, version, type, schema_version, data, meta, recorded_at, key
        fields = ["" if value is None else str(value) for value in row]
        self._hash.update(("\x1f".join(fields) + "\x1e").encode("utf-8"))
        self.count += 1
        self.last = row[0]

    def add_all(self, rows: Iterable[tuple]) -> None:
        for row in rows:
            self.add(row)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


@dataclasses.dataclass(frozen=True)
class TransferReport:
    """What a copy did: events and checkpoints copied, the stream digest both sides agree
    on, the last position, and how long it took."""

    events: int
    checkpoints: int
    digest: str
    last_position: int
    seconds: float


def _source_rows(conn: sqlite3.Connection) -> Iterable[tuple]:
    after = 0
    while True:
        rows = conn.execute(
            f"SELECT {COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
            (after, _BATCH)).fetchall()
        yield from rows
        if len(rows) < _BATCH:
            return
        after = rows[-1][0]


def copy_sqlite_to_postgres(
    source: str | Path, target_url: str, *,
    progress: Callable[[int, int], None] | None = None,
) -> TransferReport:
    """Copy the SQLite log at ``source`` into the empty PostgreSQL log at ``target_url``
    (created and migrated if needed) and verify it; see the module docstring.

    ``progress(copied, total)`` is called after each batch. Raises `StoreError` when the
    source is not a log, the target cannot be reached or is not empty, or the verification
    fails (then the target is left as it was).
    """
    started = time.monotonic()
    source = Path(source)
    if not source.is_file():
        raise StoreError(f"{source}: no SQLite event log there")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        try:
            # one read transaction: the counts, the copy and its digest see one state of
            # the source even if a server still appends to it
            src.execute("BEGIN")
            total = src.execute("SELECT count(*) FROM events").fetchone()[0]
            # a projection's checkpoint without its table would leave it empty for good
            checkpoints = [(handler, position) for handler, position in src.execute(
                "SELECT handler, position FROM _checkpoints")
                if not handler.startswith(PROJECTION_PREFIX)]
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{source}: not an event log ({exc})") from None
        target = PostgresEventStore(target_url)  # migrates an empty database
        try:
            digest = _copy(src, target, total, checkpoints, progress)
        finally:
            target.close()
    finally:
        src.close()
    return TransferReport(events=digest.count, checkpoints=len(checkpoints),
                          digest=digest.hexdigest(), last_position=digest.last,
                          seconds=time.monotonic() - started)


def _copy(src: sqlite3.Connection, target: PostgresEventStore, total: int,
          checkpoints: list[tuple], progress: Callable[[int, int], None] | None
          ) -> StreamDigest:
    where = redact_url(target.url)
    with target._connection() as conn, conn.transaction():
        conn.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")
        (held,) = conn.execute("SELECT count(*) FROM events").fetchone()
        (marks,) = conn.execute("SELECT count(*) FROM _checkpoints").fetchone()
        if held or marks:
            raise StoreError(f"{where}: the target log is not empty ({held} events, {marks} "
                             "checkpoints); migrate-store copies into an empty database only")
        source_digest = StreamDigest()
        with conn.cursor() as cursor, cursor.copy(f"COPY events ({COLUMNS}) FROM STDIN") as copy:
            for row in _source_rows(src):
                copy.write_row(row)
                source_digest.add(row)
                if progress and source_digest.count % _BATCH == 0:
                    progress(source_digest.count, total)
        if checkpoints:
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO _checkpoints (handler, position) VALUES (%s, %s)", checkpoints)
        _verify(conn, source_digest, total, where)
        if progress:
            progress(source_digest.count, total)
    return source_digest


def _verify(conn: Any, expected: StreamDigest, total: int, where: str) -> None:
    """Read the copy back (inside the copying transaction) and compare; raising here rolls
    the whole copy back."""
    if expected.count != total:
        raise StoreError(f"the source changed while copying ({total} events counted, "
                         f"{expected.count} read); nothing was committed")
    copied = StreamDigest()
    with conn.cursor(name="crds_events_verify") as cursor:
        cursor.itersize = _BATCH
        cursor.execute(f"SELECT {COLUMNS} FROM events ORDER BY position")
        copied.add_all(cursor)
    if (copied.count, copied.hexdigest()) != (expected.count, expected.hexdigest()):
        raise StoreError(f"{where}: the copy does not match the source ({copied.count} of "
                         f"{expected.count} events, digest {copied.hexdigest()[:12]} != "
                         f"{expected.hexdigest()[:12]}); nothing was committed")


@dataclasses.dataclass(frozen=True)
class RebuildReport:
    """The projections replayed on the target up to ``head``; those found equal to the
    source's tables (``compared``) and those the source had not brought up to date
    (``not_compared``: its server was behind, or never built them)."""

    head: int
    projections: tuple[str, ...]
    compared: tuple[str, ...]
    not_compared: tuple[str, ...]
    seconds: float


def rebuild_target(source: str | Path, target_url: str, *,
                   progress: Callable[[int, int], None] | None = None) -> RebuildReport:
    """Replay every projection on the PostgreSQL log at ``target_url`` (a copy of the SQLite
    log at ``source``) and check each against the source's table where that table is up to
    date with the same head: the same rows, decoded alike. Raises `StoreError` naming the
    first projection that differs (the events stay copied: they are verified already)."""
    started = time.monotonic()
    projections = default_projections()
    with PostgresEventStore(target_url) as target:
        head = rebuild(target, projections, progress=progress)
        src = sqlite3.connect(f"file:{Path(source)}?mode=ro", uri=True)
        try:
            src.execute("BEGIN")  # the tables and their checkpoints as of one moment
            compared, skipped = [], []
            for projection in projections:
                try:
                    current = get_checkpoint(src, projection.name) == head
                    theirs = read_table(src, projection) if current else None
                except sqlite3.OperationalError:  # no such table: never built there
                    theirs = None
                if theirs is None:
                    skipped.append(projection.fold.table)
                    continue
                if read_table(target, projection) != theirs:
                    raise StoreError(
                        f"{redact_url(target_url)}: the rebuilt projection "
                        f"{projection.fold.table!r} differs from the source's; the events are "
                        "copied and verified, the projection is not: report this")
                compared.append(projection.fold.table)
        finally:
            src.close()
    return RebuildReport(head=head, projections=tuple(p.fold.table for p in projections),
                         compared=tuple(compared), not_compared=tuple(skipped),
                         seconds=time.monotonic() - started)
