"""Schema of the event log database, as `sqlite_utils.Migrations` steps.

Migrations are applied inside a ``BEGIN IMMEDIATE`` transaction (see `apply_migrations`) so
that two processes opening a new database at once cannot both run them: the second waits,
then finds nothing pending. Projection tables are *not* migrated: they are derived data,
created by their projections and rebuilt from the log when their shape changes.
"""

from __future__ import annotations

import sqlite_utils

__all__ = ["migrations", "apply_migrations", "FILE_NAME_INDEX_WHERE", "CONTEXT_POINTER_KEY"]

migrations = sqlite_utils.Migrations("crds_events.store")


@migrations()
def m001_events(db: sqlite_utils.Database) -> None:
    db["events"].create(
        {
            "position": int,
            "stream": str,
            "version": int,
            "type": str,
            "schema_version": int,
            "data": str,
            "meta": str,
            "recorded_at": str,
            "idempotency_key": str,
        },
        pk="position",  # INTEGER PRIMARY KEY: the rowid, max+1 on insert, gapless
        not_null={"stream", "version", "type", "schema_version", "data", "meta", "recorded_at"},
    )
    # One index serves both the concurrency check and reads of a stream in order.
    db["events"].create_index(["stream", "version"], unique=True, index_name="events_stream")
    db["events"].create_index(["idempotency_key"], unique=True, index_name="events_idempotency")
    # The log is append-only: history is corrected by new facts, never by editing old ones.
    db.execute(
        "CREATE TRIGGER events_no_update BEFORE UPDATE ON events "
        "BEGIN SELECT RAISE(ABORT, 'events are append-only: UPDATE is forbidden'); END"
    )
    db.execute(
        "CREATE TRIGGER events_no_delete BEFORE DELETE ON events "
        "BEGIN SELECT RAISE(ABORT, 'events are append-only: DELETE is forbidden'); END"
    )


@migrations()
def m002_checkpoints(db: sqlite_utils.Database) -> None:
    # Where each handler has read up to; written in the same transaction as its effects.
    db["_checkpoints"].create({"handler": str, "position": int}, pk="handler")


@migrations()
def m003_event_filter_indexes(db: sqlite_utils.Database) -> None:
    # The timeline pages filter by type and by actor, newest first; on a log of millions of
    # events these would otherwise scan the whole table.
    db.execute("CREATE INDEX IF NOT EXISTS events_type_position ON events(type, position)")
    db.execute(
        "CREATE INDEX IF NOT EXISTS events_actor_position "
        "ON events(json_extract(meta, '$.actor'), position)"
    )


# The files-catalog events that name their file in ``data.name``. The web's "as of event N"
# finds a file's events (and the catalog's names at N) through this index instead of
# replaying the log; queries must repeat this WHERE text for SQLite to use the index.
FILE_NAME_INDEX_WHERE = ("type IN ('FileCertified', 'FileCataloged', 'FileReleased', "
                         "'FileMarkedBad', 'FileMarkedOk')")


# A context pointer's key in a ContextSet payload (schema v1 called ``kind`` ``pointer``).
CONTEXT_POINTER_KEY = ("json_extract(data, '$.observatory')",
                       "coalesce(json_extract(data, '$.kind'), json_extract(data, '$.pointer'))")


@migrations()
def m004_as_of_indexes(db: sqlite_utils.Database) -> None:
    # "As of event N" reads a page of the catalog and the context pointers as they were at
    # N from these, instead of replaying the log up to N.
    db.execute(
        "CREATE INDEX IF NOT EXISTS events_file_name "
        "ON events(json_extract(data, '$.name'), type, position) "
        f"WHERE {FILE_NAME_INDEX_WHERE}"
    )
    db.execute(
        "CREATE INDEX IF NOT EXISTS events_context_pointer "
        f"ON events({', '.join(CONTEXT_POINTER_KEY)}, position) WHERE type = 'ContextSet'"
    )


def apply_migrations(db: sqlite_utils.Database) -> None:
    """Apply pending migrations under a write lock (no-op when up to date)."""
    if not migrations.pending(db) and db["events"].exists():
        return
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        migrations.apply(db)
    except BaseException:
        db.conn.rollback()
        raise
    db.conn.execute("COMMIT")
