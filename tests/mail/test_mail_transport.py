"""Transports and error classification: 4xx and connection trouble are transient, 5xx
permanent. Exceptions are the real aiosmtplib ones, raised by a real aiosmtpd server where
the situation can be produced on loopback."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib
import pytest
from fixtures.smtp import smtp_server
from helpers import free_port

from crds_events.mail.transports import MailError, SMTPTransport, build_message, classify_error


class _Accept:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.content)
        return "250 OK"


@pytest.fixture
def plain_server():
    handler = _Accept()
    with smtp_server(handler) as port:
        yield port, handler


def _message() -> EmailMessage:
    return build_message(sender="crds@example.org", to=["a@example.org"], subject="s",
                         body="b\n", message_id="<x.1@hst.example.org>")


@pytest.mark.parametrize("exc, transient, code", [
    (aiosmtplib.SMTPDataError(451, "try later"), True, 451),
    (aiosmtplib.SMTPDataError(554, "rejected"), False, 554),
    (aiosmtplib.SMTPSenderRefused(553, "bad sender", "x@y"), False, 553),
    (aiosmtplib.SMTPAuthenticationError(535, "bad credentials"), False, 535),
    (aiosmtplib.SMTPAuthenticationError(454, "temporary auth failure"), True, 454),
    (aiosmtplib.SMTPConnectResponseError(421, "too many connections"), True, 421),
    (aiosmtplib.SMTPServerDisconnected("gone"), True, None),
    (aiosmtplib.SMTPConnectTimeoutError("timeout"), True, None),
    (ConnectionRefusedError(111, "refused"), True, None),
    (aiosmtplib.SMTPRecipientsRefused([
        aiosmtplib.SMTPRecipientRefused(550, "no user", "a@x"),
        aiosmtplib.SMTPRecipientRefused(550, "no user", "b@x")]), False, 550),
    (aiosmtplib.SMTPRecipientsRefused([
        aiosmtplib.SMTPRecipientRefused(550, "no user", "a@x"),
        aiosmtplib.SMTPRecipientRefused(450, "greylisted", "b@x")]), True, 450),
    (UnicodeEncodeError("ascii", "é", 0, 1, "no"), False, None),
])
def test_classification(exc, transient, code):
    error = classify_error(exc)
    assert (error.transient, error.code) == (transient, code)


def test_smtp_send_and_message_headers(plain_server):
    port, handler = plain_server
    refused = SMTPTransport("127.0.0.1", port, timeout=5).send(_message())
    assert refused == ()
    (content,) = handler.messages
    assert b"Message-ID: <x.1@hst.example.org>" in content
    assert b"Subject: s" in content


def test_required_starttls_missing_is_an_error(plain_server):
    port, handler = plain_server
    with pytest.raises(MailError, match="STARTTLS") as info:
        SMTPTransport("127.0.0.1", port, starttls=True, timeout=5).send(_message())
    # a server misconfiguration an operator can fix: retried (bounded), not dropped at once
    assert info.value.transient
    assert handler.messages == []


def test_nothing_listening_is_transient():
    with pytest.raises(MailError) as info:
        SMTPTransport("127.0.0.1", free_port(), timeout=5).send(_message())
    assert info.value.transient and info.value.code is None
