"""Schema of the event log on PostgreSQL: ordered, named migration steps (plain SQL).

The same steps as the SQLite log (`crds_events.store.migrations`), under the same names, so
an operator can compare the two: m001 the ``events`` table with its append-only triggers and
the append function, m002 the checkpoints, m003 the timeline's filter indexes, m004 the
as-of indexes. Applied steps are listed in ``_crds_events_migrations``.

Choices, and why:

* ``data`` and ``meta`` are ``text``, not ``jsonb``: the payload is read back byte for byte
  as it was written (the same JSON text as SQLite's, so `migrate-store` copies exactly and a
  digest of the stream is the same on both), and reading text skips jsonb's re-encoding.
  Queries that look inside cast to ``jsonb`` (text -> jsonb is immutable, so expression
  indexes can use it).
* ``stream`` and ``type`` are ``COLLATE "C"``: prefix ranges (``stream >= 'submission:'``)
  and ``ORDER BY stream`` must compare bytes as SQLite does, whatever the database's locale.
* The append runs in one server-side function (`crds_events_append[_one]`): one round trip per
  standalone append, and the lock, checks and insert cannot be separated by a client that
  dies between statements.
* Migrations run under the log's write lock (`WRITE_LOCK`, a transaction-level advisory
  lock taken before anything else), so two processes opening a new database at once cannot
  both run them: the second waits, then finds nothing pending.
"""

from __future__ import annotations

from typing import Any

__all__ = ["WRITE_LOCK", "CHANNEL", "MIGRATIONS", "apply_migrations", "applied_migrations"]

WRITE_LOCK = 0x6372647345564C47  # "crdsEVLG": the one advisory lock key of the log's writers
CHANNEL = "crds_events"  # NOTIFY channel: payload is the last position of a committed append

def _append_function(name: str, events_params: str, insert: str, count: str) -> str:
    """The append function ``name``: lock, idempotency key, expected version, insert of
    ``count`` events by ``insert``, NOTIFY. Two variants: one event (scalar parameters,
    the common case: arrays cost the client more to encode than the rest of an append)
    and a batch (arrays)."""
    return f"""
CREATE OR REPLACE FUNCTION {name}(
    p_stream text, p_expected integer, p_key text, p_meta text, p_recorded_at text,
    {events_params},
    OUT outcome text, OUT first_position bigint, OUT stream_version integer)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_count integer := {count};
BEGIN
    -- One writer at a time (re-entrant: a transaction may already hold it). Every statement
    -- below runs after the lock is granted, so under READ COMMITTED it sees every append
    -- committed before: positions are max + 1, gapless, and commit in position order.
    PERFORM pg_advisory_xact_lock({WRITE_LOCK});
    IF p_key IS NOT NULL THEN
        SELECT e.position, e.version INTO first_position, stream_version
            FROM events e WHERE e.idempotency_key = p_key;
        IF FOUND THEN
            outcome := 'duplicate';
            RETURN;
        END IF;
    END IF;
    -- both index lookups in one statement
    SELECT coalesce((SELECT max(e.version) FROM events e WHERE e.stream = p_stream), 0),
           coalesce((SELECT max(e.position) FROM events e), 0) + 1
        INTO stream_version, first_position;
    IF p_expected <> -1 AND p_expected <> stream_version THEN
        outcome := 'conflict';
        first_position := NULL;
        RETURN;
    END IF;
    {insert};
    -- delivered to listeners at commit (never for a rolled-back append)
    PERFORM pg_notify('{CHANNEL}', (first_position + v_count - 1)::text);
    stream_version := stream_version + v_count;
    outcome := 'appended';
END
$fn$
"""


_COLUMNS = ("position, stream, version, type, schema_version, data, meta, recorded_at, "
            "idempotency_key")
_APPEND_ONE = _append_function(
    "crds_events_append_one", "p_type text, p_schema integer, p_data text",
    f"INSERT INTO events ({_COLUMNS}) VALUES (first_position, p_stream, stream_version + 1, "
    "p_type, p_schema, p_data, p_meta, p_recorded_at, p_key)", "1")
