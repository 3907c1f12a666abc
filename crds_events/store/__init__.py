"""The event log and everything derived from it; nothing here knows the layers above.

* `interface`   - the backend-neutral contract: `EventReader`, `EventStore`, `Transaction`,
  `ConcurrencyError`, ANY, ...
* `eventlog`    - the SQLite backend (`SQLiteEventStore`); `open_store` picks the backend
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
    "open_database",
    "open_store",
]


def open_store(path: str | Path) -> EventStore:
    """The event log at ``path``, opened for this thread (close it when done).

    Domain code that needs a connection of its own asks here rather than naming a backend:
    SQLite is the only one so far.
    """
    return SQLiteEventStore(path)
