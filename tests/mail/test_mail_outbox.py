"""The outbox: queued e-mail is sent outside the write transaction, retried, given up on.

A real aiosmtpd server on 127.0.0.1 answers with the codes each test scripts; the log is a
real SQLite file; the composer and the emails projection run in the real HandlerRunner.
"""

from __future__ import annotations

import mailbox
import threading
import time
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from functools import partial

import pytest
from fixtures.smtp import smtp_server
from helpers import free_port

from crds_events import events as ev
from crds_events.config import load_settings
from crds_events.handlers.email import EmailComposer
from crds_events.handlers.outbox import OutboxWorker
from crds_events.handlers.runner import HandlerRunner
from crds_events.mail.outbox import Outbox, retry_due
from crds_events.mail.transports import MaildirTransport, MailError, SMTPTransport, transport_for
from crds_events.server import parts
from crds_events.server.core import Server
from crds_events.store.eventlog import SQLiteEventStore
from crds_events.store.folds import EMAILS
from crds_events.store.projections import TableProjection, read_table, rebuild
from crds_events.store.root import init_root

REDCAT = ("redcat@example.org",)
DEVS = ("devs@example.org",)


class ScriptedSMTP:
    """An aiosmtpd handler: replies to RCPT and DATA from scripts, else accepts."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rcpt_replies: list[str] = []  # one reply per RCPT command, then 250
        self.data_replies: list[str] = []  # one reply per DATA command, then 250
        self.received: list = []  # (envelope recipients, parsed message)

    def script(self, *, rcpt=(), data=()):
        with self.lock:
            self.rcpt_replies = list(rcpt)
            self.data_replies = list(data)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            reply = self.rcpt_replies.pop(0) if self.rcpt_replies else "250 OK"
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            reply = self.data_replies.pop(0) if self.data_replies else "250 Message accepted"
            if reply.startswith("250"):
                message = message_from_bytes(envelope.content, policy=policy.default)
                self.received.append((tuple(envelope.rcpt_tos), message))
        return reply

    def messages(self):
        with self.lock:
            return list(self.received)


@pytest.fixture
def smtp():
    """The conftest ``smtp``, but scripted: replies to RCPT and DATA as the test says."""
    handler = ScriptedSMTP()
    with smtp_server(handler) as handler.port:
        yield handler


def make_settings(root, **overrides):
    values = {"observatory": "hst", "recipients_redcat": REDCAT, "recipients_devs": DEVS,
              "smtp_from": "crds@example.org"}
    values.update(overrides)
    settings = load_settings(root, values, environ={})
    init_root(settings)
    return settings


@pytest.fixture
def settings(tmp_path, smtp):
    return make_settings(tmp_path / "root", smtp_host="127.0.0.1", smtp_port=smtp.port)


@pytest.fixture
def log(settings):
    store = SQLiteEventStore(settings.db_path)
    yield store
    store.close()


@pytest.fixture
def runner(settings, log):
    runner = HandlerRunner(log, [TableProjection(EMAILS), EmailComposer(settings)])
    runner.setup()
    return runner


def queue_one(log, runner, sid="7", user_email="alice@example.org"):
    """Append a SubmissionStarted by alice; the composer queues its STARTED e-mail."""
    log.record(ev.UserAdded("alice", user_email))
    log.record(ev.SubmissionStarted(sid, "hst", "Alice", "acs", "New biases", ("x_bia.fits",)),
               meta={"actor": "alice"})
    before = log.head()
    runner.run_until_idle()
    (record,) = log.read_all(before, types=["EmailQueued"])
    return record.event


def outbox_for(log, settings, **policy):
    policy.setdefault("backoff_base", 0.05)
    return Outbox(log, SMTPTransport.from_settings(settings, timeout=5), sender=settings.smtp_from,
                  **policy)


def email_events(log, email_id):
    return [r.event for r in log.read_stream(ev.email_stream(email_id))]


def emails_row(log, runner, email_id):
    runner.run_until_idle()
    return read_table(log, TableProjection(EMAILS))[(email_id,)]


def test_queued_mail_is_delivered(log, runner, settings, smtp):
    mail = queue_one(log, runner)
    outbox = outbox_for(log, settings)
    assert [p.email_id for p in outbox.due()] == [mail.email_id]
    outcomes = outbox.retry_due()
    assert outcomes == [ev.EmailSent(mail.email_id, mail.message_id, 1)]
    ((rcpts, message),) = smtp.messages()
    assert set(rcpts) == {"alice@example.org", *REDCAT, *DEVS}
    assert message["Message-ID"] == mail.message_id
    assert message["Subject"] == mail.subject
    assert message["From"] == "crds@example.org"
    assert message.get_content().replace("\r\n", "\n") == mail.body  # wire CRLF
    row = emails_row(log, runner, mail.email_id)
    assert (row["state"], row["attempts"], row["last_error"]) == ("sent", 1, "")
    assert outbox.retry_due() == []  # nothing left to do
    assert len(smtp.messages()) == 1


def test_transient_451_is_retried_with_backoff(log, runner, settings, smtp):
    mail = queue_one(log, runner)
    smtp.script(data=["451 4.3.0 Try again later", "451 4.3.0 Still busy"])
    outbox = outbox_for(log, settings, backoff_base=10.0)
    start = datetime.now(UTC)
    (first,) = outbox.retry_due(start)
    assert isinstance(first, ev.EmailFailed) and first.will_retry and first.attempt == 1
    assert "451" in first.error
    retry_at = datetime.strptime(first.retry_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert retry_at - start == timedelta(seconds=10)  # backoff_base * 2**0
    assert outbox.retry_due(start + timedelta(seconds=9)) == []  # not due yet
    row = emails_row(log, runner, mail.email_id)
    assert (row["state"], row["attempts"], row["next_attempt_at"]) == ("retrying", 1,
                                                                       first.retry_at)
    (second,) = outbox.retry_due(start + timedelta(seconds=10))
    assert isinstance(second, ev.EmailFailed) and second.attempt == 2 and second.will_retry
    assert outbox.retry_due(start + timedelta(seconds=10 + 19)) == []  # 20 s after attempt 2
    (third,) = outbox.retry_due(start + timedelta(seconds=30))
    assert third == ev.EmailSent(mail.email_id, mail.message_id, 3)
    assert [m["Message-ID"] for _, m in smtp.messages()] == [mail.message_id]
    assert emails_row(log, runner, mail.email_id)["state"] == "sent"


def test_permanent_550_is_recorded_and_not_retried(log, runner, settings, smtp):
    mail = queue_one(log, runner)
    smtp.script(rcpt=["550 5.1.1 No such user"] * 3)  # every recipient refused
    outbox = outbox_for(log, settings)
    (failed,) = outbox.retry_due()
    assert isinstance(failed, ev.EmailFailed) and not failed.will_retry and failed.retry_at == ""
    assert failed.error.startswith("permanent: ") and "550" in failed.error
    far = datetime.now(UTC) + timedelta(days=30)
    assert outbox.retry_due(far) == []
    assert smtp.messages() == []
    row = emails_row(log, runner, mail.email_id)
    assert (row["state"], row["attempts"]) == ("failed", 1)
    assert "No such user" in row["last_error"]


def test_partial_refusal_is_sent_and_names_the_refused(log, runner, settings, smtp):
    mail = queue_one(log, runner)
    smtp.script(rcpt=["550 5.1.1 No such user"])  # alice (first To) refused, others accepted
    (sent,) = outbox_for(log, settings).retry_due()
    assert sent == ev.EmailSent(mail.email_id, mail.message_id, 1, refused=("alice@example.org",))
    ((rcpts, _),) = smtp.messages()
    assert set(rcpts) == {*REDCAT, *DEVS}
    assert emails_row(log, runner, mail.email_id)["last_error"] == "refused: alice@example.org"


def test_gives_up_after_max_attempts(log, runner, settings, smtp):
    mail = queue_one(log, runner)
    smtp.script(data=["421 4.7.0 Too busy"] * 5)
    outbox = outbox_for(log, settings, max_attempts=3)
    now = datetime.now(UTC)
    for _ in range(5):
        outbox.retry_due(now)
        now += timedelta(hours=1)
    events = email_events(log, mail.email_id)
    assert [type(e).__name__ for e in events] == ["EmailQueued"] + ["EmailFailed"] * 3
    assert [e.will_retry for e in events[1:]] == [True, True, False]
    assert events[-1].error.startswith("gave up after 3 attempts: ")
    assert emails_row(log, runner, mail.email_id)["state"] == "failed"


def test_connection_refused_is_transient(tmp_path, smtp):
    settings = make_settings(tmp_path / "r", smtp_host="127.0.0.1", smtp_port=free_port())
    with SQLiteEventStore(settings.db_path) as log:
        runner = HandlerRunner(log, [TableProjection(EMAILS), EmailComposer(settings)])
        runner.setup()
        mail = queue_one(log, runner)
        (failed,) = outbox_for(log, settings).retry_due()
        assert failed.email_id == mail.email_id and failed.will_retry


def test_crash_between_send_and_record_resends_same_message_id(log, runner, settings, smtp):
    mail = queue_one(log, runner)
    crashed = outbox_for(log, settings)
    (pending,) = crashed.due()
    delivery = crashed.deliver(pending)  # the SMTP server accepted it ...
    assert delivery.error is None
    # ... and the process died before EmailSent was appended. On restart:
    (sent,) = outbox_for(log, settings).retry_due()
    assert sent == ev.EmailSent(mail.email_id, mail.message_id, 1)
    ids = [message["Message-ID"] for _, message in smtp.messages()]
    assert ids == [mail.message_id, mail.message_id]  # at least once, same Message-ID
    # the late record of the first attempt (had the process survived) is a no-op
    assert crashed.record(pending, delivery) is None
    assert [type(e).__name__ for e in email_events(log, mail.email_id)] == [
        "EmailQueued", "EmailSent"]


def test_maildir_fallback_without_smtp_host(tmp_path):
    settings = make_settings(tmp_path / "m")
    transport = transport_for(settings)
    assert isinstance(transport, MaildirTransport) and transport.path == settings.maildir
    with SQLiteEventStore(settings.db_path) as log:
        runner = HandlerRunner(log, [TableProjection(EMAILS), EmailComposer(settings)])
        runner.setup()
        mail = queue_one(log, runner)
        assert retry_due(settings) == [ev.EmailSent(mail.email_id, mail.message_id, 1)]
        box = mailbox.Maildir(settings.maildir, create=False)
        (message,) = box.values()
        assert message["Message-ID"] == mail.message_id
        assert message["To"] == "alice@example.org, redcat@example.org"
        assert message["Cc"] == "devs@example.org"
        assert message.get_payload(decode=True).decode() == mail.body
        assert retry_due(settings) == []


def test_maildir_write_error_is_transient(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the maildir should be")
    message = EmailMessage()
    with pytest.raises(MailError) as info:
        MaildirTransport(blocker / "maildir").send(message)
    assert info.value.transient


def test_emails_projection_rebuilds_to_the_same_rows(log, runner, settings, smtp):
    mail = queue_one(log, runner)
    smtp.script(data=["451 busy"])
    outbox = outbox_for(log, settings)
    now = datetime.now(UTC)
    outbox.retry_due(now)
    outbox.retry_due(now + timedelta(minutes=1))
    runner.run_until_idle()
    projection = TableProjection(EMAILS)
    incremental = read_table(log, projection)
    rebuild(log, [projection])
    assert read_table(log, projection) == incremental
    assert incremental[(mail.email_id,)]["state"] == "sent"


def test_server_component_delivers_after_transient_failures(settings, smtp):
    """The whole path in a running server: composer in the handler thread, the worker
    thread retrying 451 with real (short) back-off until the server accepts."""
    smtp.script(data=["451 4.3.0 Try again later", "451 4.3.0 Try again later"])
    server = Server(settings, [partial(parts.mail, poll_interval=0.02, backoff_base=0.05)],
                    poll_interval=0.02)
    worker = server.component("mail", OutboxWorker)
    server.start()
    try:
        server.store.record(ev.UserAdded("alice", "alice@example.org"))
        server.store.record(
            ev.SubmissionStarted("s1", "hst", "Alice", "acs", "Biases", ("x_bia.fits",)),
            meta={"actor": "alice"})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not server.store.read_all(types=["EmailSent"]):
            time.sleep(0.02)
        (sent,) = [r.event for r in server.store.read_all(types=["EmailSent"])]
        assert sent.attempt == 3
        assert len(server.store.read_all(types=["EmailFailed"])) == 2
        ((_, message),) = smtp.messages()
        assert message["Message-ID"] == sent.message_id
        assert "Result page: http://127.0.0.1:8000/submissions/s1" in message.get_content()
        assert worker.retry_due() == []
    finally:
        server.stop()
    assert not any(t.name == "crds-events-outbox" for t in threading.enumerate())


def test_unsendable_message_fails_permanently_without_stalling_others(log, runner, settings,
                                                                      smtp):
    # An EmailQueued that cannot become a message (a line break in a header), e.g. written by
    # another tool: it must fail for good, and the e-mail queued after it must still go out.
    log.record(ev.EmailQueued("bad-1", "TEST", ("a@example.org",), "two\nlines",
                              "<bad-1@hst.example.org>", "", body="x\n"))
    good = queue_one(log, runner)
    outcomes = outbox_for(log, settings).retry_due()
    assert [type(o).__name__ for o in outcomes] == ["EmailFailed", "EmailSent"]
    assert not outcomes[0].will_retry and outcomes[0].error.startswith("permanent: ")
    assert outcomes[1].email_id == good.email_id
