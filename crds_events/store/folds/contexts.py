"""The folds of the context pointers, their history and the pipelines' remote contexts."""

from __future__ import annotations

from crds_events import events as ev
from crds_events.store.folds.core import Fold, Key, Row, names
from crds_events.store.interface import RecordedEvent

__all__ = ["CONTEXT_POINTERS", "CONTEXT_HISTORY", "REMOTE_CONTEXTS"]


# --- contexts ------------------------------------------------------------------------------


def _pointer_apply(key: Key, row: Row | None, record: RecordedEvent) -> Row | None:
    event = record.event
    previous = event.previous if event.previous is not None else (row or {}).get("context")
    return {
        "observatory": event.observatory, "kind": event.kind, "context": event.context,
        "previous": previous, "description": event.description, "actor": record.actor or "",
        "set_at": record.recorded_at, "position": record.position,
    }


CONTEXT_POINTERS = Fold(
    table="context_pointers",
    columns={
        "observatory": str, "kind": str, "context": str, "previous": str,
        "description": str, "actor": str, "set_at": str, "position": int,
    },
    pk=("observatory", "kind"),
    consumes=names(ev.ContextSet),
    keys=lambda record: [(record.event.observatory, record.event.kind)],
    apply=_pointer_apply,
)


def _history_apply(key: Key, row: Row | None, record: RecordedEvent) -> Row | None:
    event = record.event
    return {
        "position": record.position, "observatory": event.observatory, "kind": event.kind,
        "context": event.context, "previous": event.previous,
        "description": event.description, "actor": record.actor or "",
        "recorded_at": record.recorded_at,
    }


CONTEXT_HISTORY = Fold(
    table="context_history",
    columns={
        "position": int, "observatory": str, "kind": str, "context": str, "previous": str,
        "description": str, "actor": str, "recorded_at": str,
    },
    pk=("position",),
    consumes=names(ev.ContextSet),
    keys=lambda record: [(record.position,)],
    apply=_history_apply,
)


def _remote_apply(key: Key, row: Row | None, record: RecordedEvent) -> Row | None:
    event = record.event
    return {
        "observatory": event.observatory, "pipeline": event.pipeline,
        "context": event.context, "pushed_at": record.recorded_at,
        "position": record.position,
    }


REMOTE_CONTEXTS = Fold(
    table="remote_contexts",
    columns={"observatory": str, "pipeline": str, "context": str, "pushed_at": str,
             "position": int},
    pk=("observatory", "pipeline"),
    consumes=names(ev.RemoteContextPushed),
    keys=lambda record: [(record.event.observatory, record.event.pipeline)],
    apply=_remote_apply,
)
