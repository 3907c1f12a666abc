"""E-mails in the app: each message as sent (headers, body, recipients, state), list and
detail; operators read all, a submitter their own, anonymous visitors none.

The messages are real: jane's and sam's submissions are processed by the real pipeline,
the real composer queues the STARTED/READY e-mails and the outbox sends them to a real
SMTP server on loopback (aiosmtpd, the ``smtp`` fixture), whose copy is the truth the page
is compared with. A failed one is sent to a port nobody listens on.
"""

from __future__ import annotations

import pytest
from fixtures.submissions import make_flat
from fixtures.websites import WebSite, text_of
from helpers import free_port

from crds_events import events as ev
from crds_events.mail.transports import SMTPTransport


@pytest.fixture
def site(tmp_path):
    site = WebSite(tmp_path)
    yield site
    site.close()


def _submission(site, tmp_path, user: str, instrument: str, seed: int) -> str:
    client = site.client(user)
    flat = make_flat(tmp_path / f"{user}.fits", instrument, "F200W", seed=seed)
    sid = site.submit(client, [flat], instrument=instrument.upper(),
                      other_emails="qa@example.org").headers["Location"].split("/")[2]
    assert isinstance(site.process(sid), ev.SubmissionReady)
    return sid


def _email_of(site, sid: str, kind: str) -> ev.EmailQueued:
    for record in site.store.read_all(types=[ev.EmailQueued.type]):
        if record.event.about == ev.submission_stream(sid) and record.event.kind == kind:
            return record.event
    raise AssertionError(f"no {kind} e-mail about {sid}")


@pytest.fixture
def mailed(site, tmp_path, smtp):
    jane = _submission(site, tmp_path, "jane", "nircam", 41)
    sam = _submission(site, tmp_path, "sam", "miri", 42)
    sent = site.mail(SMTPTransport("127.0.0.1", smtp.port, timeout=5))
    assert sent and all(isinstance(e, ev.EmailSent) for e in sent)
    return jane, sam, smtp


def test_an_email_body_page_shows_the_message_as_sent(site, mailed):
    jane_sid, _, smtp = mailed
    queued = _email_of(site, jane_sid, "READY")
    recipients, message = smtp.find(jane_sid, "READY")  # what the SMTP server received
    olga = site.client("olga")
    page = olga.get(f"/emails/{queued.email_id}")
    assert page.status_code == 200
    text = text_of(page)
    assert f"Subject {message['Subject']}" in text
    assert f"To {message['To']}" in text and f"Message-ID {message['Message-ID']}" in text
    assert "Sent" in text and 'id="mail-body"' in page.text
    body = message.get_content().replace("\r\n", "\n").strip()  # CRLF on the wire
    assert body.splitlines()[0] in page.text and body.splitlines()[-1] in page.text
    twin = olga.get(f"/emails/{queued.email_id}.json").json
    assert twin["state"] == "sent" and twin["body"].strip() == body
    assert sorted(twin["recipients"]) == sorted(recipients)
    assert twin["attempts"][0]["outcome"] == "sent"

    listing = olga.get("/emails/")
    assert listing.status_code == 200 and queued.email_id in listing.text
    assert f"/emails/{queued.email_id}" in site.client("olga").get("/operate/emails").text


def test_a_submitter_reads_their_own_emails_only(site, mailed):
    jane_sid, sam_sid, _ = mailed
    mine = _email_of(site, jane_sid, "READY")
    theirs = _email_of(site, sam_sid, "READY")
    jane = site.client("jane")
    assert jane.get(f"/emails/{mine.email_id}").status_code == 200
    refused = jane.get(f"/emails/{theirs.email_id}")
    assert refused.status_code == 403 and theirs.body[:40] not in refused.text
    listed = jane.get("/emails.json").json
    abouts = {row["about"] for row in listed["emails"]}
    assert abouts == {ev.submission_stream(jane_sid)} and listed["all"] is False
    assert theirs.email_id not in jane.get("/emails/").text
    everyone = site.client("olga").get("/emails.json").json
    assert {ev.submission_stream(jane_sid), ev.submission_stream(sam_sid)} <= \
        {row["about"] for row in everyone["emails"]}


def test_anonymous_visitors_read_no_email(site, mailed):
    jane_sid, _, _ = mailed
    queued = _email_of(site, jane_sid, "READY")
    anonymous = site.client()
    for url in (f"/emails/{queued.email_id}", f"/emails/{queued.email_id}.json", "/emails/",
                "/emails.json"):
        response = anonymous.get(url)
        assert response.status_code in (302, 401), url
        assert queued.body[:40] not in response.text and queued.subject not in response.text
    assert 'href="/emails/"' not in anonymous.get("/").text  # no link that bounces


def test_unknown_and_odd_email_ids(site, mailed):
    olga = site.client("olga")
    for email_id in ("999999-ready", "x" * 300, "..", "%2e%2e%2fetc"):
        response = olga.get(f"/emails/{email_id}")
        assert response.status_code == 404, email_id
        assert "Traceback" not in response.text
    assert olga.get("/emails/?state=bogus").status_code == 400


def test_a_failed_email_shows_why(site, tmp_path):
    sid = _submission(site, tmp_path, "jane", "nircam", 43)
    site.mail(SMTPTransport("127.0.0.1", free_port(), timeout=2))  # nobody listens
    queued = _email_of(site, sid, "READY")
    twin = site.client("jane").get(f"/emails/{queued.email_id}.json").json
    assert twin["state"] in ("retrying", "failed") and twin["attempts"]
    assert twin["attempts"][0]["outcome"] in ("will retry", "failed")
    page = text_of(site.client("jane").get(f"/emails/{queued.email_id}"))
    assert "Not sent yet" in page or "Failed" in page
