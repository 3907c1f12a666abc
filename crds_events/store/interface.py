"""The narrow event-store interface: what every backend (SQLite now, PostgreSQL later) offers.

Vocabulary:

* a *stream* is the history of one thing (``submission:42``); its events have versions
  1, 2, 3, ... and ``UNIQUE(stream, version)`` makes concurrent writers detectable;
* the *position* is the global, gapless order of all events (1, 2, 3, ...);
* *expected version* is the optimistic-concurrency check of an append: `ANY` (no check),
  `NO_STREAM` (the stream must not exist yet) or the exact current version of the stream;
* an *idempotency key* makes an append happen at most once: appending again with a key
  already recorded adds nothing and returns the earlier positions.

`tests/store/test_eventlog.py` is the contract test module: every backend must pass it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from crds_events.errors import CrdsEventsError
from crds_events.events import Event, decode

__all__ = [
    "ANY",
    "NO_STREAM",
    "ConcurrencyError",
    "MAX_EVENT_BYTES",
    "PayloadTooLargeError",
    "StoreError",
    "RawEvent",
    "RecordedEvent",
    "AppendResult",
    "Appendable",
    "EventReader",
    "EventStore",
    "Transaction",
    "caused_by",
]

ANY: int = -1
"""Expected version meaning: append whatever the stream's current version."""

NO_STREAM: int = 0
"""Expected version meaning: the stream must not exist yet (its version is 0)."""


class StoreError(CrdsEventsError):
    """Base class of event-store errors."""


class ConcurrencyError(StoreError):
    """An append's expected version did not match the stream's current version."""

    def __init__(self, stream: str, expected: int, actual: int):
        self.stream = stream
        self.expected = expected
        self.actual = actual
        wanted = "no stream" if expected == NO_STREAM else f"version {expected}"
        super().__init__(f"stream {stream!r}: expected {wanted}, found version {actual}")


MAX_EVENT_BYTES: int = 64 * 1024
"""The largest event payload (its JSON ``data``, in UTF-8 bytes) an append accepts. Events
stay small so the log replays fast; large results go to the artifact store, the event
carries their digest (a 352 MB error message once made every read of the log crawl)."""


class PayloadTooLargeError(StoreError, ValueError):
    """An event's payload is larger than `MAX_EVENT_BYTES`; nothing was appended."""

    def __init__(self, event_type: str, size: int):
        self.event_type = event_type
        self.size = size
        super().__init__(f"{event_type}: payload of {size} bytes is larger than the "
                         f"{MAX_EVENT_BYTES} bytes an event may hold (store large results "
                         "as an artifact and record its digest)")


@dataclasses.dataclass(frozen=True)
class RawEvent:
    """An event given by name, schema version and payload rather than as a class instance.

    For importers and tests that must record a payload exactly (e.g. an old schema version).
    """

    type: str
    data: Mapping[str, Any]
    schema_version: int = 1


Appendable = Event | RawEvent


@dataclasses.dataclass(frozen=True)
class RecordedEvent:
    """One row of the log as read back. ``data`` is the payload as stored (not upcast);
    ``event`` decodes it into its class, applying upcasters."""

    position: int
    stream: str
    version: int
    type: str
    schema_version: int
    data: Mapping[str, Any]
    meta: Mapping[str, Any]
    recorded_at: str  # ISO 8601 UTC, microseconds, "Z" suffix
    idempotency_key: str | None = None

    @functools.cached_property
    def event(self) -> Event:
        """The decoded (upcast) event instance, decoded once per record object."""
        return decode(self.type, self.schema_version, self.data)

    @property
    def actor(self) -> str | None:
        return self.meta.get("actor")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict of the row (used by ``crds-events events --json``)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class AppendResult:
    """What an append did. ``positions`` are the global positions of the appended events
    (or of the earlier ones, when ``duplicate``); ``version`` is the stream's version after
    the append (for a duplicate: the version of the last event of the earlier append)."""

    positions: tuple[int, ...]
    version: int
    duplicate: bool = False

    @property
    def position(self) -> int:
        """The last position: what to `EventStore.wait_for` to see the whole append."""
        return self.positions[-1]


