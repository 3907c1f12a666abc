"""The event log and everything derived from it; nothing here knows the layers above.

* `interface`   - the backend-neutral contract: `EventReader`, `EventStore`, `Transaction`,
  `ConcurrencyError`, ANY, ...
* `eventlog`    - the SQLite backend (`SQLiteEventStore`); `open_store` picks the backend
* `postgres`    - the PostgreSQL backend (`PostgresEventStore`; `postgres_schema` its
  migrations, `postgres_reader` its reads); `transfer` copies a log between backends
* `reader`      - every query of the ``events`` table over one connection (`LogReader`)
* `asof`        - state as of event N, from indexed reads and the folds
* `migrations`  - the log's schema (`sqlite_utils.Migrations`)
* `handler`     - the `Handler` protocol and checkpoints
* `folds`       - pure projection folds: every read model, listed by `folds.all_folds`
* `projections` - folds persisted as tables, and `rebuild`
* `filestore`, `artifacts`, `backup` - the file cache, content-addressed results, backups
"""

from __future__ import annotations

from pathlib import Path

from crds_events.config import Settings
from crds_events.store.eventlog import SQLiteEventStore, SQLiteTransaction, open_database
from crds_events.store.interface import (
    ANY,
    NO_STREAM,
    AppendResult,
    ConcurrencyError,
    EventReader,
    EventStore,
    RawEvent,
    RecordedEvent,
    StoreError,
    Transaction,
    caused_by,
)

__all__ = [
    "ANY",
    "NO_STREAM",
    "AppendResult",
    "ConcurrencyError",
    "EventReader",
    "EventStore",
    "RawEvent",
    "RecordedEvent",
    "SQLiteEventStore",
    "SQLiteTransaction",
    "StoreError",
    "Transaction",
    "caused_by",
    "log_target",
    "open_database",
    "open_store",
]


def log_target(settings: Settings) -> str | Path:
    """What `open_store` opens for ``settings``: the PostgreSQL URL, or the SQLite path.

    For parts that open their own connection later (a worker on its thread)."""
    url = settings.database_url or ""
    if url.startswith(("postgresql://", "postgres://")):
        return url
    return settings.db_path


def open_store(target: str | Path | Settings) -> EventStore:
    """The event log, opened for this thread (close it when done).

    ``target``: the settings (their ``database_url``), a URL (``sqlite:///path``,
    ``postgresql://...``) or the path of a SQLite log. Domain code that needs a connection
    of its own asks here rather than naming a backend.
    """
    if isinstance(target, Settings):
        target = target.database_url or target.db_path
    if isinstance(target, str) and target.startswith(("postgresql://", "postgres://")):
        from crds_events.store.postgres import PostgresEventStore  # psycopg only when used

        return PostgresEventStore(target)
    if isinstance(target, str) and target.startswith("sqlite:///"):
        target = target[len("sqlite:///"):]
    return SQLiteEventStore(target)
