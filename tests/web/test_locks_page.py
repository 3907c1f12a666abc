"""The "My locks" page and the lock a submission takes: shown, released, given back.

Real roots, a real SQLite log, the real ingest watcher and submission worker
(`fixtures.websites.WebSite`); locks are read back from the log with the domain API, never
from what the page says alone.
"""

from __future__ import annotations

import threading

import pytest
from fixtures.submissions import make_flat
from fixtures.websites import WebSite, post, text_of, token_of

from crds_events import events as ev
from crds_events.accounts import locks
from crds_events.store import SQLiteEventStore
from crds_events.submissions.lockrelease import release_after_outcome


@pytest.fixture
def site(tmp_path):
    site = WebSite(tmp_path)
    yield site
    site.close()


def _ready(site, tmp_path, client, seed: int = 5, instrument: str = "nircam") -> str:
    flat = make_flat(tmp_path / f"{instrument}_{seed}.fits", instrument, "F200W", seed=seed)
    sid = site.submit(client, [flat], instrument=instrument.upper()).headers["Location"]
    sid = sid.split("/")[2]
    assert isinstance(site.process(sid), ev.SubmissionReady)
    return sid


def _released(site) -> list[ev.LockReleased]:
    return [r.event for r in site.store.read_all(types=[ev.LockReleased.type])]


def test_lock_shown_on_the_submit_form_and_the_locks_page_then_released(site, tmp_path):
    jane = site.client("jane")
    assert "You hold no instrument lock" in text_of(jane.get("/submit"))
    sid = _ready(site, tmp_path, jane)
    held = locks.current_lock(site.store, "nircam")
    assert held is not None and held.owner == "jane" and held.submission_id == sid

    until = held.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    form = text_of(jane.get("/submit"))
    assert f"You hold the lock on NIRCAM until {until}" in form
    page = jane.get("/locks")
    assert page.status_code == 200 and 'id="release-nircam"' in page.text
    assert until in text_of(page) and sid in page.text
    (row,) = jane.get("/locks.json").json["locks"]
    assert (row["instrument"], row["owner"], row["mine"], row["can_release"]) == \
        ("nircam", "jane", True, True)

    done = post(jane, "/locks/nircam/release", {}, form_page="/locks")
    assert done.status_code == 302 and done.headers["Location"] == "/locks"
    assert locks.current_lock(site.store, "nircam") is None
    assert [(e.instrument, e.owner) for e in _released(site)] == [("nircam", "jane")]
    after = text_of(jane.get("/locks"))
    assert "Released your lock on NIRCAM" in after and "You hold no instrument lock" in after


def test_a_rejected_submission_gives_its_lock_back(site, tmp_path):
    jane = site.client("jane")
    bad = make_flat(tmp_path / "bad.fits", "nircam", "F150W", seed=2, bad=True)
    sid = site.submit(jane, [bad]).headers["Location"].split("/")[2]
    assert isinstance(site.process(sid), ev.SubmissionRejected)
    assert locks.current_lock(site.store, "nircam") is None
    assert [e.owner for e in _released(site)] == ["jane"]
    # the trap of the issue: after BAD FILES on NIRCAM, MIRI can be submitted at once
    miri = _ready(site, tmp_path, jane, seed=7, instrument="miri")
    assert locks.current_lock(site.store, "miri").submission_id == miri


def test_a_ready_submission_keeps_the_lock_through_a_later_rejection(site, tmp_path):
    jane = site.client("jane")
    ready = _ready(site, tmp_path, jane)
    bad = make_flat(tmp_path / "bad.fits", "nircam", "F150W", seed=2, bad=True)
    sid = site.submit(jane, [bad]).headers["Location"].split("/")[2]
    assert isinstance(site.process(sid), ev.SubmissionRejected)
    held = locks.current_lock(site.store, "nircam")
    assert held is not None and held.owner == "jane" and held.submission_id == ready
    assert _released(site) == []
    # ... until it is cancelled (review releases it, as before)
    cancelled = post(jane, f"/submissions/{ready}/cancel", {}, form_page=f"/submissions/{ready}")
    assert cancelled.status_code == 302
    assert locks.current_lock(site.store, "nircam") is None


