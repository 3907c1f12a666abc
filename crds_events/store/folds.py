"""Projection folds: pure functions from (row, event) to the row's next state.

A `Fold` describes one read-model table: its columns and primary key, the event types it
consumes, which rows an event touches (``keys``) and how it changes each one (``apply``).
``apply(key, row, record)`` gets the row as it stands (a dict, or None when absent) and
returns the new row (a new dict, never a mutated one) or None for "absent". Nothing here
touches SQLite: `crds_events.store.projections` persists folds as tables, and `replay`
folds records in memory, which is how the web shows "state as of event N".

Row values are plain Python: str, int, bool, None and tuples of str (stored as JSON).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from crds_events import events as ev
from crds_events.store.interface import RecordedEvent

__all__ = [
    "Fold",
    "Key",
    "Row",
    "replay",
    "register_fold",
    "all_folds",
    "FILES",
    "SUBMISSIONS",
    "DELIVERIES",
    "CONTEXT_POINTERS",
    "CONTEXT_HISTORY",
    "REMOTE_CONTEXTS",
]

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


_FOLDS: dict[str, Fold] = {}


def register_fold(fold: Fold) -> Fold:
    """Add a fold to the set that `all_folds` (and so ``serve`` and ``rebuild``) uses."""
    if fold.table in _FOLDS:
        raise ValueError(f"a fold for table {fold.table!r} is already registered")
    _FOLDS[fold.table] = fold
    return fold


# Folds that live beside their domain (users, locks, the e-mail outbox) register when their
# module is imported; importing them here gives every caller of `all_folds` (serve, rebuild,
# the web's "as of event N") the same complete set, whatever it happened to import before.
_DOMAIN_FOLD_MODULES = ("crds_events.accounts.users", "crds_events.accounts.locks", "crds_events.mail.outbox")


def all_folds() -> list[Fold]:
    """Every registered fold, the domain modules' included."""
    for module in _DOMAIN_FOLD_MODULES:
        importlib.import_module(module)
    return list(_FOLDS.values())


def _names(*classes: type[ev.Event]) -> frozenset[str]:
    return frozenset(cls.type for cls in classes)


# --- files catalog -------------------------------------------------------------------------

_FILE_COLUMNS: dict[str, type] = {
    "name": str,
    "observatory": str,
    "kind": str,  # reference | mapping
    "instrument": str,
    "filekind": str,
    "useafter": str,
    "sha1": str,
    "size": int,
    # submitted -> confirmed -> delivered -> archived; or cancelled
    "state": str,
    "certify_status": str,
    "available": bool,  # downloadable (released after archiving)
    "rejected": bool,  # marked bad by an operator
    "blacklisted": bool,  # refers (transitively) to a rejected file
    "reject_reason": str,
    "submission_id": str,
    "delivery": str,
    "created_at": str,
    "updated_at": str,
    "position": int,  # last event that changed the row
}


def _new_file(name: str, record: RecordedEvent) -> Row:
    return {
        "name": name, "observatory": "", "kind": "", "instrument": "", "filekind": "",
        "useafter": "", "sha1": "", "size": 0, "state": "", "certify_status": "",
        "available": False, "rejected": False, "blacklisted": False, "reject_reason": "",
        "submission_id": "", "delivery": "", "created_at": record.recorded_at,
        "updated_at": record.recorded_at, "position": record.position,
    }


def _file_keys(record: RecordedEvent) -> list[Key]:
    event = record.event
    if isinstance(event, ev.FileMarkedBad):
        return [(event.name,)] + [(n,) for n in event.blacklisted if n != event.name]
    if isinstance(event, ev.FileMarkedOk):
        return [(event.name,)] + [(n,) for n in event.unblacklisted if n != event.name]
    if hasattr(event, "files"):  # submission outcomes
        return [(n,) for n in event.files]
    return [(event.name,)]


