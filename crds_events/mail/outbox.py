"""Sending e-mail: an SMTP transport (aiosmtplib) and a maildir transport, one interface.

`transport_for(settings)` picks SMTP when ``smtp_host`` is set and a maildir under
``settings.maildir`` otherwise (the embedded default: nothing leaves the machine, and an
operator reads the mail with any maildir reader).

A transport's ``send(message)`` either returns the recipients the server refused while it
accepted the others (usually none) or raises `MailError`, which says whether trying again
later can help:

* transient - SMTP 4xx replies, refused or dropped connections, timeouts, DNS failures, a
  full disk under the maildir: retry with back-off;
* permanent - SMTP 5xx replies (unknown mailbox, authentication refused, message rejected),
  a server without the STARTTLS it was asked for, a message that cannot be encoded: give up
  and say so.

The outbox below decides about retries; transports never retry.

The outbox: `EmailQueued` events (appended by `crds_events.handlers.email.EmailComposer`)
are sent by `Outbox.retry_due` OUTSIDE any write transaction, then `EmailSent` or
`EmailFailed` is appended with an idempotency key. Transient failures are retried with
exponential back-off, at most ``max_attempts`` times; permanent ones are recorded at once.
A crash between a successful send and its `EmailSent` means the e-mail is sent again on
restart - with the same Message-ID, so mail readers can drop the duplicate (at least once,
never lost). The ``emails`` table (a `Fold`, rebuilt like every projection) indexes the
outbox for the sender and for the web; the sender re-reads each e-mail's stream from the
log before sending, because the table may lag behind the sender's own appends.
`OutboxWorker` runs `retry_due` in a thread as a server component.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import mailbox
import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any, Protocol

import aiosmtplib

from crds_events import events as ev
from crds_events.config import Settings
from crds_events.handlers.runner import HandlerRunner
from crds_events.store.eventlog import SQLiteEventStore
from crds_events.store.folds import Fold, Key, Row, register_fold, replay
from crds_events.store.interface import ConcurrencyError, RecordedEvent, caused_by
from crds_events.store.projections import TableProjection

__all__ = [
    "MailError",
    "Transport",
    "SMTPTransport",
    "MaildirTransport",
    "transport_for",
    "build_message",
    "classify_error",
    "EMAILS",
    "Delivery",
    "Outbox",
    "OutboxWorker",
    "PendingEmail",
    "outbox_rows",
    "retry_due",
]

log = logging.getLogger(__name__)

MAIL_ACTOR = "crds-events"  # the actor of EmailSent / EmailFailed


class MailError(Exception):
    """A send that did not happen. ``transient``: a later attempt may succeed.
    ``code``: the SMTP reply code when the server gave one."""

    def __init__(self, message: str, *, transient: bool, code: int | None = None):
        super().__init__(message)
        self.transient = transient
        self.code = code


class Transport(Protocol):
    """Delivers one message; returns refused recipients or raises `MailError`."""

    def send(self, message: EmailMessage) -> tuple[str, ...]: ...

    def describe(self) -> str: ...


def build_message(
    *,
    sender: str,
    to: Sequence[str],
    subject: str,
    body: str,
    message_id: str,
    cc: Sequence[str] = (),
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    """A plain-text message with the given (deterministic) Message-ID."""
    message = EmailMessage()
    message["From"] = sender
    if to:
        message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Subject"] = subject
    message["Message-ID"] = message_id
    message["Date"] = formatdate(localtime=False, usegmt=True)
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    return message


def _code_class(code: int | None) -> bool:
    """True (transient) for 4xx; False for 5xx and anything else a server answered."""
    return code is not None and 400 <= code < 500


def classify_error(exc: BaseException) -> MailError:
    """The `MailError` for an exception raised while sending with aiosmtplib."""
    if isinstance(exc, MailError):
        return exc
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        # Every recipient refused: retry if any refusal was temporary (greylisting, a full
        # mailbox), since those recipients may accept later.
        codes = [r.code for r in exc.recipients]
        details = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        transient = any(_code_class(code) for code in codes)
        worst = next((c for c in codes if _code_class(c) == transient), None)
        return MailError(f"all recipients refused: {details}", transient=transient, code=worst)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        # Includes connect/HELO/auth/sender/data replies; the reply code decides.
        kind = type(exc).__name__
        return MailError(f"{kind}: {exc.code} {exc.message}", transient=_code_class(exc.code),
                         code=exc.code)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return MailError(f"server does not support what was asked: {exc}", transient=False)
    if isinstance(exc, UnicodeError | ValueError | TypeError):
        return MailError(f"message cannot be sent: {exc}", transient=False)
    # Connection refused/reset/timeouts, DNS failures, a server that hung up: all may pass.
    return MailError(f"{type(exc).__name__}: {exc}", transient=True)


class SMTPTransport:
    """Sends through an SMTP server with aiosmtplib (a fresh connection per message).

    ``starttls``: require a STARTTLS upgrade (fail permanently if the server lacks it);
    port 465 means implicit TLS. ``user``/``password``: AUTH when a user is given.
    """

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        user: str = "",
        password: str = "",
        starttls: bool = False,
        timeout: float = 30.0,
    ):
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.starttls = starttls
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout: float = 30.0) -> SMTPTransport:
        return cls(settings.smtp_host, settings.smtp_port, user=settings.smtp_user,
                   password=settings.smtp_password, starttls=settings.smtp_starttls,
                   timeout=timeout)

    def describe(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def send(self, message: EmailMessage) -> tuple[str, ...]:
        # One event loop per send: the outbox thread is synchronous and sends rarely, so a
        # long-lived loop would buy nothing and would need its own shutdown.
        try:
            errors, _reply = asyncio.run(self._send(message))
        except Exception as exc:  # noqa: BLE001 - classified: every failure has a verdict
            raise classify_error(exc) from exc
        return tuple(sorted(errors))

    async def _send(self, message: EmailMessage):
        implicit_tls = self.port == 465
        return await aiosmtplib.send(
            message,
            hostname=self.host,
            port=self.port,
            username=self.user or None,
            password=(self.password or None) if self.user else None,
            use_tls=implicit_tls,
            start_tls=False if implicit_tls else self.starttls,
            timeout=self.timeout,
        )


class MaildirTransport:
    """Writes each message into a maildir (``new/``), creating the directory if needed."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def describe(self) -> str:
        return f"maildir:{self.path}"

    def send(self, message: EmailMessage) -> tuple[str, ...]:
        try:
            # `init` makes the directory empty; Maildir(create=True) only fills in a missing
            # one, so make its tmp/new/cur here.
            for sub in ("tmp", "new", "cur"):
                (self.path / sub).mkdir(parents=True, exist_ok=True)
            box = mailbox.Maildir(self.path, create=False)
            box.add(message)
        except OSError as exc:  # full disk, permissions: an operator can fix it, so retry
            raise MailError(f"{self.path}: cannot write message: {exc.strerror or exc}",
                            transient=True) from exc
        return ()


