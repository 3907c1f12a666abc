"""Issue 16's acceptance: two `crds-events serve` processes on one PostgreSQL log; the
leader is killed with SIGKILL while it processes a submission; the other takes over, the
submission reaches READY, no event is duplicated or lost, and each e-mail is sent once with
its own Message-ID. The servers are the real command (every part of `PARTS`), the SMTP
server a real aiosmtpd, the submission a drop of real FITS files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest
from fixtures.submissions import make_flat, write_context
from helpers import wait_for
from test_leader import holder

from crds_events import events as ev
from crds_events.accounts import users
from crds_events.config import load_settings
from crds_events.contexts.importcache import import_cache
from crds_events.store import open_store
from crds_events.store.root import init_root
from crds_events.submissions import review
from crds_events.submissions.dropbox import drop_submission

REPO = Path(__file__).resolve().parents[2]
FIELDS = {"deliverer": "Jane Doe", "instrument": "NIRCAM", "description": "New flats",
          "change_level": "MODERATE"}

pytestmark = pytest.mark.slow


def _root(tmp_path: Path, smtp_port: int, url: str):
    root = tmp_path / "root"
    root.mkdir()
    (root / "crds-events.toml").write_text(textwrap.dedent(f"""
        observatory = "jwst"
        [smtp]
        host = "127.0.0.1"
        port = {smtp_port}
        from = "crds@example.org"
        [recipients]
        redcat = ["redcat@example.org"]
        [watcher]
        mode = "native"
    """))
    settings = load_settings(root, {"database_url": url}, environ={})
    init_root(settings)
    pmap = write_context(tmp_path / "context", ["nircam", "miri"])
    with open_store(settings) as store:
        import_cache(settings, store, tmp_path / "context", None, pmap.name, ("latest", "edit"))
        users.add_user(store, "jane", "jane@example.org")
    return settings


def _serve(settings, url: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CRDS_EVENTS_ROOT": str(settings.root),
           "CRDS_EVENTS_DATABASE_URL": url}
    return subprocess.Popen([sys.executable, "-m", "crds_events", "serve", "--port", "0"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _types(store, sid: str) -> list[str]:
    return [r.type for r in store.read_stream(ev.submission_stream(sid))]


def test_kill_the_leader_mid_submission_the_other_server_finishes_it(
        tmp_path, smtp, postgres_url):
    settings = _root(tmp_path, smtp.port, postgres_url)
    servers = [_serve(settings, postgres_url) for _ in range(2)]
    store = open_store(settings)
    try:
        assert wait_for(lambda: holder(postgres_url) is not None, 60), "nobody leads"
        paths = [make_flat(tmp_path / "made" / f"f{i}.fits", filter_=f, seed=20 + i)
                 for i, f in enumerate(["F090W", "F115W", "F150W", "F200W", "F277W",
                                        "F356W"])]
        sid = drop_submission(settings, "jane", paths, FIELDS)
        # killed once processing has visibly begun and its STARTED e-mail is out
        began = wait_for(lambda: ev.SubmissionProgress.type in _types(store, sid)
                         and smtp.find(sid, "STARTED"), 60)
        assert began, f"processing never started; e-mails: {smtp.subjects()}"
        leader_name = holder(postgres_url)
        leader = next(p for p in servers if leader_name.endswith(f":{p.pid}"))
        follower = next(p for p in servers if p is not leader)
        leader.send_signal(signal.SIGKILL)
        leader.wait(10)
        outcomes = ("SubmissionReady", "SubmissionRejected", "SubmissionFailed")
        assert not any(t in _types(store, sid) for t in outcomes), \
            "the kill came too late to test a takeover mid-processing"

        assert wait_for(lambda: (holder(postgres_url) or "").endswith(f":{follower.pid}"),
                        30), "the other server did not take over"
        outcome = review.follow(store, sid, timeout=120)
        assert isinstance(outcome, ev.SubmissionReady), outcome
        assert wait_for(lambda: smtp.find(sid, "READY"), 30), smtp.subjects()
        time.sleep(2.0)  # let anything that would duplicate happen

        follower.send_signal(signal.SIGTERM)
        assert follower.wait(60) == 0, follower.stderr.read().decode()[-2000:]
        types = Counter(_types(store, sid))
        assert types["SubmissionStarted"] == 1 and types["SubmissionReady"] == 1
        assert types["FileCertified"] == len(outcome.files)
        progress = [r.event.message for r in store.read_stream(ev.submission_stream(sid))
                    if r.type == "SubmissionProgress"]
        assert len(progress) == len(set(progress)), "a progress line was recorded twice"
        positions = [r.position for r in store.iter_all()]
        assert positions == list(range(1, len(positions) + 1))  # none lost, none twice
        queued = Counter(r.data["kind"] for r in store.read_all(types=["EmailQueued"])
                         if r.data["about"] == ev.submission_stream(sid))
        assert queued == {"STARTED": 1, "READY": 1}
        ids = [m["Message-ID"] for _, m in smtp.messages if sid in str(m["Subject"])]
        assert len(ids) == len(set(ids)) == 2, ids  # each e-mail once, its own Message-ID
    finally:
        for server in servers:
            if server.poll() is None:
                server.kill()
            server.wait(10)
            server.stderr.close()
        store.close()