def _file_apply(key: Key, row: Row | None, record: RecordedEvent) -> Row | None:
    event = record.event
    name = key[0]
    if isinstance(event, ev.FileCertified):
        row = dict(row) if row else _new_file(name, record)
        row.update(
            kind=event.kind, instrument=event.instrument, filekind=event.filekind,
            useafter=event.useafter, sha1=event.sha1, size=event.size, state="submitted",
            certify_status=event.status, submission_id=event.submission_id,
        )
    elif isinstance(event, ev.FileCataloged):
        row = dict(row) if row else _new_file(name, record)
        row.update(
            observatory=event.observatory, kind=event.kind, instrument=event.instrument,
            filekind=event.filekind, useafter=event.useafter, sha1=event.sha1,
            size=event.size, state="delivered", delivery=event.delivery,
            submission_id=event.submission_id or row["submission_id"],
        )
    elif row is None:
        return None  # outcome for a file this catalog never heard of
    else:
        row = dict(row)
        if isinstance(event, ev.SubmissionConfirmed | ev.SubmissionForced):
            row["state"] = "confirmed"
        elif isinstance(event, ev.SubmissionRejected | ev.SubmissionFailed | ev.SubmissionCancelled):
            row["state"] = "cancelled"
        elif isinstance(event, ev.FileReleased):
            row.update(state="archived", available=True)
        elif isinstance(event, ev.FileMarkedBad):
            if name == event.name:
                row.update(rejected=True, reject_reason=event.reason)
            else:
                row["blacklisted"] = True
        elif isinstance(event, ev.FileMarkedOk):
            if name == event.name:
                row.update(rejected=False, reject_reason="")
            else:
                row["blacklisted"] = False
    row.update(updated_at=record.recorded_at, position=record.position)
    return row


FILES = register_fold(Fold(
    table="files",
    columns=_FILE_COLUMNS,
    pk=("name",),
    consumes=_names(
        ev.FileCertified, ev.FileCataloged, ev.SubmissionConfirmed, ev.SubmissionForced,
        ev.SubmissionRejected, ev.SubmissionFailed, ev.SubmissionCancelled, ev.FileReleased,
        ev.FileMarkedBad, ev.FileMarkedOk,
    ),
    keys=_file_keys,
    apply=_file_apply,
))


# --- submissions -------------------------------------------------------------------------------

_SUBMISSION_STATES = {
    ev.SubmissionProgress: "processing",
    ev.SubmissionReady: "ready",
    ev.SubmissionRejected: "rejected",
    ev.SubmissionFailed: "failed",
    ev.SubmissionConfirmed: "confirmed",
    ev.SubmissionForced: "forced",
    ev.SubmissionCancelled: "cancelled",
}


def _submission_apply(key: Key, row: Row | None, record: RecordedEvent) -> Row | None:
    event = record.event
    if isinstance(event, ev.SubmissionStarted):
        row = {
            "submission_id": event.submission_id, "observatory": event.observatory,
            "deliverer": event.deliverer, "instrument": event.instrument,
            "description": event.description, "change_level": event.change_level,
            "state": "started", "uploaded": event.files, "certified": (), "files": (),
            "new_context": "", "message": "", "decided_by": "", "delivery": "",
            "actor": record.actor or "", "started_at": record.recorded_at,
        }
    elif row is None:
        return None
    else:
        row = dict(row)
        if isinstance(event, ev.FileCertified):
            row["certified"] = (*row["certified"], event.name)
        elif isinstance(event, ev.DeliveryCreated):
            row["delivery"] = event.delivery
        else:
            row["state"] = _SUBMISSION_STATES[type(event)]
            if isinstance(event, ev.SubmissionProgress):
                row["message"] = event.message
            elif isinstance(event, ev.SubmissionReady):
                row.update(files=event.files, new_context=event.new_context, message="")
            elif isinstance(event, ev.SubmissionRejected):
                row["message"] = event.reason
            elif isinstance(event, ev.SubmissionFailed):
                row["message"] = event.error
            else:  # confirmed / forced / cancelled
                row["decided_by"] = event.by
                if not isinstance(event, ev.SubmissionCancelled):
                    row["new_context"] = event.new_context
                elif event.reason:
                    row["message"] = event.reason
    row.update(updated_at=record.recorded_at, position=record.position)
    return row


