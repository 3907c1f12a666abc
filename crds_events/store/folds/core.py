"""The fold: one read model as a pure function from (row, event) to the row's next state.

A `Fold` describes one read-model table: its columns and primary key, the event types it
consumes, which rows an event touches (``keys``) and how it changes each one (``apply``).
``apply(key, row, record)`` gets the row as it stands (a dict, or None when absent) and
returns the new row (a new dict, never a mutated one) or None for "absent". Nothing here
touches SQLite: `crds_events.store.projections` persists folds as tables, and `replay`
folds records in memory, which is how reads see their own writes and how the web shows
"state as of event N".

Row values are plain Python: str, int, bool, None and tuples of str (stored as JSON).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from crds_events import events as ev
from crds_events.store.interface import RecordedEvent

__all__ = ["Fold", "Key", "Row", "replay", "names"]

Key = tuple
Row = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Fold:
    table: str
    columns: Mapping[str, type]  # str | int | bool | tuple (JSON list of str)
    pk: tuple[str, ...]
    consumes: frozenset[str]
    keys: Callable[[RecordedEvent], Iterable[Key]]
    apply: Callable[[Key, Row | None, RecordedEvent], Row | None]

    def key_of(self, row: Row) -> Key:
        return tuple(row[c] for c in self.pk)


def replay(fold: Fold, records: Iterable[RecordedEvent], state: dict | None = None) -> dict:
    """Fold ``records`` into ``state`` (a dict key -> row; a new dict is returned)."""
    state = dict(state or {})
    consumes = fold.consumes
    for record in records:
        if record.type not in consumes:
            continue
        for key in fold.keys(record):
            row = fold.apply(key, state.get(key), record)
            if row is None:
                state.pop(key, None)
            else:
                state[key] = row
    return state


def names(*classes: type[ev.Event]) -> frozenset[str]:
    """The type names of event classes (what a fold ``consumes``)."""
    return frozenset(cls.type for cls in classes)
