"""The e-mail outbox: `EmailQueued` events in, `EmailSent` / `EmailFailed` events out.

`EmailQueued` events (appended by `crds_events.handlers.email.EmailComposer`) are sent by
`Outbox.retry_due` OUTSIDE any write transaction, through a transport
(`crds_events.mail.transports`), then `EmailSent` or `EmailFailed` is appended with an
idempotency key. Transient failures are retried with exponential back-off, at most
``max_attempts`` times; permanent ones are recorded at once. A crash between a successful
send and its `EmailSent` means the e-mail is sent again on restart - with the same
Message-ID, so mail readers can drop the duplicate (at least once, never lost). The
``emails`` table (the fold `crds_events.store.folds.EMAILS`, rebuilt like every projection)
indexes the outbox for the sender and for the web; the sender re-reads each e-mail's stream
from the log before sending, because the table may lag behind the sender's own appends.
In a running server, `crds_events.handlers.outbox.OutboxWorker` calls `Outbox.retry_due`
from its thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

from crds_events import events as ev
from crds_events.config import Settings
from crds_events.mail.transports import (
    MailError,
    Transport,
    build_message,
    classify_error,
    transport_for,
)
from crds_events.store import open_store
from crds_events.store.folds import EMAILS, Row, replay
from crds_events.store.handler import catch_up
from crds_events.store.interface import ConcurrencyError, EventStore, RecordedEvent, caused_by
from crds_events.store.projections import TableProjection

__all__ = [
    "Delivery",
    "Outbox",
    "PendingEmail",
    "outbox_rows",
    "retry_due",
]

log = logging.getLogger(__name__)

MAIL_ACTOR = "crds-events"  # the actor of EmailSent / EmailFailed


_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # as the log's recorded_at: sorts as text


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


def _now() -> datetime:
    return datetime.now(UTC)


# --- sending -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PendingEmail:
    """A queued e-mail due for an attempt, as the log says (not the possibly lagging table)."""

    queued: ev.EmailQueued
    queued_record: RecordedEvent
    version: int  # the e-mail stream's version when read (optimistic concurrency)
    attempt: int  # the number this attempt will have (1 for the first)

    @property
    def email_id(self) -> str:
        return self.queued.email_id


@dataclasses.dataclass(frozen=True)
class Delivery:
    """What one attempt did: ``error`` None means sent (``refused``: partial refusals)."""

    error: MailError | None = None
    refused: tuple[str, ...] = ()


class Outbox:
    """Sends due e-mails and records the outcome. Thread-safe; never inside a transaction.

    Back-off after failed attempt n: ``backoff_base * 2**(n-1)`` seconds, at most
    ``backoff_max``; after ``max_attempts`` transient failures the e-mail is given up.
    """

    def __init__(
        self,
        store: EventStore,
        transport: Transport,
        *,
        sender: str,
        backoff_base: float = 60.0,
        backoff_max: float = 3600.0,
        max_attempts: int = 8,
        batch: int = 50,
    ):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.store = store
        self.transport = transport
        self.sender = sender
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_attempts = max_attempts
        self.batch = batch
        self._lock = threading.Lock()

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt``."""
        return min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))

    def pending(self, email_id: str, now: datetime | None = None) -> PendingEmail | None:
        """The e-mail if the log says it is due at ``now``, else None."""
        records = self.store.read_stream(ev.email_stream(email_id))
        if not records or records[0].type != ev.EmailQueued.type:
            return None
        row = replay(EMAILS, records).get((email_id,))
        if row is None or row["state"] not in ("queued", "retrying"):
            return None
        if row["state"] == "retrying" and row["next_attempt_at"] > _iso(now or _now()):
            return None
        return PendingEmail(records[0].event, records[0], records[-1].version,
                            row["attempts"] + 1)

    def due(self, now: datetime | None = None) -> list[PendingEmail]:
        """E-mails due at ``now`` (oldest first, at most ``batch``)."""
        now = now or _now()
        try:
            rows = self.store.execute(
                "SELECT email_id FROM emails WHERE state IN ('queued', 'retrying') "
                "AND next_attempt_at <= ? ORDER BY position LIMIT ?",
                (_iso(now), self.batch),
            ).fetchall()
        except sqlite3.OperationalError as exc:  # table not created yet: nothing is due
            if "no such table" in str(exc):
                return []
            raise
        found = (self.pending(email_id, now) for (email_id,) in rows)
        return [p for p in found if p is not None]

    def message(self, pending: PendingEmail) -> EmailMessage:
        queued = pending.queued
        return build_message(
            sender=self.sender, to=queued.to, cc=queued.cc, subject=queued.subject,
            body=queued.body, message_id=queued.message_id,
            headers={"X-CRDS-Events-Kind": queued.kind, "X-CRDS-Events-About": queued.about},
        )

    def deliver(self, pending: PendingEmail) -> Delivery:
        """Send once, record nothing (`record` does that)."""
        try:
            refused = self.transport.send(self.message(pending))
        except Exception as exc:  # noqa: BLE001 - a bad message must not stall the others
            return Delivery(error=classify_error(exc))
        return Delivery(refused=tuple(refused))

    def record(self, pending: PendingEmail, delivery: Delivery,
               now: datetime | None = None) -> ev.Event | None:
        """Append `EmailSent` / `EmailFailed` for an attempt; None if another sender
        recorded this attempt first."""
        now = now or _now()
        email_id, attempt = pending.email_id, pending.attempt
        if delivery.error is None:
            event: ev.Event = ev.EmailSent(email_id, pending.queued.message_id, attempt,
                                           refused=delivery.refused)
            key = f"email-sent:{email_id}"
        else:
            error = delivery.error
            retry = error.transient and attempt < self.max_attempts
            if retry:
                text = str(error)
                retry_at = _iso(now + timedelta(seconds=self.backoff(attempt)))
            else:
                retry_at = ""
                text = (f"permanent: {error}" if not error.transient
                        else f"gave up after {attempt} attempts: {error}")
            event = ev.EmailFailed(email_id, attempt, text, will_retry=retry,
                                   retry_at=retry_at)
            key = f"email-failed:{email_id}:{attempt}"
        try:
            result = self.store.record(
                event, pending.version, meta=caused_by(pending.queued_record, MAIL_ACTOR),
                idempotency_key=key,
            )
        except ConcurrencyError:
            log.info("e-mail %s: another sender recorded attempt %d first", email_id, attempt)
            return None
        return None if result.duplicate else event

    def send(self, pending: PendingEmail, now: datetime | None = None) -> ev.Event | None:
        delivery = self.deliver(pending)
        if delivery.error is not None:
            log.warning("e-mail %s attempt %d via %s failed: %s", pending.email_id,
                        pending.attempt, self.transport.describe(), delivery.error)
        return self.record(pending, delivery, now)

    def retry_due(self, now: datetime | None = None) -> list[ev.Event]:
        """Attempt every due e-mail once; the outcome events recorded (for the scheduler
        and the worker). Serialised, so two callers never send one e-mail at once."""
        with self._lock:
            outcomes = []
            for pending in self.due(now):
                # Re-check: an earlier send in this batch took time, and now may be stale.
                current = self.pending(pending.email_id, now)
                if current is None:
                    continue
                outcome = self.send(current, now)
                if outcome is not None:
                    outcomes.append(outcome)
            return outcomes


