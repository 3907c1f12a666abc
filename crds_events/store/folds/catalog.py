"""The folds of the files catalog, the submissions and the deliveries (pure functions)."""

from __future__ import annotations

from crds_events import events as ev
from crds_events.store.folds.core import Fold, Key, Row, names
from crds_events.store.interface import RecordedEvent

__all__ = ["FILES", "SUBMISSIONS", "DELIVERIES"]


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


# A file in these states is in the store; a later submission that names it (a duplicate
# uploaded under the stored name, refused) must not turn its row into that submission's.
_STORED_STATES = frozenset({"confirmed", "delivered", "archived"})
_DECISIONS = (ev.SubmissionConfirmed, ev.SubmissionForced, ev.SubmissionRejected,
              ev.SubmissionFailed, ev.SubmissionCancelled)


def _file_apply(key: Key, row: Row | None, record: RecordedEvent) -> Row | None:
    event = record.event
    name = key[0]
    if isinstance(event, ev.FileCertified):
        if row and row["state"] in _STORED_STATES and \
                row["submission_id"] != event.submission_id:
            return row
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
    elif isinstance(event, _DECISIONS) and row["submission_id"] != event.submission_id:
        return row  # another submission's outcome naming this (stored) file
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


FILES = Fold(
    table="files",
    columns=_FILE_COLUMNS,
    pk=("name",),
    consumes=names(
        ev.FileCertified, ev.FileCataloged, ev.SubmissionConfirmed, ev.SubmissionForced,
        ev.SubmissionRejected, ev.SubmissionFailed, ev.SubmissionCancelled, ev.FileReleased,
        ev.FileMarkedBad, ev.FileMarkedOk,
    ),
    keys=_file_keys,
    apply=_file_apply,
)


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
    elif row is None and isinstance(event, ev.SubmissionRejected):
        # refused before it started (a bad manifest, the instrument locked by someone
        # else): still a submission its user made, listed with its reason
        row = {
            "submission_id": event.submission_id, "observatory": "", "deliverer": "",
            "instrument": "", "description": "", "change_level": "", "state": "rejected",
            "uploaded": (), "certified": (), "files": event.files, "new_context": "",
            "message": event.reason, "decided_by": "", "delivery": "",
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


SUBMISSIONS = Fold(
    table="submissions",
    columns={
        "submission_id": str, "observatory": str, "deliverer": str, "instrument": str,
        "description": str, "change_level": str, "state": str, "uploaded": tuple,
        "certified": tuple, "files": tuple, "new_context": str, "message": str,
        "decided_by": str, "delivery": str, "actor": str, "started_at": str,
        "updated_at": str, "position": int,
    },
    pk=("submission_id",),
    consumes=names(ev.SubmissionStarted, ev.FileCertified, ev.DeliveryCreated,
                    *_SUBMISSION_STATES),
    keys=lambda record: [(record.event.submission_id,)],
    apply=_submission_apply,
)


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


DELIVERIES = Fold(
    table="deliveries",
    columns={
        "name": str, "observatory": str, "submission_id": str, "files": tuple,
        "catalog": str, "state": str, "reason": str, "created_at": str, "updated_at": str,
        "position": int,
    },
    pk=("name",),
    consumes=names(ev.DeliveryCreated, *_DELIVERY_STATES),
    keys=lambda record: [(record.event.delivery,)],
    apply=_delivery_apply,
)
