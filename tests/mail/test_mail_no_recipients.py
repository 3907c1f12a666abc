"""E-mail with nobody to go to: recorded as "not sent: no recipients" (an `EmailNotSent` on the
e-mail's stream; outbox state ``unsent``), never attempted, never silently dropped - and the
server says at start-up (its log) and on /health (``warnings``) when no redcat or DPAS
recipient is configured.

Real SQLite logs, the real composer in the real HandlerRunner, and a real server over HTTP
for the start-up warning, /health and the e-mails page.
"""

from __future__ import annotations

import logging
import mailbox
from functools import partial

import pytest
import requests
from fixtures.rpc import running_server
from helpers import wait_for

from crds_events import events as ev
from crds_events.accounts.users import add_user
from crds_events.config import load_settings
from crds_events.handlers.email import EmailComposer
from crds_events.handlers.runner import HandlerRunner
from crds_events.mail.compose import recipient_warnings
from crds_events.mail.outbox import Outbox, outbox_rows
from crds_events.mail.transports import MaildirTransport
from crds_events.server import parts
from crds_events.server.core import Server
from crds_events.store.eventlog import SQLiteEventStore
from crds_events.store.folds import EMAILS
from crds_events.store.handler import set_checkpoint
from crds_events.store.projections import TableProjection, read_table, rebuild
from crds_events.store.root import init_root
from crds_events.web import create_app

PASSWORD = "correct horse battery"


def make_settings(root, **values):
    settings = load_settings(root, {"observatory": "jwst", **values}, environ={})
    init_root(settings)
    return settings


def release(log) -> None:
    """A reprocessing result released: the AFFECTED DATASETS e-mail (DPAS, cc devs)."""
    log.record(ev.AffectedDatasetsComputed("jwst", "jwst_0001.pmap", "jwst_0002.pmap", 12,
                                           "sha256:abc", by_instrument={"nircam": 12}))
    log.record(ev.ReprocessingReleased("jwst", "jwst_0002.pmap", "pipeline",
                                       pushed_context="jwst_0002.pmap"))


def test_an_email_to_nobody_is_recorded_as_not_sent_and_never_attempted(tmp_path):
    settings = make_settings(tmp_path / "root")  # no redcat, dpas nor devs
    maildir = tmp_path / "maildir"
    with SQLiteEventStore(settings.db_path) as log:
        runner = HandlerRunner(log, [EmailComposer(settings), TableProjection(EMAILS)])
        runner.setup()
        release(log)
        log.record(ev.DeliveryFailed("jwst_0001"))  # no operators, redcat or devs either
        runner.run_until_idle()
        assert log.read_all(types=[ev.EmailQueued.type]) == []
        records = log.read_all(types=[ev.EmailNotSent.type])
        assert [r.event.kind for r in records] == ["AFFECTED DATASETS", "DELIVERY FAILED"]
        affected = records[0].event
        assert affected.reason == "no recipients"
        assert affected.subject == ("CRDS JWST affected datasets: jwst_0001.pmap -> "
                                    "jwst_0002.pmap")
        assert "Affected datasets: 12" in affected.body.splitlines()
        assert records[0].stream == ev.email_stream(affected.email_id)

        rows = read_table(log, TableProjection(EMAILS))
        for record in records:
            row = rows[(record.event.email_id,)]
            assert row["state"] == "unsent" and row["last_error"] == "not sent: no recipients"
            assert row["recipients"] == () and row["attempts"] == 0
        assert {row["state"] for row in outbox_rows(log)} == {"unsent"}

        # never attempted: nothing due, nothing delivered
        outbox = Outbox(log, MaildirTransport(maildir), sender=settings.smtp_from)
        assert outbox.due() == [] and outbox.retry_due() == []
        assert not maildir.exists() or len(mailbox.Maildir(maildir)) == 0

        # a replay (crash before the checkpoint) records each once; a rebuild folds the same
        with log.transaction() as tx:
            set_checkpoint(tx, EmailComposer.name, 0)
        runner.run_until_idle()
        assert len(log.read_all(types=[ev.EmailNotSent.type])) == 2
        before = read_table(log, TableProjection(EMAILS))
        rebuild(log, [TableProjection(EMAILS)])
        assert read_table(log, TableProjection(EMAILS)) == before


