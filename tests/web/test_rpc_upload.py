"""Remote submission: token-authenticated upload into the ingest directory, progress through
jpoll, confirm/cancel as the token's user, with the real ingest watcher and processing."""

from __future__ import annotations

import io
import json
import time
from functools import partial

import pytest
import yaml
from fixtures.submissions import make_flat, seed_root
from helpers import wait_for

from crds_events.accounts import users
from crds_events.config import load_settings
from crds_events.server import parts
from crds_events.server.core import Server
from crds_events.store import SQLiteEventStore
from crds_events.store.root import init_root
from crds_events.web import create_app

FIELDS = {"deliverer": "Jane Doe", "instrument": "NIRCAM", "description": "New flats",
          "change_level": "MODERATE"}


@pytest.fixture
def running(tmp_path):
    settings = load_settings(tmp_path / "root", {"observatory": "jwst"}, environ={})
    init_root(settings)
    seed_root(settings, tmp_path / "context", ["nircam"])
    with SQLiteEventStore(settings.db_path) as store:
        users.add_user(store, "jane", "jane@example.org")
        users.add_user(store, "bob", "bob@example.org")
        tokens = {name: users.issue_token(store, name) for name in ("jane", "bob")}
        users.disable_user(store, "bob", "left")
    server = Server(settings, [partial(parts.submissions, settle=0.1, scan_interval=2.0)],
                    poll_interval=0.05)
    server.start()
    try:
        app = create_app(settings, server.store, {"TESTING": True})
        yield settings, server, app.test_client(), tokens
    finally:
        server.stop()


def _upload(client, paths, fields, **headers):
    data = {"fields": json.dumps(fields),
            "file": [(io.BytesIO(p.read_bytes()), p.name) for p in paths]}
    return client.post("/upload/submit", data=data, headers=headers,
                       content_type="multipart/form-data")


def _rpc(client, method, *params):
    reply = client.post(f"/json/{method}/1/", data=json.dumps(
        {"method": method, "params": list(params), "id": 1})).get_json()
    return reply


def test_upload_refused_without_a_valid_token(running, tmp_path):
    settings, _, client, tokens = running
    flat = make_flat(tmp_path / "made" / "flat_a.fits")
    for headers, status in (({}, 401), ({"Authorization": "Bearer crdsev_nope_x"}, 401),
                            ({"Authorization": f"Bearer {tokens['bob']}"}, 401),  # disabled
                            ({"Authorization": "Basic amFuZTp4"}, 401)):
        response = _upload(client, [flat], FIELDS, **headers)
        assert response.status_code == status and "error" in response.get_json()
    assert not (settings.ingest / "jane").exists() and not (settings.ingest / "bob").exists()


def test_bad_uploads_name_the_field(running, tmp_path):
    settings, _, client, tokens = running
    auth = {"Authorization": f"Token {tokens['jane']}"}
    flat = make_flat(tmp_path / "made" / "flat_a.fits")
    response = _upload(client, [flat], {**FIELDS, "change_level": "HUGE"}, **auth)
    assert response.status_code == 400 and "change_level" in response.get_json()["error"]
    response = _upload(client, [], FIELDS, **auth)
    assert response.status_code == 400 and "file" in response.get_json()["error"]
    odd = tmp_path / "made" / "..evil.fits"
    odd.write_bytes(flat.read_bytes())
    response = _upload(client, [odd], FIELDS, **auth)
    assert response.status_code == 400 and "..evil.fits" in response.get_json()["error"]
    response = client.post("/upload/submit", data={"fields": "{oops"}, headers=auth)
    assert response.status_code == 400 and "fields" in response.get_json()["error"]
    jane = settings.ingest / "jane"
    assert not jane.exists() or not any(jane.iterdir())  # nothing reached the watcher


@pytest.mark.slow
def test_upload_follow_and_confirm(running, tmp_path):
    settings, server, client, tokens = running
    auth = {"Authorization": f"Bearer {tokens['jane']}"}
    flat = make_flat(tmp_path / "made" / "flat_new.fits", seed=7)
    response = _upload(client, [flat], FIELDS, **auth)
    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    sid = answer["submission_id"]
    key = answer["jpoll_key"]  # unguessable: not the id (the progress is personal)
    assert key.startswith(f"{sid}.") and len(key) > len(sid) + 30
    assert answer["files"] == ["flat_new.fits"]
    # the id names the submission's own drop directory, complete when the id is answered
    drop = settings.ingest / "jane" / sid
    assert (drop / "flat_new.fits").read_bytes() == flat.read_bytes()
    raw = None
    for manifest in (drop / "submission.yaml", drop / f".submission.yaml.{sid}.started"):
        try:  # the watcher may have taken (and set aside) the manifest already
            raw = manifest.read_bytes()
            break
        except FileNotFoundError:
            continue
    assert raw is not None and yaml.safe_load(raw)["files"] == ["flat_new.fits"]
    messages, since, deadline = [], 0, time.monotonic() + 90
    while time.monotonic() < deadline:
        reply = _rpc(client, "jpoll_pull_messages", key, since)
        if reply["error"] is None:
            messages += reply["result"]
            if reply["result"]:
                since = reply["result"][-1]["id"]
            if any(m["type"] == "done" for m in messages):
                break
        else:
            assert "not found" in reply["error"]["message"]  # processing not started yet
        time.sleep(0.2)
    done = [m for m in messages if m["type"] == "done"]
    assert done and done[0]["data"]["status"] == 0, messages
    assert done[0]["data"]["result"].endswith(f"/submissions/{sid}")  # CRDS: the ready URL
    new_context = done[0]["data"]["new_context"]
    assert new_context.endswith(".pmap")
    assert [m["id"] for m in messages] == sorted({m["id"] for m in messages})
    response = client.post(f"/upload/submissions/{sid}/confirm",
                           headers={"Authorization": f"Bearer {tokens['bob']}"})
    assert response.status_code == 401  # a disabled account's token is worthless
    response = client.post(f"/upload/submissions/{sid}/confirm", headers=auth)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"submission_id": sid, "state": "confirmed",
                                   "new_context": new_context}
    assert not drop.exists()  # the uploads are in the store now: the drop is cleared
    again = client.post(f"/upload/submissions/{sid}/cancel", headers=auth, json={})
    assert again.status_code == 409 and "confirmed" in again.get_json()["error"]
    missing = client.post("/upload/submissions/nope/confirm", headers=auth)
    assert missing.status_code == 404


def test_a_missing_deliverer_is_the_token_user(running, tmp_path):
    _, server, client, tokens = running
    flat = make_flat(tmp_path / "made" / "flat_a.fits")
    fields = {k: v for k, v in FIELDS.items() if k != "deliverer"}
    response = _upload(client, [flat], fields, Authorization=f"Token {tokens['jane']}")
    assert response.status_code == 200, response.get_json()
    submission_id = response.get_json()["submission_id"]
    stream = f"submission:{submission_id}"
    assert wait_for(lambda: server.store.read_stream(stream), timeout=30)
    assert server.store.read_stream(stream)[0].event.deliverer == "jane"
