"""Every accepted upload is its own submission: uploads close together and at once, over HTTP
against the real server (waitress, the ingest watcher, the submission worker)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest
import requests
from fixtures.rpc import running_server
from fixtures.submissions import make_flat, seed_root
from helpers import wait_for

from crds_events import events as ev
from crds_events.accounts import users
from crds_events.config import load_settings
from crds_events.server import parts
from crds_events.store import SQLiteEventStore
from crds_events.store.root import init_root
from crds_events.submissions.dropbox import is_drop_id

FIELDS = {"deliverer": "Jane Doe", "instrument": "NIRCAM", "description": "New flats",
          "change_level": "MODERATE"}
FINAL = (ev.SubmissionReady.type, ev.SubmissionRejected.type, ev.SubmissionFailed.type)


@pytest.fixture
def site(tmp_path):
    settings = load_settings(tmp_path / "root", {"observatory": "jwst"}, environ={})
    init_root(settings)
    seed_root(settings, tmp_path / "context", ["nircam", "miri"])
    with SQLiteEventStore(settings.db_path) as store:
        users.add_user(store, "jane", "jane@example.org")
        token = users.issue_token(store, "jane")
    # the served default settle (0.5 s): uploads 0.2 s apart land within one settling
    submissions = partial(parts.submissions, settle=0.5, scan_interval=2.0)
    with running_server(settings, before=[submissions]) as url:
        store = SQLiteEventStore(settings.db_path)
        try:
            yield settings, url, token, store
        finally:
            store.close()


def _upload(url: str, token: str, path: Path, fields=FIELDS) -> requests.Response:
    with open(path, "rb") as stream:
        return requests.post(f"{url}/upload/submit", timeout=60,
                             headers={"Authorization": f"Bearer {token}"},
                             data={"fields": json.dumps(fields)},
                             files=[("file", (path.name, stream.read()))])


def _outcome(store, sid: str) -> str | None:
    types = [r.type for r in store.read_stream(ev.submission_stream(sid))]
    return next((t for t in types if t in FINAL), None)


def _check_answers(settings, responses: list[requests.Response]) -> list[str]:
    """Every answer a 200 with an id of its own, none naming a server path; the ids."""
    for response in responses:
        assert str(settings.root) not in response.text
        assert response.status_code == 200, response.text
    ids = [r.json()["submission_id"] for r in responses]
    assert len(set(ids)) == len(ids), ids
    return ids


def _check_submissions(settings, store, ids: list[str], timeout: float = 180) -> None:
    """Each id became a submission of its own, of its own file, and reached an outcome
    (READY, or BAD FILES: never FAIL)."""
    assert wait_for(lambda: all(_outcome(store, sid) for sid in ids), timeout), \
        {sid: _outcome(store, sid) for sid in ids}
    outcomes = {sid: _outcome(store, sid) for sid in ids}
    assert set(outcomes.values()) <= {ev.SubmissionReady.type, ev.SubmissionRejected.type}, \
        outcomes
    started = {r.event.submission_id: r.event for r in
               store.read_all(types=[ev.SubmissionStarted.type])}
    assert set(ids) <= set(started)
    assert len({started[sid].files for sid in ids}) == len(ids)  # nobody took another's drop
    # nothing half-made or left to take in the ingest directory
    jane = settings.ingest / "jane"
    assert not (jane / "submission.yaml").exists()
    for entry in jane.iterdir():
        assert is_drop_id(entry.name), entry.name  # no staging directory left behind
        assert not (entry / "submission.yaml").exists()


@pytest.mark.slow
def test_two_uploads_close_together_are_two_submissions(site, tmp_path):
    settings, url, token, store = site
    first = _upload(url, token, make_flat(tmp_path / "made" / "flat_a.fits", seed=31))
    time.sleep(0.2)
    second = _upload(url, token, make_flat(tmp_path / "made" / "flat_b.fits", "nircam",
                                           "F150W", seed=32))
    ids = _check_answers(settings, [first, second])
    _check_submissions(settings, store, ids)


@pytest.mark.slow
def test_six_concurrent_uploads_by_one_user_are_six_submissions(site, tmp_path):
    settings, url, token, store = site
    filters = ["F090W", "F115W", "F150W", "F200W", "F277W", "F356W"]
    paths = [make_flat(tmp_path / "made" / f"flat_{i}.fits", "nircam", f, seed=40 + i)
             for i, f in enumerate(filters)]
    with ThreadPoolExecutor(len(paths)) as pool:
        responses = list(pool.map(partial(_upload, url, token), paths))
    ids = _check_answers(settings, responses)
    _check_submissions(settings, store, ids)
    # the same bytes with the same fields, six times at once: still six drops (a content
    # key alone would have merged them)
    same = make_flat(tmp_path / "made" / "flat_same.fits", "nircam", "F444W", seed=50)
    with ThreadPoolExecutor(6) as pool:
        again = list(pool.map(lambda _: _upload(url, token, same), range(6)))
    ids = _check_answers(settings, again)
    assert wait_for(lambda: all(_outcome(store, sid) for sid in ids), 180)


def test_a_broken_ingest_directory_is_a_clear_error_without_a_path(site, tmp_path):
    settings, url, token, store = site
    head = store.head()
    (settings.ingest / "jane").write_text("not a directory")  # e.g. a botched hand setup
    response = _upload(url, token, make_flat(tmp_path / "made" / "flat_x.fits", seed=60))
    assert response.status_code == 503, response.text
    assert "cannot store the upload now" in response.json()["error"]
    assert str(settings.root) not in response.text and "Traceback" not in response.text
    assert store.head() == head
    # bad input, too, is answered without a server path
    (settings.ingest / "jane").unlink()
    bad = _upload(url, token, make_flat(tmp_path / "made" / "flat_y.fits", seed=61),
                  {**FIELDS, "derive_from": "jwst_9.pmap"})
    assert bad.status_code == 400 and str(settings.root) not in bad.text
    assert "derive_from" in bad.json()["error"]
    assert not any((settings.ingest / "jane").iterdir())  # nothing left to take
    assert store.head() == head
