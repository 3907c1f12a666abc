"""Review decisions are exactly-once: racing confirms (a double click, eight at once) and a
confirm racing a cancel, over HTTP against the real server (submission worker, waitress),
on a real SQLite log and file store."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import pytest
import requests
from fixtures.submissions import make_flat, seed_root

from crds_events import events as ev
from crds_events.accounts import users
from crds_events.config import load_settings
from crds_events.contexts.pointers import context_pointers
from crds_events.server import parts
from crds_events.server.core import Server
from crds_events.server.wsgi import WebServer
from crds_events.store import SQLiteEventStore
from crds_events.store.filerepair import repair_file_store
from crds_events.store.filestore import FileStore
from crds_events.store.root import init_root
from crds_events.submissions import review
from crds_events.submissions.dropbox import drop_submission, work_dir

FIELDS = {"deliverer": "Jane Doe", "instrument": "NIRCAM", "description": "New flats",
          "change_level": "MODERATE"}


@pytest.fixture
def served(tmp_path):
    """A running server (submissions + web on a free port), its URL and jane's token."""
    settings = load_settings(tmp_path / "root", {"observatory": "jwst"}, environ={})
    init_root(settings)
    seed_root(settings, tmp_path / "context", ["nircam", "miri"])
    with SQLiteEventStore(settings.db_path) as store:
        users.add_user(store, "jane", "jane@example.org")
        token = users.issue_token(store, "jane")
    server = Server(settings, [partial(parts.submissions, settle=0.1, scan_interval=2.0),
                               partial(parts.web, threads=10)],
                    host="127.0.0.1", port=0, poll_interval=0.05)
    server.start()
    try:
        yield server, server.component("web", WebServer).url, token
    finally:
        server.stop()


def _ready(server, tmp_path: Path, seed: int, filter_: str = "F200W") -> ev.SubmissionReady:
    flat = make_flat(tmp_path / "made" / f"flat_{seed}.fits", filter_=filter_, seed=seed)
    sid = drop_submission(server.settings, "jane", [flat], FIELDS)
    ready = review.follow(server.store, sid, timeout=90)
    assert isinstance(ready, ev.SubmissionReady), ready
    return ready


