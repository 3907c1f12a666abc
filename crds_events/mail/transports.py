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

The outbox (`crds_events.mail.outbox`) decides about retries; transports never retry.
"""

from __future__ import annotations

import asyncio
import mailbox
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Protocol

import aiosmtplib

from crds_events.config import Settings
from crds_events.errors import CrdsEventsError

__all__ = [
    "MailError",
    "Transport",
    "SMTPTransport",
    "MaildirTransport",
    "transport_for",
    "build_message",
    "classify_error",
]


class MailError(CrdsEventsError):
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
