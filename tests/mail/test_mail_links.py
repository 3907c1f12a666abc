"""Every link in every e-mail resolves to a page that exists (issue 13, item 6).

Each mailed event kind is composed (`crds_events.mail.compose`) about real objects of a real
root (a submission, its delivery, contexts), and every URL in the body is fetched from the
web app (Flask test client, logged in as an operator): each must answer 200.
"""

from __future__ import annotations

import re

import pytest
from fixtures.contexts import make_settings, seed_generations
from fixtures.delivery import ready_submission

from crds_events import events as ev
from crds_events.accounts import users
from crds_events.delivery import publish as delivery
from crds_events.mail.compose import MAILED_EVENT_TYPES, ComposeOptions, Facts, compose, learn
from crds_events.store import SQLiteEventStore
from crds_events.store.interface import RecordedEvent
from crds_events.store.projections import rebuild
from crds_events.submissions import review
from crds_events.web import create_app

BASE = "http://crds.example.org:9000"
PASSWORD = "correct horse"
_URL = re.compile(r"https?://[^\s)]+")
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def _events(settings) -> dict[str, ev.Event]:
    """One event of every mailed kind, about the objects the root holds."""
    obs, pmap = settings.observatory, "jwst_0002.pmap"
    files = ("jwst_nircam_flat_0077.fits",)
    return {
        "SubmissionStarted": ev.SubmissionStarted(
            submission_id="s1", observatory=obs, deliverer="olga", instrument="nircam",
            description="flats", files=files, user="olga"),
        "SubmissionReady": ev.SubmissionReady(submission_id="s1", files=files,
                                              new_context=pmap),
        "SubmissionRejected": ev.SubmissionRejected(submission_id="s1", reason="bad",
                                                    files=files, bad_files=files),
        "SubmissionFailed": ev.SubmissionFailed(submission_id="s1", error="boom",
                                                files=files),
        "SubmissionConfirmed": ev.SubmissionConfirmed(submission_id="s1", by="olga",
                                                      files=files, new_context=pmap),
        "SubmissionForced": ev.SubmissionForced(submission_id="s1", by="olga", files=files,
                                                new_context=pmap, lock_owner="sam"),
        "SubmissionCancelled": ev.SubmissionCancelled(submission_id="s1", by="olga",
                                                      files=files),
        "ContextSet": ev.ContextSet(observatory=obs, kind="latest", context=pmap,
                                    previous="jwst_0001.pmap"),
        "DeliveryFailed": ev.DeliveryFailed(delivery="jwst_0001", reason="checksum"),
        "DeliveryDirectoryUnavailable": ev.DeliveryDirectoryUnavailable(
            observatory=obs, directory=str(settings.delivery), reason="no marker"),
        "DeliveryDirectoryRestored": ev.DeliveryDirectoryRestored(
            observatory=obs, directory=str(settings.delivery)),
        "ReprocessingReleased": ev.ReprocessingReleased(observatory=obs, new_context=pmap,
                                                        pipeline="pipeline"),
        "ReprocessingOverdue": ev.ReprocessingOverdue(observatory=obs, new_context=pmap,
                                                      pipeline="pipeline",
                                                      waited_seconds=90000.0),
    }


@pytest.fixture
def site(tmp_path):
    settings = make_settings(tmp_path, "jwst")
    with SQLiteEventStore(settings.db_path) as store:
        seed_generations(settings, store, tmp_path, archived=2)
        users.add_user(store, "olga", "olga@example.org", "operator", PASSWORD)
        ready_submission(settings, store, "s1", {"jwst_nircam_flat_0077.fits": b"77\n"},
                         user="olga")
        review.confirm(settings, store, "s1", "olga")
        delivery.publish(settings, store, "jwst_0001")
        store.record(ev.DeliveryFailed(delivery="jwst_0001", reason="checksum"))
        rebuild(store)
        facts = Facts()
        for record in store.iter_all():
            learn(facts, record)
    yield settings, facts


def _recorded(position: int, event: ev.Event) -> RecordedEvent:
    type_name, schema_version, data = ev.encode(event)
    return RecordedEvent(position=position, stream=event.stream, version=1, type=type_name,
                         schema_version=schema_version, data=data, meta={"actor": "olga"},
                         recorded_at="2025-01-01T00:00:00.000000Z")


def test_every_link_in_every_email_kind_answers_200(site):
    settings, facts = site
    events = _events(settings)
    assert set(events) == set(MAILED_EVENT_TYPES), "add a sample of each new mailed kind"
    options = ComposeOptions.from_settings(settings, base_url=BASE)
    app = create_app(settings, config={"TESTING": True})
    client = app.test_client()
    token = _TOKEN.search(client.get("/login").text).group(1)
    assert client.post("/login", data={"name": "olga", "password": PASSWORD,
                                       "csrf_token": token}).status_code == 302
    checked = {}
    for position, (type_name, event) in enumerate(events.items(), start=1000):
        composed = compose(_recorded(position, event), facts, options)
        assert composed is not None, type_name
        links = [url.rstrip(".,;") for url in _URL.findall(composed.body)]
        assert links, f"{composed.kind}: no link"
        for url in links:
            assert url.startswith(BASE + "/"), url
            path = url[len(BASE):]
            status = client.get(path).status_code
            checked[(composed.kind, path)] = status
    assert {key: status for key, status in checked.items() if status != 200} == {}
    assert {kind for kind, _ in checked} >= {"DELIVERY FAILED", "AFFECTED DATASETS",
                                             "SET CONTEXT", "READY"}
