"""The fold of the e-mail outbox (table ``emails``): one row per queued e-mail, with its
state (queued, retrying, sent, failed; or unsent: composed with no recipients, never
attempted), attempts and next attempt time. The outbox
(`crds_events.mail.outbox`) sends from it; the web lists it."""

from __future__ import annotations

from crds_events import events as ev
from crds_events.store.folds.core import Fold, Key, Row, names
from crds_events.store.interface import RecordedEvent

__all__ = ["EMAILS"]


def _email_apply(key: Key, row: Row | None, record: RecordedEvent) -> Row | None:
    event = record.event
    if isinstance(event, ev.EmailQueued):
        row = {
            "email_id": event.email_id, "message_id": event.message_id, "kind": event.kind,
            "subject": event.subject, "recipients": (*event.to, *event.cc),
            "about": event.about, "state": "queued", "attempts": 0,
            "next_attempt_at": record.recorded_at, "last_error": "",
            "queued_at": record.recorded_at, "sent_at": "",
        }
    elif isinstance(event, ev.EmailNotSent):
        if row is not None:  # only ever the first fact of an e-mail: never undoes a queued one
            return row
        row = {
            "email_id": event.email_id, "message_id": "", "kind": event.kind,
            "subject": event.subject, "recipients": (), "about": event.about,
            "state": "unsent", "attempts": 0, "next_attempt_at": "",
            "last_error": f"not sent: {event.reason}", "queued_at": record.recorded_at,
            "sent_at": "",
        }
    elif row is None:
        return None
    else:
        row = dict(row)
        if isinstance(event, ev.EmailSent):
            refused = ", ".join(event.refused)
            row.update(state="sent", attempts=event.attempt, sent_at=record.recorded_at,
                       next_attempt_at="", last_error=f"refused: {refused}" if refused else "")
        else:  # EmailFailed
            row.update(
                state="retrying" if event.will_retry else "failed", attempts=event.attempt,
                last_error=event.error,
                next_attempt_at=(event.retry_at or record.recorded_at) if event.will_retry
                else "",
            )
    row.update(updated_at=record.recorded_at, position=record.position)
    return row


EMAILS = Fold(
    table="emails",
    columns={
        "email_id": str, "message_id": str, "kind": str, "subject": str, "recipients": tuple,
        "about": str, "state": str,  # queued | retrying | sent | failed | unsent
        "attempts": int, "next_attempt_at": str, "last_error": str, "queued_at": str,
        "sent_at": str, "updated_at": str, "position": int,
    },
    pk=("email_id",),
    consumes=names(ev.EmailQueued, ev.EmailSent, ev.EmailFailed, ev.EmailNotSent),
    keys=lambda record: [(record.event.email_id,)],
    apply=_email_apply,
)