def retry_due(
    settings: Settings,
    now: datetime | None = None,
    *,
    transport: Transport | None = None,
    **policy: Any,
) -> list[ev.Event]:
    """One pass over the outbox of the server at ``settings`` (e.g. from a scheduler job or
    a command while no server runs): attempt every due e-mail, return the outcomes.

    Brings the ``emails`` table up to date first (safe beside a running server: projection
    steps are transactions that re-read their checkpoint), so e-mail queued while no server
    ran is found. Composing is the server's job: events not yet composed are not mailed here.
    """
    with contextlib.closing(open_store(settings.db_path)) as store:
        catch_up(store, [TableProjection(EMAILS)])
        outbox = Outbox(store, transport or transport_for(settings),
                        sender=settings.smtp_from, **policy)
        return outbox.retry_due(now)


def outbox_rows(store: EventStore, *, states: Sequence[str] | None = None) -> list[Row]:
    """Every e-mail's outbox row, newest first, folded from the log itself (so it is right
    even while no server keeps the ``emails`` table up to date)."""
    rows = replay(EMAILS, store.iter_all(types=EMAILS.consumes)).values()
    chosen = [row for row in rows if states is None or row["state"] in states]
    return sorted(chosen, key=lambda row: (row["queued_at"], row["email_id"]), reverse=True)
