"""Reactions to events: projections, the submission pipeline, delivery, e-mail, ...

A handler names the event types it ``consumes``; the `crds_events.handlers.runner` feeds it
the events after its checkpoint, inside a write transaction, and stores the new checkpoint
in that same transaction. So a handler's table writes and the events it appends (through
``tx.append``) happen exactly once per event, or not at all if it raises.

Handlers with slow or external side effects (certify, SMTP) should not hold the write
transaction: let them record a cheap "to do" here and do the work elsewhere, appending the
outcome with an idempotency key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crds_events.store.eventlog import SQLiteTransaction
    from crds_events.store.interface import RecordedEvent

__all__ = ["Handler"]


class Handler:
    """Base class of handlers run by `crds_events.handlers.runner.HandlerRunner`.

    Subclasses set ``name`` (the checkpoint key: stable, unique) and ``consumes`` (event
    type names; empty means every event), and override `handle` or `handle_batch`.
    """

    name: str = ""
    consumes: frozenset[str] = frozenset()
    rebuildable: bool = False
    """True for pure projections: `drop` + replay from position 0 recreates them."""

    def setup(self, tx: SQLiteTransaction) -> None:
        """Create the handler's tables if missing (called in a transaction before use)."""

    def drop(self, tx: SQLiteTransaction) -> None:
        """Drop the handler's tables (rebuildable handlers only)."""
        raise NotImplementedError(f"handler {self.name!r} cannot be rebuilt")

    def handle(self, tx: SQLiteTransaction, record: RecordedEvent) -> None:
        """React to one event, inside ``tx``."""
        raise NotImplementedError

    def handle_batch(self, tx: SQLiteTransaction, records: Sequence[RecordedEvent]) -> None:
        """React to consecutive consumed events, inside ``tx`` (default: one by one)."""
        for record in records:
            self.handle(tx, record)