def _race(url: str, token: str, posts: list[tuple[str, dict]]) -> list[requests.Response]:
    """POST every (path, json) at once: all threads released together by a barrier."""
    barrier = threading.Barrier(len(posts))
    answers: list[requests.Response | None] = [None] * len(posts)

    def post(i: int, path: str, body: dict) -> None:
        barrier.wait()
        answers[i] = requests.post(url + path, json=body, timeout=120,
                                   headers={"Authorization": f"Bearer {token}"})

    threads = [threading.Thread(target=post, args=(i, *p)) for i, p in enumerate(posts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(150)
    assert all(answer is not None for answer in answers)
    return answers  # type: ignore[return-value]


def _store_intact(server, ready: ev.SubmissionReady) -> None:
    files = FileStore.from_settings(server.settings)
    for name in ready.files:
        assert files.exists(name), f"{name} missing from the file store"
    edit = context_pointers(server.store, "jwst")["edit"]
    assert edit == ready.new_context and files.exists(edit)


@pytest.mark.slow
def test_eight_parallel_confirms_one_wins_store_intact(served, tmp_path):
    server, url, token = served
    ready = _ready(server, tmp_path, seed=1)
    sid = ready.submission_id
    answers = _race(url, token, [(f"/upload/submissions/{sid}/confirm", {})] * 8)
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [409] * 7, [(a.status_code, a.text) for a in answers]
    for answer in answers:
        if answer.status_code == 409:
            error = answer.json()["error"]
            assert f"submission {sid}: already confirmed by jane at " in error, error
            assert str(server.settings.root) not in error
    stream = server.store.read_stream(ev.submission_stream(sid))
    assert [r.type for r in stream].count(ev.SubmissionConfirmed.type) == 1
    assert len(server.store.read_all(types=[ev.DeliveryRequested.type])) == 1
    assert len(server.store.read_all(types=[ev.ContextSet.type])) == 3  # latest, edit, edit
    _store_intact(server, ready)
    # the next submission is processed against the new edit context and reaches READY
    following = _ready(server, tmp_path, seed=2, filter_="F150W")
    assert following.new_context not in (ready.new_context, "")
    # a confirm of a decided submission, again later: the same clear refusal
    late = requests.post(f"{url}/upload/submissions/{sid}/confirm", timeout=30,
                         headers={"Authorization": f"Bearer {token}"})
    assert late.status_code == 409 and "already confirmed by jane" in late.json()["error"]


@pytest.mark.slow
def test_confirm_racing_cancel_exactly_one_decision(served, tmp_path):
    server, url, token = served
    for round_, seed in enumerate((11, 12, 13)):
        ready = _ready(server, tmp_path, seed=seed, filter_=("F090W", "F115W", "F150W")[round_])
        sid = ready.submission_id
        edit_before = context_pointers(server.store, "jwst")["edit"]
        answers = _race(url, token, [(f"/upload/submissions/{sid}/confirm", {}),
                                     (f"/upload/submissions/{sid}/cancel", {"reason": "oops"})])
        codes = sorted(a.status_code for a in answers)
        assert codes == [200, 409], [(a.status_code, a.text) for a in answers]
        view = review.load(server.store, sid)
        loser = next(a for a in answers if a.status_code == 409).json()["error"]
        assert f"already {view.state} by jane at " in loser
        decisions = [r.type for r in server.store.read_stream(ev.submission_stream(sid))
                     if r.type in (ev.SubmissionConfirmed.type, ev.SubmissionCancelled.type)]
        assert len(decisions) == 1
        edit = context_pointers(server.store, "jwst")["edit"]
        if view.state == "confirmed":
            _store_intact(server, ready)
        else:
            assert view.state == "cancelled" and edit == edit_before
        assert FileStore.from_settings(server.settings).exists(edit)


_CHILD = """
import sys
from crds_events.config import load_settings
from crds_events.store import SQLiteEventStore
from crds_events.submissions import review
settings = load_settings(sys.argv[1], environ={})
store = SQLiteEventStore(settings.db_path)
print("ready", flush=True)
sys.stdin.readline()
review.confirm(settings, store, sys.argv[2], "jane")
print("done", flush=True)
"""


def _check_after_kill(settings, sid: str, ready: ev.SubmissionReady) -> str:
    """The log and the store agree, whatever moment the confirm was killed at."""
    with SQLiteEventStore(settings.db_path) as store:
        state = review.load(store, sid).state
        edit = context_pointers(store, "jwst")["edit"]
    files = FileStore.from_settings(settings)
    assert state in ("ready", "confirmed")
    if state == "confirmed":
        assert edit == ready.new_context
        assert all(files.exists(name) for name in ready.files)
    else:
        assert edit == "jwst_0001.pmap"
    assert files.exists(edit)
    return state


@pytest.mark.slow
def test_confirm_killed_at_any_moment_is_resumable(tmp_path):
    settings = load_settings(tmp_path / "root", {"observatory": "jwst"}, environ={})
    init_root(settings)
    seed_root(settings, tmp_path / "context", ["nircam"])
    with SQLiteEventStore(settings.db_path) as store:
        users.add_user(store, "jane", "jane@example.org")
    server = Server(settings, [partial(parts.submissions, settle=0.1, scan_interval=2.0)],
                    poll_interval=0.05)
    server.start()
    try:
        ready = _ready(server, tmp_path, seed=21)
    finally:
        server.stop()
    sid = ready.submission_id
    state = "ready"
    for delay in (0.0, 0.005, 0.02, 0.05, 0.1, 0.3):
        child = subprocess.Popen([sys.executable, "-c", _CHILD, str(settings.root), sid],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "ready"
            child.stdin.write("go\n")
            child.stdin.flush()
            time.sleep(delay)
            child.send_signal(signal.SIGKILL)
        finally:
            child.wait(60)
        state = _check_after_kill(settings, sid, ready)
        if state == "confirmed":
            break
    # restart: the repair runs; an unfinished confirm is simply done again
    server = Server(settings, [partial(parts.submissions, settle=0.1, scan_interval=2.0)],
                    poll_interval=0.05)
    server.start()
    try:
        if state == "ready":
            review.confirm(settings, server.store, sid, "jane")
        assert _check_after_kill(settings, sid, ready) == "confirmed"
        assert not work_dir(settings, sid).exists()  # the clean-up was finished too
        removed = repair_file_store(settings, server.store, stale_after=0).removed_temps
        assert all(name.startswith(".incoming-") for name in removed)
        files = FileStore.from_settings(settings)
        assert not [p for p in files.directory.rglob(".incoming-*")]
        following = _ready(server, tmp_path, seed=22, filter_="F150W")
        assert following.new_context not in ("", ready.new_context)
    finally:
        server.stop()


@pytest.mark.slow
def test_confirm_with_its_work_directory_gone_is_refused_cleanly(served, tmp_path):
    server, url, token = served
    ready = _ready(server, tmp_path, seed=31)
    sid = ready.submission_id
    shutil.rmtree(work_dir(server.settings, sid))
    head = server.store.head()
    answer = requests.post(f"{url}/upload/submissions/{sid}/confirm", timeout=30,
                           headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 409
    error = answer.json()["error"]
    assert "processed copy of" in error and "cannot be confirmed" in error
    assert str(server.settings.root) not in error and "/work/" not in error
    assert [r.type for r in server.store.read_all(head)
            if r.stream == ev.submission_stream(sid)] == []
    assert review.load(server.store, sid).state == "ready"
    assert context_pointers(server.store, "jwst")["edit"] == "jwst_0001.pmap"


def test_a_name_left_in_the_store_by_a_lost_race_is_never_given_again(served, tmp_path):
    """A confirm that put its files and then lost to a cancel leaves them in the store, named
    by no event; the next submission gets the next name, not the orphan's, and confirms."""
    server, url, token = served
    first = _ready(server, tmp_path, seed=11)
    orphan = next(name for name in first.files if name.endswith(".fits"))
    review.cancel(server.settings, server.store, first.submission_id, "jane")
    FileStore.from_settings(server.settings).put(b"bytes of a lost confirm", orphan)

    second = _ready(server, tmp_path, seed=12)
    assert orphan not in second.files
    answer = requests.post(f"{url}/upload/submissions/{second.submission_id}/confirm",
                           json={}, timeout=60, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
