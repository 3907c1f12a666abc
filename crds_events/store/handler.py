"""The Handler protocol and checkpoints: how derived state follows the log exactly once.

A handler names the event types it ``consumes``; whoever drives it (the server's handler
runner, `rebuild`, `catch_up`) feeds it the events after its checkpoint inside one write
transaction and stores the new checkpoint in that same transaction. So a handler's table
writes and the events it appends (through ``tx.append``) happen exactly once per event, or
not at all if it raises.

Handlers with slow or external side effects (certify, SMTP) should not hold the write
transaction: let them record a cheap "to do" here and do the work elsewhere, appending the
outcome with an idempotency key.

Checkpoints live in the log database (table ``_checkpoints``, migration m002), beside the
events they point into, so a checkpoint and the effects it accounts for commit together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from crds_events.store.interface import EventStore, RecordedEvent, Transaction

__all__ = ["Handler", "get_checkpoint", "set_checkpoint", "step", "catch_up"]


class Handler:
    """Base class of handlers.

    Subclasses set ``name`` (the checkpoint key: stable, unique) and ``consumes`` (event
    type names; empty means every event), and override `handle` or `handle_batch`.
    """

    name: str = ""
    consumes: frozenset[str] = frozenset()
    rebuildable: bool = False
    """True for pure projections: `drop` + replay from position 0 recreates them."""

    def setup(self, tx: Transaction) -> None:
        """Create the handler's tables if missing (called in a transaction before use)."""

    def drop(self, tx: Transaction) -> None:
        """Drop the handler's tables (rebuildable handlers only)."""
        raise NotImplementedError(f"handler {self.name!r} cannot be rebuilt")

    def handle(self, tx: Transaction, record: RecordedEvent) -> None:
        """React to one event, inside ``tx``."""
        raise NotImplementedError

    def handle_batch(self, tx: Transaction, records: Sequence[RecordedEvent]) -> None:
        """React to consecutive consumed events, inside ``tx`` (default: one by one)."""
        for record in records:
            self.handle(tx, record)


def get_checkpoint(tx_or_store: EventStore | Transaction, handler: str) -> int:
    """The last position ``handler`` has processed (0 when it never ran)."""
    row = tx_or_store.execute(
        "SELECT position FROM _checkpoints WHERE handler = ?", (handler,)
    ).fetchone()
    return row[0] if row else 0


def set_checkpoint(tx: Transaction, handler: str, position: int) -> None:
    """Record that ``handler`` has processed everything up to ``position`` (inside ``tx``)."""
    tx.execute(
        "INSERT INTO _checkpoints (handler, position) VALUES (?, ?) "
        "ON CONFLICT(handler) DO UPDATE SET position = excluded.position",
        (handler, position),
    )


def step(store: EventStore, handler: Handler, batch: int = 500) -> int:
    """Feed ``handler`` at most ``batch`` events after its checkpoint, in one write
    transaction with the new checkpoint; how many events it was given.

    The checkpoint is re-read under the write lock, so two processes stepping one handler
    on one database cannot process the same event twice.
    """
    with store.transaction() as tx:
        checkpoint = get_checkpoint(tx, handler.name)
        head = tx.head()
        if checkpoint >= head:
            return 0
        types = handler.consumes or None
        records = tx.read_all(checkpoint, types=types, limit=batch)
        # A full batch may stop short of the head; otherwise everything up to the head
        # (as seen before the handler appended anything) has been examined.
        last = records[-1].position if len(records) == batch else head
        if records:
            handler.handle_batch(tx, records)
        set_checkpoint(tx, handler.name, last)
        return len(records)


def catch_up(store: EventStore, handlers: Iterable[Handler], batch: int = 500) -> int:
    """Set up ``handlers`` and step them until each has reached the head (including events
    they appended along the way), in the calling thread; total events handled."""
    handlers = list(handlers)
    with store.transaction() as tx:
        for handler in handlers:
            handler.setup(tx)
    total = 0
    while True:
        head = store.head()
        behind = [h for h in handlers if get_checkpoint(store, h.name) < head]
        if not behind:
            return total
        for handler in behind:
            total += step(store, handler, batch)