def test_an_email_with_some_recipients_is_queued_as_before(tmp_path):
    settings = make_settings(tmp_path / "root", recipients_dpas=("dpas@example.org",))
    with SQLiteEventStore(settings.db_path) as log:
        runner = HandlerRunner(log, [EmailComposer(settings)])
        runner.setup()
        release(log)
        runner.run_until_idle()
        (queued,) = [r.event for r in log.read_all(types=[ev.EmailQueued.type])]
        assert queued.to == ("dpas@example.org",)
        assert log.read_all(types=[ev.EmailNotSent.type]) == []


@pytest.mark.parametrize("values, expected", [
    ({}, ["redcat", "DPAS"]),
    ({"recipients_redcat": ("redcat@example.org",)}, ["DPAS"]),
    ({"recipients_dpas": ("dpas@example.org",)}, ["redcat"]),
    ({"recipients_redcat": ("r@example.org",), "recipients_dpas": ("d@example.org",)}, []),
])
def test_recipient_warnings_name_what_is_missing(tmp_path, values, expected):
    warnings = recipient_warnings(make_settings(tmp_path / "root", **values))
    assert len(warnings) == len(expected)
    for warning, who in zip(warnings, expected, strict=True):
        assert f"no {who} recipient" in warning and "not sent: no recipients" in warning


def test_health_of_a_configured_server_has_no_warnings(tmp_path):
    settings = make_settings(tmp_path / "root", recipients_redcat=("r@example.org",),
                             recipients_dpas=("d@example.org",))
    with SQLiteEventStore(settings.db_path) as store:
        body = create_app(settings, store, {"TESTING": True}).test_client().get("/health").json
    assert body["ok"] is True and body["warnings"] == []


def test_server_start_logs_one_warning_per_missing_recipient(tmp_path, caplog):
    settings = make_settings(tmp_path / "root", recipients_redcat=("r@example.org",))
    caplog.set_level(logging.WARNING, logger="crds_events.server.core")
    server = Server(settings, [])
    server.start()
    server.stop()
    warned = [r.getMessage() for r in caplog.records if r.name == "crds_events.server.core"]
    assert len(warned) == 1 and "no DPAS recipient" in warned[0]


@pytest.mark.slow
def test_serve_warns_and_the_emails_page_shows_what_was_not_sent(tmp_path, caplog):
    settings = make_settings(tmp_path / "root")
    with SQLiteEventStore(settings.db_path) as store:
        add_user(store, "olga", "olga@example.org", "operator", PASSWORD)
    caplog.set_level(logging.WARNING, logger="crds_events.server.core")
    with running_server(settings, before=[partial(parts.mail, poll_interval=0.1)]) as url:
        warned = [r.getMessage() for r in caplog.records if r.name == "crds_events.server.core"]
        assert [w for w in warned if "no redcat recipient" in w]
        assert [w for w in warned if "no DPAS recipient" in w]
        health = requests.get(f"{url}/health", timeout=30)
        assert health.status_code == 200
        body = health.json()
        assert body["ok"] is True and len(body["warnings"]) == 2
        assert "no redcat recipient" in body["warnings"][0]
        assert "no DPAS recipient" in body["warnings"][1]

        with SQLiteEventStore(settings.db_path) as store:
            release(store)
        session = requests.Session()
        token = _csrf(session, url)
        login = session.post(f"{url}/login", timeout=30, allow_redirects=False,
                             data={"name": "olga", "password": PASSWORD, "csrf_token": token})
        assert login.status_code == 302

        def unsent():
            rows = session.get(f"{url}/operate/emails.json", timeout=30).json()["emails"]
            return [row for row in rows if row["state"] == "unsent"]

        (row,) = wait_for(unsent)
        assert row["kind"] == "AFFECTED DATASETS"
        assert row["last_error"] == "not sent: no recipients"
        page = session.get(f"{url}/operate/emails", params={"state": "unsent"}, timeout=30)
        assert page.status_code == 200
        assert "not sent: no recipients" in page.text and "AFFECTED DATASETS" in page.text
        # anonymous: the page asks for a login and shows nothing of it
        anonymous = requests.get(f"{url}/operate/emails.json", timeout=30,
                                 allow_redirects=False)
        assert anonymous.status_code in (302, 401, 403)
        assert "not sent" not in anonymous.text


def _csrf(session: requests.Session, url: str) -> str:
    import re

    match = re.search(r'name="csrf_token" value="([^"]+)"',
                      session.get(f"{url}/login", timeout=30).text)
    assert match, "no CSRF field on /login"
    return match.group(1)
