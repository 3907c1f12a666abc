"""E-mail outbox events: an e-mail queued (with its body), sent, or failed with a retry time;
or composed with nobody to send it to (not sent: no recipients).
"""

from __future__ import annotations

from crds_events.events.registry import Event, register
from crds_events.events.streams import email_stream

__all__ = [
    "EmailQueued",
    "EmailSent",
    "EmailFailed",
    "EmailNotSent",
]


@register()
class EmailQueued(Event):
    """An e-mail was composed; the sender delivers it at least once (same Message-ID)."""

    # Message-IDs look like addresses (<id@host>); the digest would confirm a guessed body.
    personal_fields = ("to", "cc", "subject", "message_id", "body_digest", "body")

    email_id: str
    kind: str  # STARTED, READY, BAD FILES, FAIL, CONFIRMED, ...
    to: tuple[str, ...]
    subject: str
    message_id: str
    body_digest: str
    cc: tuple[str, ...] = ()
    about: str = ""  # the stream it is about, e.g. "submission:42"
    # The text body itself (a few KB at most: summaries and links, never whole reports), so
    # the sender needs nothing but the log; body_digest is its sha256.
    body: str = ""

    @property
    def stream(self) -> str:
        return email_stream(self.email_id)


@register()
class EmailSent(Event):
    personal_fields = ("message_id", "refused")

    email_id: str
    message_id: str
    attempt: int = 1
    refused: tuple[str, ...] = ()  # recipients the server refused while accepting others

    @property
    def stream(self) -> str:
        return email_stream(self.email_id)


@register()
class EmailFailed(Event):
    personal_fields = ("error",)  # the SMTP server's answer names the recipients

    email_id: str
    attempt: int
    error: str
    will_retry: bool = True
    retry_at: str = ""  # ISO 8601 UTC: when the next attempt is due (will_retry only)

    @property
    def stream(self) -> str:
        return email_stream(self.email_id)


@register()
class EmailNotSent(Event):
    """An e-mail was composed but had nobody to go to (e.g. no DPAS address configured): it
    is recorded - the outbox shows it as not sent - rather than dropped, and never sent."""

    personal_fields = ("subject", "body")

    email_id: str
    kind: str  # AFFECTED DATASETS, DELIVERY FAILED, ...
    subject: str
    reason: str  # "no recipients"
    about: str = ""  # the stream it is about
    body: str = ""  # what it would have said

    @property
    def stream(self) -> str:
        return email_stream(self.email_id)
