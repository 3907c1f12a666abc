"""`.cat_err` is no dead end (issue 13, item 6): the archive's reason is recorded, an
operator redelivers (library, CLI, the deliveries page), the new manifest is archived and a
context built on that delivery can become latest."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest
from click.testing import CliRunner
from fixtures.contexts import seed_generations, write_generation
from fixtures.delivery import load_poller_module, make_root, ready_submission
from helpers import wait_for

from crds_events import events as ev
from crds_events.accounts import users
from crds_events.cli import cli
from crds_events.contexts.pointers import ContextError, set_context
from crds_events.delivery import publish as delivery
from crds_events.delivery.reconcile import reconcile
from crds_events.delivery.redeliver import (
    RedeliveryConflictError,
    RedeliveryError,
    RedeliveryPermissionError,
    redeliver,
)
from crds_events.server import parts
from crds_events.server.core import Server
from crds_events.store import SQLiteEventStore
from crds_events.store.folds import FILES, replay
from crds_events.submissions import review
from crds_events.web import create_app

ArchivePoller = load_poller_module().ArchivePoller
PASSWORD = "correct horse"
FILES_A = {"jwst_nircam_flat_0002.fits": b"flat two\n", "jwst_nircam_flat_0002.rmap": b"r\n"}
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def _people(store) -> None:
    users.add_user(store, "olga", "olga@example.org", "operator", PASSWORD)
    users.add_user(store, "sam", "sam@example.org", "submitter", PASSWORD)


@pytest.fixture
def failed(tmp_path):
    """jwst_0001 published, then failed by the archive with its own words in .cat_err."""
    settings = make_root(tmp_path)
    store = SQLiteEventStore(settings.db_path)
    _people(store)
    ready_submission(settings, store, "s1", FILES_A)
    review.confirm(settings, store, "s1", "jane")
    delivery.publish(settings, store, "jwst_0001")
    cat = settings.delivery / "jwst_0001.cat"
    cat.rename(settings.delivery / "jwst_0001.cat_err")
    with open(settings.delivery / "jwst_0001.cat_err", "a") as handle:
        handle.write("ERROR: checksum mismatch for jwst_nircam_flat_0002.fits\n")
    reconcile(settings, store)
    yield settings, store
    store.close()


def test_cat_err_records_the_archives_reason(failed):
    settings, store = failed
    info = delivery.delivery_states(store)["jwst_0001"]
    assert info.state == "failed"
    assert info.reason == ("the archive renamed jwst_0001.cat to jwst_0001.cat_err: "
                           "ERROR: checksum mismatch for jwst_nircam_flat_0002.fits")


def test_redeliver_writes_a_new_manifest_linked_to_the_failed_one(failed):
    settings, store = failed
    done = redeliver(settings, store, "jwst_0001", "olga", "archive fixed")
    assert (done.delivery, done.redelivery) == ("jwst_0001", "jwst_0002")
    old, new = (delivery.delivery_states(store)[n] for n in ("jwst_0001", "jwst_0002"))
    assert (old.state, old.redelivered_as) == ("failed", "jwst_0002")
    assert (new.state, new.redelivery_of, new.files, new.submission_id) == (
        "requested", "jwst_0001", tuple(FILES_A), "s1")
    linked = store.read_all(types=["DeliveryRedelivered"])[0]
    assert linked.event == ev.DeliveryRedelivered("jwst_0001", "jwst_0002", "olga",
                                                  "archive fixed")
    assert linked.actor == "olga"
    delivery.publish(settings, store, "jwst_0002")
    assert (settings.delivery / "jwst_0002.cat").read_text().splitlines() == list(FILES_A)
    assert (settings.catalogs / "jwst_0002.cat").exists()
    # the archive takes the new one: archived, files released, the failed one left as is
    (settings.delivery / "jwst_0002.cat").unlink()
    reconcile(settings, store)
    states = delivery.delivery_states(store)
    assert (states["jwst_0001"].state, states["jwst_0002"].state) == ("failed", "archived")
    rows = replay(FILES, store.iter_all(types=FILES.consumes))
    assert all(rows[(name,)]["available"] for name in FILES_A)
    assert {r.data["delivery"] for r in store.read_all(types=["FileReleased"])} == {
        "jwst_0002"}
    # once only; and only a failed delivery
    with pytest.raises(RedeliveryConflictError, match="already redelivered as jwst_0002 by olga"):
        redeliver(settings, store, "jwst_0001", "olga")
    with pytest.raises(RedeliveryError, match="jwst_0002 is archived: only a failed"):
        redeliver(settings, store, "jwst_0002", "olga")


@pytest.mark.parametrize(("name", "user", "reason", "error", "message"), [
    ("../etc", "olga", "", RedeliveryError, "not a delivery name"),
    ("jwst_0042", "olga", "", RedeliveryError, "no such delivery"),
    ("jwst_0001", "sam", "", RedeliveryPermissionError, "operators and admins may"),
    ("jwst_0001", None, "", RedeliveryPermissionError, "--user"),
    ("jwst_0001", "nobody", "", RedeliveryPermissionError, "no such user"),
    ("jwst_0001", "olga", "<script>", RedeliveryError, "reason: printable"),
])
def test_refused_redelivery_names_why_and_records_nothing(failed, name, user, reason, error,
                                                          message):
    settings, store = failed
    head = store.head()
    with pytest.raises(error, match=re.escape(message)):
        redeliver(settings, store, name, user, reason)
    assert store.head() == head


def test_redelivers_at_once_give_one_redelivery(failed):
    settings, store = failed

    def attempt(_):
        with SQLiteEventStore(settings.db_path) as own:
            try:
                return redeliver(settings, own, "jwst_0001", "olga").redelivery
            except RedeliveryConflictError as exc:
                return str(exc)

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(attempt, range(6)))
    assert outcomes.count("jwst_0002") == 1, outcomes
    assert all("already redelivered as jwst_0002" in o for o in outcomes if o != "jwst_0002")
    assert len(store.read_all(types=["DeliveryRedelivered"])) == 1
    assert sorted(delivery.delivery_states(store)) == ["jwst_0001", "jwst_0002"]


def test_cli_redeliver(failed):
    settings, _ = failed
    runner = CliRunner()
    env = {"CRDS_EVENTS_ROOT": str(settings.root)}
    result = runner.invoke(cli, ["delivery", "redeliver", "jwst_0001", "--user", "olga"],
                           env=env)
    assert result.exit_code == 0, result.output
    assert "jwst_0001 redelivered as jwst_0002" in result.output
    again = runner.invoke(cli, ["delivery", "redeliver", "jwst_0001", "--user", "olga"],
                          env=env)
    assert again.exit_code == 1 and "already redelivered as jwst_0002 by olga" in again.output
    result = runner.invoke(cli, ["delivery", "redeliver", "jwst_0001", "--user", "sam"],
                           env=env)
    assert result.exit_code == 1 and "operators and admins may" in result.output
    result = runner.invoke(cli, ["deliveries", "--json"], env=env)
    rows = {r["name"]: r for r in map(json.loads, result.output.splitlines())}
    assert rows["jwst_0001"]["redelivered_as"] == "jwst_0002"
    assert rows["jwst_0002"]["redelivery_of"] == "jwst_0001"


def _token(client, path: str) -> str:
    match = _TOKEN.search(client.get(path).text)
    assert match, f"no CSRF field on {path}"
    return match.group(1)


def _client(app, user: str | None):
    client = app.test_client()
    if user:
        response = client.post("/login", data={"name": user, "password": PASSWORD,
                                               "csrf_token": _token(client, "/login")})
        assert response.status_code == 302, response.text
    return client


def test_deliveries_page_redeliver_button_for_operators_only(failed):
    settings, store = failed
    app = create_app(settings, store, config={"TESTING": True})
    head = store.head()
    anonymous = _client(app, None)
    assert anonymous.get("/deliveries/jwst_0001").status_code == 302  # to the login
    assert anonymous.post("/deliveries/jwst_0001/redeliver", data={
        "csrf_token": _token(anonymous, "/login")}).status_code == 401
    sam = _client(app, "sam")
    assert "redeliver-jwst_0001" not in sam.get("/operate/deliveries").text
    page = sam.get("/deliveries/jwst_0001")
    assert page.status_code == 200 and "checksum mismatch" in page.text
    assert 'id="redeliver"' not in page.text
    refused = sam.post("/deliveries/jwst_0001/redeliver",
                       data={"csrf_token": _token(sam, "/deliveries/jwst_0001")})
    assert refused.status_code == 403
    olga = _client(app, "olga")
    listing = olga.get("/operate/deliveries").text
    assert 'id="redeliver-jwst_0001"' in listing and 'href="/deliveries/jwst_0001"' in listing
    assert olga.post("/deliveries/jwst_0001/redeliver").status_code == 400  # no CSRF token
    assert olga.post("/deliveries/jwst_0001/redeliver",
                     data={"reason": "<b>", "csrf_token": _token(olga, "/operate/deliveries")}
                     ).status_code == 400
    assert store.head() == head  # every refusal recorded nothing
    done = olga.post("/deliveries/jwst_0001/redeliver",
                     data={"reason": "fixed", "csrf_token": _token(olga, "/operate/deliveries")})
    assert done.status_code == 302 and done.headers["Location"].endswith("/deliveries/jwst_0002")
    new_page = olga.get("/deliveries/jwst_0002")
    assert new_page.status_code == 200 and 'href="/deliveries/jwst_0001"' in new_page.text
    assert "redeliver-jwst_0001" not in olga.get("/operate/deliveries").text
    twice = olga.post("/deliveries/jwst_0001/redeliver",
                      data={"csrf_token": _token(olga, "/operate/deliveries")})
    assert twice.status_code == 409 and "already redelivered as jwst_0002" in twice.text
    data = olga.get("/deliveries/jwst_0001.json").get_json()
    assert data["delivery"]["redelivered_as"] == "jwst_0002"
    assert [h["type"] for h in data["history"] if h["type"].startswith("Delivery")] == [
        "DeliveryRequested", "DeliveryCreated", "DeliveryFailed", "DeliveryRedelivered"]
    assert olga.get("/deliveries/jwst_0404").status_code == 404
    assert olga.get("/deliveries/..%2Fetc").status_code == 404
    assert str(settings.root) not in twice.text


def test_cat_err_then_redeliver_then_archived_and_the_context_becomes_latest(tmp_path):
    settings = make_root(tmp_path)
    with SQLiteEventStore(settings.db_path) as setup:
        _people(setup)
        source, refs = seed_generations(settings, setup, tmp_path, archived=1)
    names = write_generation(source, refs, 2)
    files = {n: ((source if n.endswith("map") else refs) / n).read_bytes() for n in names}
    server = Server(settings, [partial(parts.mail, poll_interval=0.1),
                               partial(parts.delivery, scan_interval=0.2)], poll_interval=0.05)
    server.start()
    poller = ArchivePoller(settings.delivery, interval=0.05, delay=0.1, error_rate=1.0)
    poller.start()
    try:
        store = server.store
        ready_submission(settings, store, "g2", files)
        review.confirm(settings, store, "g2", "jane")

        def state(name):
            info = delivery.delivery_states(store).get(name)
            return info.state if info else ""

        assert wait_for(lambda: state("jwst_0001") == "failed", 20)
        with pytest.raises(ContextError, match="not archived"):
            set_context(settings, store, "latest", "jwst_0002.pmap", "too early", "olga")
        poller.error_rate = 0.0  # the archive is fixed
        assert redeliver(settings, store, "jwst_0001", "olga").redelivery == "jwst_0002"
        assert wait_for(lambda: state("jwst_0002") == "archived", 20)
        change = set_context(settings, store, "latest", "jwst_0002.pmap", "gen 2", "olga")
        assert change.changed and change.context == "jwst_0002.pmap"
        failed_mail = [r.event for r in store.read_all(types=["EmailQueued"])
                       if r.event.kind == "DELIVERY FAILED"]
        assert failed_mail and "olga@example.org" in failed_mail[0].to
    finally:
        poller.stop()
        server.stop()
