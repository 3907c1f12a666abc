"""The folds of registered pipelines: one row per pipeline name, one per valid key hash.

`PIPELINES` (by name) is what ``pipeline list`` and the operator commands read: state
(active / revoked), the current key's hash, when it was registered and last changed.
`PIPELINE_KEYS` (by key hash) holds only the keys that may push now - a rotated or revoked
key's row is gone - so checking a push is one primary-key lookup, whatever the number of
pipelines ever registered.
"""

from __future__ import annotations

from crds_events import events as ev
from crds_events.store.folds.core import Fold, Key, Row, names
from crds_events.store.interface import RecordedEvent

__all__ = ["PIPELINES", "PIPELINE_KEYS"]

_PIPELINE_EVENTS = names(ev.PipelineRegistered, ev.PipelineKeyRotated, ev.PipelineRevoked)


def _pipeline_apply(key: Key, row: Row | None, record: RecordedEvent) -> Row | None:
    event = record.event
    registered_at = (row or {}).get("registered_at") or record.recorded_at
    if isinstance(event, ev.PipelineRegistered):  # a revoked name registered again
        registered_at = record.recorded_at
    return {
        "name": event.name,
        "state": "revoked" if isinstance(event, ev.PipelineRevoked) else "active",
        "key_hash": "" if isinstance(event, ev.PipelineRevoked) else event.key_hash,
        "registered_at": registered_at, "changed_at": record.recorded_at,
        "actor": record.actor or "", "position": record.position,
    }


PIPELINES = Fold(
    table="pipelines",
    columns={"name": str, "state": str, "key_hash": str, "registered_at": str,
             "changed_at": str, "actor": str, "position": int},
    pk=("name",),
    consumes=_PIPELINE_EVENTS,
    keys=lambda record: [(record.event.name,)],
    apply=_pipeline_apply,
)


def _key_keys(record: RecordedEvent) -> list[Key]:
    event = record.event
    if isinstance(event, ev.PipelineKeyRotated):
        return [(event.previous_hash,), (event.key_hash,)]
    return [(event.key_hash,)]


def _key_apply(key: Key, row: Row | None, record: RecordedEvent) -> Row | None:
    event = record.event
    if isinstance(event, ev.PipelineRevoked) or key[0] != event.key_hash:
        return None  # revoked, or the key a rotation replaced
    return {"key_hash": event.key_hash, "name": event.name, "position": record.position}


PIPELINE_KEYS = Fold(
    table="pipeline_keys",
    columns={"key_hash": str, "name": str, "position": int},
    pk=("key_hash",),
    consumes=_PIPELINE_EVENTS,
    keys=_key_keys,
    apply=_key_apply,
)
