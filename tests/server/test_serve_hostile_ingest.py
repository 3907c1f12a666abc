"""`crds-events serve` with FIFOs in the ingest directory: the single ingest worker is never
blocked, other users' drops become submissions, writes answer at once and SIGTERM stops it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests
from fixtures.submissions import make_flat, seed_root
from helpers import wait_for

from crds_events import events as ev
from crds_events.accounts import users
from crds_events.config import load_settings
from crds_events.store import SQLiteEventStore
from crds_events.store.root import init_root
from crds_events.submissions.manifest import MANIFEST_NAME

FIELDS = {"deliverer": "Sam", "instrument": "NIRCAM", "description": "flats",
          "change_level": "TRIVIAL"}
WRITE_BOUND = 1.0  # seconds: what the issue asks of any write while a FIFO sits there
STOP_BOUND = 10.0


def _outcome(store, sid: str) -> str | None:
    final = (ev.SubmissionReady.type, ev.SubmissionRejected.type, ev.SubmissionFailed.type)
    return next((r.type for r in store.read_stream(ev.submission_stream(sid))
                 if r.type in final), None)


@pytest.mark.slow
def test_fifo_manifests_never_freeze_the_server(tmp_path):
    settings = load_settings(tmp_path / "root", {"observatory": "jwst"}, environ={})
    init_root(settings)
    seed_root(settings, tmp_path / "context", ["nircam", "miri"])
    with SQLiteEventStore(settings.db_path) as store:
        users.add_user(store, "jane", "jane@example.org")
        users.add_user(store, "sam", "sam@example.org")
        token = users.issue_token(store, "sam")
    jane = settings.ingest / "jane"
    jane.mkdir(parents=True)
    (jane / "a.fits").write_bytes(b"a" * 100)
    os.mkfifo(jane / MANIFEST_NAME)  # met by the start-up scan
    server = subprocess.Popen(
        [sys.executable, "-m", "crds_events", "serve", "--root", str(settings.root),
         "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = SQLiteEventStore(settings.db_path)
    try:
        announced = server.stdout.readline()
        url = re.search(r"web app on (http://127\.0\.0\.1:\d+)", announced).group(1)
        # and on the running server: a FIFO manifest in a drop directory of its own
        own = jane / "20250101T000000-0123abcd"
        own.mkdir()
        (own / "b.fits").write_bytes(b"b" * 100)
        os.mkfifo(own / MANIFEST_NAME)
        time.sleep(1.5)  # past the settle time: the ingest worker has met both
        assert requests.get(f"{url}/health", timeout=10).status_code == 200

        flat = make_flat(tmp_path / "made" / "flat_s.fits", seed=71)
        began = time.monotonic()
        response = requests.post(f"{url}/upload/submit", timeout=30,
                                 headers={"Authorization": f"Bearer {token}"},
                                 data={"fields": json.dumps(FIELDS)},
                                 files=[("file", (flat.name, flat.read_bytes()))])
        upload_seconds = time.monotonic() - began
        assert response.status_code == 200, response.text
        assert upload_seconds < WRITE_BOUND, upload_seconds
        sid = response.json()["submission_id"]
        # another user's drop becomes a submission and is processed
        assert wait_for(lambda: _outcome(store, sid), 120) == ev.SubmissionReady.type, \
            [r.type for r in store.read_stream(ev.submission_stream(sid))]
        # a write to the log answers at once
        began = time.monotonic()
        cancelled = requests.post(f"{url}/upload/submissions/{sid}/cancel", timeout=30,
                                  headers={"Authorization": f"Bearer {token}"},
                                  json={"reason": "checking writes"})
        cancel_seconds = time.monotonic() - began
        assert cancelled.status_code == 200, cancelled.text
        assert cancel_seconds < WRITE_BOUND, cancel_seconds
        # nothing was made of the FIFOs, and they are left where they are
        started = {r.event.submission_id: r.event.user
                   for r in store.read_all(types=[ev.SubmissionStarted.type])}
        assert started == {sid: "sam"}
        assert (jane / MANIFEST_NAME).exists() and (own / MANIFEST_NAME).exists()

        began = time.monotonic()
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=STOP_BOUND + 20)
        stop_seconds = time.monotonic() - began
    finally:
        store.close()
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert stop_seconds < STOP_BOUND, stop_seconds
    assert server.returncode == 0, err[-2000:]
    assert "Traceback" not in err