SUBMISSIONS = register_fold(Fold(
    table="submissions",
    columns={
        "submission_id": str, "observatory": str, "deliverer": str, "instrument": str,
        "description": str, "change_level": str, "state": str, "uploaded": tuple,
        "certified": tuple, "files": tuple, "new_context": str, "message": str,
        "decided_by": str, "delivery": str, "actor": str, "started_at": str,
        "updated_at": str, "position": int,
    },
    pk=("submission_id",),
    consumes=_names(ev.SubmissionStarted, ev.FileCertified, ev.DeliveryCreated,
                    *_SUBMISSION_STATES),
    keys=lambda record: [(record.event.submission_id,)],
    apply=_submission_apply,
))


# --- deliveries --------------------------------------------------------------------------------

_DELIVERY_STATES = {
    ev.DeliveryArchiving: "archiving",
    ev.DeliveryFailed: "failed",
    ev.DeliveryArchived: "archived",
}


def _delivery_apply(key: Key, row: Row | None, record: RecordedEvent) -> Row | None:
    event = record.event
    if isinstance(event, ev.DeliveryCreated):
        row = {
            "name": event.delivery, "observatory": event.observatory,
            "submission_id": event.submission_id, "files": event.files,
            "catalog": event.catalog, "state": "created", "reason": "",
            "created_at": record.recorded_at,
        }
    elif row is None:
        return None
    else:
        row = dict(row)
        row["state"] = _DELIVERY_STATES[type(event)]
        row["reason"] = event.reason if isinstance(event, ev.DeliveryFailed) else ""
    row.update(updated_at=record.recorded_at, position=record.position)
    return row


DELIVERIES = register_fold(Fold(
    table="deliveries",
    columns={
        "name": str, "observatory": str, "submission_id": str, "files": tuple,
        "catalog": str, "state": str, "reason": str, "created_at": str, "updated_at": str,
        "position": int,
    },
    pk=("name",),
    consumes=_names(ev.DeliveryCreated, *_DELIVERY_STATES),
    keys=lambda record: [(record.event.delivery,)],
    apply=_delivery_apply,
))


# --- contexts ------------------------------------------------------------------------------


def _pointer_apply(key: Key, row: Row | None, record: RecordedEvent) -> Row | None:
    event = record.event
    previous = event.previous if event.previous is not None else (row or {}).get("context")
    return {
        "observatory": event.observatory, "kind": event.kind, "context": event.context,
        "previous": previous, "description": event.description, "actor": record.actor or "",
        "set_at": record.recorded_at, "position": record.position,
    }


CONTEXT_POINTERS = register_fold(Fold(
    table="context_pointers",
    columns={
        "observatory": str, "kind": str, "context": str, "previous": str,
        "description": str, "actor": str, "set_at": str, "position": int,
    },
    pk=("observatory", "kind"),
    consumes=_names(ev.ContextSet),
    keys=lambda record: [(record.event.observatory, record.event.kind)],
    apply=_pointer_apply,
))


def _history_apply(key: Key, row: Row | None, record: RecordedEvent) -> Row | None:
    event = record.event
    return {
        "position": record.position, "observatory": event.observatory, "kind": event.kind,
        "context": event.context, "previous": event.previous,
        "description": event.description, "actor": record.actor or "",
        "recorded_at": record.recorded_at,
    }


CONTEXT_HISTORY = register_fold(Fold(
    table="context_history",
    columns={
        "position": int, "observatory": str, "kind": str, "context": str, "previous": str,
        "description": str, "actor": str, "recorded_at": str,
    },
    pk=("position",),
    consumes=_names(ev.ContextSet),
    keys=lambda record: [(record.position,)],
    apply=_history_apply,
))


def _remote_apply(key: Key, row: Row | None, record: RecordedEvent) -> Row | None:
    event = record.event
    return {
        "observatory": event.observatory, "pipeline": event.pipeline,
        "context": event.context, "pushed_at": record.recorded_at,
        "position": record.position,
    }


REMOTE_CONTEXTS = register_fold(Fold(
    table="remote_contexts",
    columns={"observatory": str, "pipeline": str, "context": str, "pushed_at": str,
             "position": int},
    pk=("observatory", "pipeline"),
    consumes=_names(ev.RemoteContextPushed),
    keys=lambda record: [(record.event.observatory, record.event.pipeline)],
    apply=_remote_apply,
))