def test_a_lock_the_submission_did_not_take_is_left_alone(site, tmp_path):
    """Taken by hand (or by a `crds submit` login) before submitting: the submission only
    renews it, and its rejection does not end the user's session of work."""
    locks.acquire_lock(site.store, "nircam", "jane")
    jane = site.client("jane")
    bad = make_flat(tmp_path / "bad.fits", "nircam", "F150W", seed=2, bad=True)
    sid = site.submit(jane, [bad]).headers["Location"].split("/")[2]
    assert isinstance(site.process(sid), ev.SubmissionRejected)
    held = locks.current_lock(site.store, "nircam")
    assert held is not None and held.owner == "jane" and held.submission_id == ""
    assert _released(site) == []


def test_release_after_an_outcome_twice_records_it_once(site, tmp_path):
    jane = site.client("jane")
    bad = make_flat(tmp_path / "bad.fits", "nircam", "F150W", seed=2, bad=True)
    sid = site.submit(jane, [bad]).headers["Location"].split("/")[2]
    outcome = site.process(sid)
    started = site.store.read_stream(ev.submission_stream(sid))[0].event
    locks.acquire_lock(site.store, "nircam", "jane")  # taken again by hand meanwhile
    with site.store.transaction() as tx:  # a resumed run replays the outcome step
        assert release_after_outcome(tx, started, "jane", outcome) is None
    assert locks.current_lock(site.store, "nircam").owner == "jane"
    assert len(_released(site)) == 1


# --- hostile ---------------------------------------------------------------------------------


def test_anonymous_and_csrf_less_releases_are_refused_and_change_nothing(site, tmp_path):
    jane = site.client("jane")
    _ready(site, tmp_path, jane)
    head = site.store.head()

    anonymous = site.client()
    assert anonymous.get("/locks").status_code == 302  # to the login page
    assert anonymous.get("/locks.json").status_code in (302, 401)
    assert anonymous.post("/locks/nircam/release").status_code == 400  # no CSRF token
    with_token = anonymous.post("/locks/nircam/release",
                                data={"csrf_token": token_of(anonymous)})
    assert with_token.status_code == 401
    missing = jane.post("/locks/nircam/release")
    assert missing.status_code == 400 and "CSRF token missing" in text_of(missing)
    wrong = jane.post("/locks/nircam/release", data={"csrf_token": "forged"})
    assert wrong.status_code == 400
    assert site.store.head() == head
    assert locks.current_lock(site.store, "nircam").owner == "jane"


def test_another_users_lock_only_an_admin_releases(site, tmp_path):
    jane = site.client("jane")
    _ready(site, tmp_path, jane)
    head = site.store.head()

    sam = site.client("sam")
    page = text_of(sam.get("/locks"))
    assert "NIRCAM jane" in page and 'id="release-nircam"' not in sam.get("/locks").text
    refused = post(sam, "/locks/nircam/release", {}, form_page="/locks")
    assert refused.status_code == 403 and "held by jane" in text_of(refused)
    olga = site.client("olga")  # an operator sees it, may not release another's
    assert post(olga, "/locks/nircam/release", {}, form_page="/locks").status_code == 403
    assert site.store.head() == head
    assert "Traceback" not in refused.text

    for name in ("NOT-AN-INSTRUMENT!", "a" * 40):
        assert post(sam, f"/locks/{name}/release", {}, form_page="/locks").status_code == 404
    free = post(sam, "/locks/miri/release", {}, form_page="/locks")
    assert free.status_code == 302 and site.store.head() == head

    ada = site.client("ada")
    assert 'id="release-nircam"' in ada.get("/locks").text
    assert post(ada, "/locks/nircam/release", {}, form_page="/locks").status_code == 302
    assert locks.current_lock(site.store, "nircam") is None
    (record,) = site.store.read_all(head, types=[ev.LockReleased.type])
    assert record.event.owner == "jane" and record.actor == "ada"


def test_two_releases_at_once_record_one(site, tmp_path):
    """The submitter's Release and the pipeline's outcome (or two tabs) race: the lock
    stream's optimistic concurrency lets one win; the other finds it free."""
    jane = site.client("jane")
    _ready(site, tmp_path, jane)
    barrier = threading.Barrier(4)
    results: list[object] = []
    errors: list[BaseException] = []

    def web_release():
        with SQLiteEventStore(site.settings.db_path) as store:
            barrier.wait()
            results.append(locks.release_lock(store, "nircam", "jane"))

    def tx_release():
        with SQLiteEventStore(site.settings.db_path) as store:
            barrier.wait()
            with store.transaction() as tx:
                results.append(locks.release_if_held_by(tx, "nircam", "jane"))

    threads = [threading.Thread(target=f) for f in (web_release, tx_release) * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sum(r is not None for r in results) == 1, results
    assert len(_released(site)) == 1
