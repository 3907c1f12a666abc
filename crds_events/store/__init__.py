"""The event log and everything derived from it.

* `interface`   - the backend-neutral contract: `EventStore`, `ConcurrencyError`, ANY, ...
* `eventlog`    - the SQLite backend (`SQLiteEventStore`)
* `migrations`  - the log's schema (`sqlite_utils.Migrations`)
* `folds`       - pure projection folds (also used in memory for "as of event N")
* `projections` - folds persisted as tables, and `rebuild`
"""

from crds_events.store.eventlog import SQLiteEventStore, SQLiteTransaction, open_database
from crds_events.store.interface import (
    ANY,
    NO_STREAM,
    AppendResult,
    ConcurrencyError,
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
    "EventStore",
    "RawEvent",
    "RecordedEvent",
    "SQLiteEventStore",
    "SQLiteTransaction",
    "StoreError",
    "Transaction",
    "caused_by",
    "open_database",
]