_APPEND_MANY = _append_function(
    "crds_events_append", "p_types text[], p_schemas integer[], p_datas text[]",
    f"INSERT INTO events ({_COLUMNS}) SELECT first_position + i - 1, p_stream, "
    "stream_version + i, p_types[i], p_schemas[i], p_datas[i], p_meta, p_recorded_at, "
    "CASE WHEN i = 1 THEN p_key END FROM generate_subscripts(p_types, 1) AS i",
    "cardinality(p_types)")

_FILE_NAME_TYPES = ("'FileCertified', 'FileCataloged', 'FileReleased', 'FileMarkedBad', "
                    "'FileMarkedOk'")

MIGRATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("m001_events", (
        """CREATE TABLE events (
            position bigint PRIMARY KEY,
            stream text COLLATE "C" NOT NULL,
            version integer NOT NULL,
            type text COLLATE "C" NOT NULL,
            schema_version integer NOT NULL,
            data text NOT NULL,
            meta text NOT NULL,
            recorded_at text NOT NULL,
            idempotency_key text,
            CONSTRAINT events_stream UNIQUE (stream, version)
        )""",
        "CREATE UNIQUE INDEX events_idempotency ON events (idempotency_key)",
        # The log is append-only: history is corrected by new facts, never by editing old
        # ones. integrity_constraint_violation makes drivers raise their IntegrityError.
        """CREATE FUNCTION crds_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
        BEGIN
            RAISE EXCEPTION 'events are append-only: % is forbidden', TG_OP
                USING ERRCODE = 'integrity_constraint_violation';
        END
        $fn$""",
        "CREATE TRIGGER events_no_update BEFORE UPDATE ON events "
        "FOR EACH ROW EXECUTE FUNCTION crds_events_append_only()",
        "CREATE TRIGGER events_no_delete BEFORE DELETE ON events "
        "FOR EACH ROW EXECUTE FUNCTION crds_events_append_only()",
        "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events "
        "FOR EACH STATEMENT EXECUTE FUNCTION crds_events_append_only()",
        _APPEND_ONE,
        _APPEND_MANY,
    )),
    ("m002_checkpoints", (
        # Where each handler has read up to; written in the same transaction as its effects.
        "CREATE TABLE _checkpoints (handler text PRIMARY KEY, position bigint)",
    )),
    ("m003_event_filter_indexes", (
        "CREATE INDEX events_type_position ON events (type, position)",
        "CREATE INDEX events_actor_position ON events (((meta::jsonb) ->> 'actor'), position)",
    )),
    ("m004_as_of_indexes", (
        "CREATE INDEX events_file_name ON events (((data::jsonb) ->> 'name'), type, position) "
        f"WHERE type IN ({_FILE_NAME_TYPES})",
        "CREATE INDEX events_context_pointer ON events (((data::jsonb) ->> 'observatory'), "
        "(coalesce((data::jsonb) ->> 'kind', (data::jsonb) ->> 'pointer')), position) "
        "WHERE type = 'ContextSet'",
    )),
)


def applied_migrations(conn: Any) -> list[str]:
    """The names of the steps applied to the database of ``conn`` (a psycopg connection)."""
    exists = conn.execute("SELECT to_regclass('_crds_events_migrations')").fetchone()[0]
    if exists is None:
        return []
    return [name for (name,) in conn.execute(
        "SELECT name FROM _crds_events_migrations ORDER BY applied_at, name")]


def apply_migrations(conn: Any) -> list[str]:
    """Apply pending steps in one transaction under the write lock; the names applied.

    ``conn`` is a psycopg connection in autocommit mode (the store's first connection).
    """
    names = [name for name, _ in MIGRATIONS]
    if set(names) <= set(applied_migrations(conn)):
        return []  # the common case: nothing to lock for
    done: list[str] = []
    with conn.transaction():
        conn.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")
        conn.execute("CREATE TABLE IF NOT EXISTS _crds_events_migrations ("
                      "name text PRIMARY KEY, applied_at timestamptz NOT NULL "
                      "DEFAULT clock_timestamp())")
        applied = set(applied_migrations(conn))
        for name, statements in MIGRATIONS:
            if name in applied:
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO _crds_events_migrations (name) VALUES (%s)", (name,))
            done.append(name)
    return done