def caused_by(record: RecordedEvent, actor: str | None = None) -> dict[str, Any]:
    """Metadata for events appended in reaction to ``record``: causation is the record's
    position; correlation is inherited (or starts at the record itself)."""
    return {
        "actor": actor if actor is not None else record.meta.get("actor"),
        "causation_id": record.position,
        "correlation_id": record.meta.get("correlation_id") or record.position,
    }


class EventReader(Protocol):
    """The reading half of the log: what a store, an open transaction and a read-only
    `crds_events.store.reader.LogReader` (the web's request connection) all offer."""

    def read_all(
        self,
        after: int = 0,
        *,
        streams: Iterable[str] | None = None,
        types: Iterable[str] | None = None,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        """Events after global position ``after``, in position order, optionally only of
        the given streams / types, at most ``limit``."""
        ...

    def iter_all(
        self, after: int = 0, *, types: Iterable[str] | None = None, batch: int = 5000
    ) -> Iterator[RecordedEvent]:
        """Every event after ``after`` in batches (constant memory)."""
        ...

    def read_stream(
        self, stream: str, *, after_version: int = 0, limit: int | None = None
    ) -> list[RecordedEvent]:
        """Events of one stream in version order, after ``after_version``."""
        ...

    def get(self, position: int) -> RecordedEvent | None: ...

    def head(self) -> int:
        """The last position recorded (0 for an empty log)."""
        ...

    def stream_version(self, stream: str) -> int:
        """The stream's current version (0 = `NO_STREAM`: it has no events)."""
        ...

    def find_key(self, idempotency_key: str) -> RecordedEvent | None:
        """The first event appended with ``idempotency_key`` (None: never appended)."""
        ...

    def streams_with_prefix(self, prefix: str) -> list[str]:
        """The names of the streams that start with ``prefix``, sorted."""
        ...

    def read_prefix(
        self, prefix: str, *, types: Iterable[str] | None = None
    ) -> list[RecordedEvent]:
        """The events of every stream that starts with ``prefix``, in position order
        (through the stream index: the cost follows those streams, not the log)."""
        ...

    def pointer_events(self, as_of: int | None = None) -> list[RecordedEvent]:
        """The last two `ContextSet` events of each (observatory, kind) at or before
        position ``as_of`` (None: the head), in position order: enough to fold every
        context pointer (`crds_events.store.folds.CONTEXT_POINTERS`) as it was then."""
        ...


class Transaction(EventReader, Protocol):
    """A write transaction: appends and the caller's own table writes commit together."""

    def append(
        self,
        stream: str,
        events: Appendable | Sequence[Appendable],
        expected_version: int = ANY,
        *,
        meta: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult: ...

    def record(
        self,
        event: Event,
        expected_version: int = ANY,
        *,
        meta: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult:
        """Append one event to its own stream (``event.stream``)."""
        ...

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        """SQL on the caller's own tables (projections, checkpoints), in this transaction."""
        ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any: ...


class EventStore(EventReader, Protocol):
    """The operations every backend provides. All methods are safe to call from the thread
    that owns the store; use one store object per thread (or per process)."""

    def append(
        self,
        stream: str,
        events: Appendable | Sequence[Appendable],
        expected_version: int = ANY,
        *,
        meta: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult:
        """Append events atomically to one stream; raise `ConcurrencyError` when the stream's
        version is not ``expected_version`` (unless `ANY`)."""
        ...

    def record(
        self,
        event: Event,
        expected_version: int = ANY,
        *,
        meta: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult:
        """Append one event to its own stream (``event.stream``)."""
        ...

    def transaction(self) -> AbstractContextManager[Transaction]:
        """A write transaction (SQLite: ``BEGIN IMMEDIATE``) committed on clean exit."""
        ...

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        """A read of the caller's own tables (projections, checkpoints) outside any
        transaction. The ``events`` table is read only through the methods above."""
        ...

    def wait_for(self, position: int, timeout: float = 5.0) -> bool:
        """Block until ``position`` is visible to this store (True) or ``timeout`` (False)."""
        ...

    def close(self) -> None: ...
