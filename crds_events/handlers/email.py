"""E-mail from events: the composer handler, which turns events into queued e-mail.

The flow, and why it is crash-safe::

    SubmissionReady (pos 17)  --EmailComposer (in the runner's write transaction)-->
        EmailQueued(email_id="17-ready", message_id="<crds-events.17.ready@hst.localhost>")
        [idempotency key "email-queued:17:ready": a replay never queues twice]
    OutboxWorker (crds_events.handlers.outbox; own thread, OUTSIDE any write transaction):
        send via SMTP or maildir, then append
        EmailSent            [key "email-sent:17-ready"]
        EmailFailed(retry)   [key "email-failed:17-ready:<attempt>", retry_at = back-off]
        EmailFailed(final)   [5xx, or gave up after max_attempts]
    or, when the e-mail has nobody to go to (no redcat / DPAS / devs configured, ...):
        EmailNotSent(reason="no recipients")  [key "email-not-sent:17:ready"; never sent,
        shown on the e-mails page as "not sent: no recipients"]

What each e-mail says is `crds_events.mail.compose` (pure). The composer keeps the facts
composition needs later (who started a submission and their e-mail, the manifest's other
e-mails, certify summaries per file, users' addresses, affected-dataset counts) in its own
table ``mail_facts`` (`TableFacts`), updated in the same transaction as its checkpoint.
Bodies travel in the `EmailQueued` event itself.

History is not mailed: when the composer first runs on a log that already has events (mail
enabled on an existing server, or a root seeded by ``import-cache``), it folds their facts
but queues e-mail only for events after that point (``mail_history=True`` mails them too).

The outbox (`crds_events.mail.outbox`) sends; the server's ``mail`` part
(`crds_events.server.parts`) runs the composer and the outbox worker.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable

from crds_events import events as ev
from crds_events.config import Settings
from crds_events.mail.compose import (
    DEFAULT_BASE_URL,
    FACT_EVENT_TYPES,
    MAILED_EVENT_TYPES,
    ComposeOptions,
    Facts,
    compose,
    learn,
    message_domain,
    message_id_for,
    slug,
)
from crds_events.store.dialect import dialect_of
from crds_events.store.handler import Handler
from crds_events.store.interface import NO_STREAM, RecordedEvent, Transaction, caused_by

__all__ = ["DEFAULT_BASE_URL", "EmailComposer", "TableFacts"]

log = logging.getLogger(__name__)


class TableFacts(Facts):
    """The composer's facts in the table ``mail_facts`` (key -> JSON), read and written in
    the runner's transaction."""

    TABLE = "mail_facts"

    def __init__(self, tx: Transaction):
        self._tx = tx

    def get(self, key: str) -> dict:
        row = self._tx.execute(f"SELECT value FROM {self.TABLE} WHERE key = ?",
                               (key,)).fetchone()
        return json.loads(row[0]) if row else {}

    def put(self, key: str, value: dict) -> None:
        self._tx.execute(
            f"INSERT INTO {self.TABLE} (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value, sort_keys=True)),
        )


class EmailComposer(Handler):
    """Turns events into `EmailQueued` (cheap; runs inside the runner's transaction)."""

    name = "email-composer"
    consumes = MAILED_EVENT_TYPES | FACT_EVENT_TYPES

    def __init__(self, settings: Settings, *, base_url: str | None = None,
                 context_kinds: Iterable[str] | None = None, mail_history: bool = False):
        self.options = ComposeOptions.from_settings(settings, base_url=base_url,
                                                    context_kinds=context_kinds)
        self.domain = message_domain(settings)
        self.mail_history = mail_history

    def setup(self, tx: Transaction) -> None:
        if dialect_of(tx).table_exists(tx, TableFacts.TABLE):
            return
        tx.execute(f"CREATE TABLE {TableFacts.TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        since = 0 if self.mail_history else tx.head()
        TableFacts(tx).put("meta:since", {"position": since})

    def handle(self, tx: Transaction, record: RecordedEvent) -> None:
        facts = TableFacts(tx)
        learn(facts, record)
        if record.type not in MAILED_EVENT_TYPES:
            return
        if record.position <= facts.get("meta:since").get("position", 0):
            return  # history from before mail was enabled
        composed = compose(record, facts, self.options)
        if composed is None:
            return
        kind_slug = slug(composed.kind)
        email_id = f"{record.position}-{kind_slug}"
        if not composed.to and not composed.cc:
            # recorded, not dropped: the e-mails page must show what nobody was told
            log.warning("no recipients for the %s e-mail about event %d; recorded as not sent",
                        composed.kind, record.position)
            tx.record(
                ev.EmailNotSent(email_id=email_id, kind=composed.kind,
                                subject=composed.subject, reason="no recipients",
                                about=composed.about, body=composed.body),
                NO_STREAM,
                meta=caused_by(record),
                idempotency_key=f"email-not-sent:{record.position}:{kind_slug}",
            )
            return
        tx.record(
            ev.EmailQueued(
                email_id=email_id, kind=composed.kind, to=composed.to, cc=composed.cc,
                subject=composed.subject,
                message_id=message_id_for(record.position, composed.kind, self.domain),
                body_digest=hashlib.sha256(composed.body.encode()).hexdigest(),
                about=composed.about, body=composed.body,
            ),
            NO_STREAM,
            meta=caused_by(record),
            idempotency_key=f"email-queued:{record.position}:{kind_slug}",
        )