def transport_for(settings: Settings, *, timeout: float = 30.0) -> Transport:
    """SMTP when ``settings.smtp_host`` is set, else the maildir ``settings.maildir``."""
    if settings.smtp_host:
        return SMTPTransport.from_settings(settings, timeout=timeout)
    if settings.maildir is None:  # pragma: no cover - load_settings always fills it
        raise ValueError("no SMTP host and no maildir configured")
    return MaildirTransport(settings.maildir)


# --- the outbox: the emails table, sending due e-mail, the worker thread ------------

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # as the log's recorded_at: sorts as text


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


def _now() -> datetime:
    return datetime.now(UTC)


# The emails table: the outbox index for the sender, and what the web shows.


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


EMAILS = register_fold(Fold(
    table="emails",
    columns={
        "email_id": str, "message_id": str, "kind": str, "subject": str, "recipients": tuple,
        "about": str, "state": str,  # queued | retrying | sent | failed
        "attempts": int, "next_attempt_at": str, "last_error": str, "queued_at": str,
        "sent_at": str, "updated_at": str, "position": int,
    },
    pk=("email_id",),
    consumes=frozenset({ev.EmailQueued.type, ev.EmailSent.type, ev.EmailFailed.type}),
    keys=lambda record: [(record.event.email_id,)],
    apply=_email_apply,
))


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
        store: SQLiteEventStore,
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
            rows = self.store.db.conn.execute(
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

    def message(self, pending: PendingEmail):
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


class OutboxWorker:
    """A server component: a thread that keeps calling `Outbox.retry_due`.

    Opens its own store connection on `start` and closes it on `stop` (which joins).
    """

    def __init__(
        self,
        db_path: str | Path,
        transport: Transport,
        *,
        sender: str,
        poll_interval: float = 1.0,
        error_backoff: float = 5.0,
        **policy: Any,
    ):
        self.db_path = Path(db_path)
        self.transport = transport
        self.sender = sender
        self.poll_interval = poll_interval
        self.error_backoff = error_backoff
        self.policy = policy
        self.outbox: Outbox | None = None
        self._store: SQLiteEventStore | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("outbox worker already started")
        self._store = SQLiteEventStore(self.db_path)
        self.outbox = Outbox(self._store, self.transport, sender=self.sender, **self.policy)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="crds-events-outbox")
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError("outbox worker did not stop in time")
            self._thread = None
        if self._store is not None:
            self._store.close()
            self._store = None

    def wake(self) -> None:
        """Look for due e-mail now rather than at the next poll."""
        self._wake.set()

    def retry_due(self, now: datetime | None = None) -> list[ev.Event]:
        """For the scheduler: attempt due e-mails now (serialised with the thread)."""
        if self.outbox is None:
            raise RuntimeError("outbox worker not started")
        return self.outbox.retry_due(now)

    def _loop(self) -> None:
        assert self.outbox is not None
        while not self._stop.is_set():
            wait = self.poll_interval
            try:
                if self.outbox.retry_due():
                    wait = 0.0
            except Exception:  # noqa: BLE001 - logged; the loop must survive to retry
                log.exception("outbox step failed")
                wait = self.error_backoff
            if wait:
                self._wake.wait(wait)
                self._wake.clear()


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
    with SQLiteEventStore(settings.db_path) as store:
        HandlerRunner(store, [TableProjection(EMAILS)]).run_until_idle()
        outbox = Outbox(store, transport or transport_for(settings),
                        sender=settings.smtp_from, **policy)
        return outbox.retry_due(now)


def outbox_rows(store: SQLiteEventStore, *, states: Sequence[str] | None = None) -> list[Row]:
    """Every e-mail's outbox row, newest first, folded from the log itself (so it is right
    even while no server keeps the ``emails`` table up to date)."""
    rows = replay(EMAILS, store.iter_all(types=EMAILS.consumes)).values()
    chosen = [row for row in rows if states is None or row["state"] in states]
    return sorted(chosen, key=lambda row: (row["queued_at"], row["email_id"]), reverse=True)
