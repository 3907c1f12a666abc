"""Long-lived streams (server-sent events) never starve pages and JSON-RPC (issue 14, item 6).

Against a real server over HTTP: logged-in users open many `/submissions/<id>/events`
streams at once; at most ``stream_limit_per_user`` per user and ``stream_limit`` in all are
served (the rest get 429 with a one-line reason and Retry-After), and meanwhile an anonymous
``get_default_context`` and a page each answer within 1 s (the issue's acceptance line; the
server used to take 23.5 s). A stream the client closes frees its slot; SIGTERM stops
`crds-events serve` within 10 s with streams open.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from fixtures.rpc import make_root, running_server
from helpers import wait_for

from crds_events import events as ev
from crds_events.accounts import users
from crds_events.store import SQLiteEventStore

PASSWORD = "correct horse"
NAMES = ("jane", "sam", "olga", "ada")
ANSWER_BOUND = 1.0  # seconds: the acceptance line (the server took 23.5 s)
STOP_BOUND = 10.0
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def _root(tmp_path, **overrides):
    settings = make_root(tmp_path / "root", None, synthetic=3, work=tmp_path)
    if overrides:
        (settings.root / "crds-events.toml").write_text(
            'observatory = "hst"\n' + "".join(f"{k} = {json.dumps(v)}\n"
                                             for k, v in overrides.items()))
        from crds_events.config import load_settings

        settings = load_settings(settings.root, environ={})
    with SQLiteEventStore(settings.db_path) as store:
        for name in NAMES:
            users.add_user(store, name, f"{name}@example.org", "submitter", PASSWORD)
    return settings


def _login(url: str, name: str) -> requests.Session:
    session = requests.Session()
    token = _TOKEN.search(session.get(f"{url}/login", timeout=10).text).group(1)
    response = session.post(f"{url}/login", allow_redirects=False, timeout=10,
                            data={"name": name, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302, response.text[:300]
    return session


def _open(session: requests.Session, url: str, sid: str = "20250101T000000-00000000",
          **params) -> requests.Response:
    """One event stream of a submission nobody processes: it stays open (and says nothing
    but heartbeats) until its lifetime ends, the client closes it or the server stops."""
    return session.get(f"{url}/submissions/{sid}/events", params=params, stream=True,
                       timeout=30, allow_redirects=False)


def _default_context_seconds(url: str) -> float:
    began = time.monotonic()
    response = requests.post(f"{url}/json/", timeout=30, data=json.dumps(
        {"jsonrpc": "1.0", "method": "get_default_context", "params": ["hst"], "id": 1}))
    took = time.monotonic() - began
    assert response.status_code == 200 and response.json()["result"].endswith(".pmap"), \
        response.text[:300]
    return took


def _page_seconds(url: str) -> float:
    began = time.monotonic()
    response = requests.get(f"{url}/", timeout=30)
    took = time.monotonic() - began
    assert response.status_code == 200
    return took


def _refused(response: requests.Response) -> str:
    """The one-line reason of a stream refused for the budget (and check its form)."""
    assert response.status_code == 429, response.status_code
    assert int(response.headers["Retry-After"]) > 0
    reason = response.text.strip()
    assert "\n" not in reason and "too many open progress streams" in reason, reason
    return reason


def _close_all(responses) -> None:
    for response in responses:
        response.close()


@pytest.fixture
def server(tmp_path):
    settings = _root(tmp_path)
    with running_server(settings) as url:
        yield url


@pytest.mark.parametrize("count", [8, 20])
def test_one_users_streams_never_stall_rpc_or_pages(server, count):
    jane = _login(server, "jane")
    streams = [_open(jane, server) for _ in range(count)]
    try:
        accepted = [s for s in streams if s.status_code == 200]
        assert len(accepted) == 2  # the default per-user budget
        for response in streams:
            if response.status_code != 200:
                assert "per user" in _refused(response)
        assert all(s.headers["Content-Type"].startswith("text/event-stream") for s in accepted)
        assert _default_context_seconds(server) < ANSWER_BOUND
        assert _page_seconds(server) < ANSWER_BOUND
        # a stream still served is alive: its first line is the reconnect hint
        assert next(accepted[0].iter_lines(decode_unicode=True)).startswith("retry:")
    finally:
        _close_all(streams)


@pytest.mark.parametrize("per_user", [2, 5])
def test_many_users_opening_streams_at_once_share_one_total_budget(server, per_user):
    sessions = {name: _login(server, name) for name in NAMES}
    wanted = [name for name in NAMES for _ in range(per_user)]  # 8, then 20 at once
    with ThreadPoolExecutor(len(wanted)) as pool:
        opened = list(pool.map(lambda name: (name, _open(sessions[name], server)), wanted))
    try:
        accepted = [name for name, response in opened if response.status_code == 200]
        assert len(accepted) == 4, accepted  # the default total budget, exactly
        assert all(accepted.count(name) <= 2 for name in NAMES), accepted
        for _name, response in opened:
            if response.status_code != 200:
                _refused(response)
        for _ in range(3):
            assert _default_context_seconds(server) < ANSWER_BOUND
            assert _page_seconds(server) < ANSWER_BOUND
    finally:
        _close_all(response for _, response in opened)


def test_a_closed_or_ended_stream_frees_its_slot(server):
    jane, sam = _login(server, "jane"), _login(server, "sam")
    first, second = _open(jane, server), _open(jane, server)
    assert (first.status_code, second.status_code) == (200, 200)
    reason = _refused(_open(jane, server))
    assert "jane" in reason and "2" in reason
    # another user still has room while jane is at her limit
    other = _open(sam, server)
    assert other.status_code == 200
    first.close()  # the browser navigates away: the server notices and frees the slot

    def reopened():
        response = _open(jane, server)
        if response.status_code == 200:
            return response
        response.close()
        return None

    third = wait_for(reopened, timeout=10, interval=0.2)
    assert third, "a closed stream still holds its slot"
    # a stream that reaches the end of its lifetime frees its slot too
    assert _open(jane, server).status_code == 429
    third.close()
    short = wait_for(lambda: (r := _open(jane, server, max=0.5)).status_code == 200 and r,
                     timeout=10, interval=0.2)
    assert short and short.text.startswith("retry:")  # read to its end (0.5 s)
    again = _open(jane, server)
    assert again.status_code == 200
    _close_all([second, other, third, short, again])


def test_anonymous_streams_are_refused_and_take_no_slot(server):
    anonymous = [_open(requests.Session(), server) for _ in range(6)]
    # sent to the login page (never a stream, never a 429 that would count them)
    assert {r.status_code for r in anonymous} <= {302, 401}, [r.status_code for r in anonymous]
    jane = _login(server, "jane")
    mine = [_open(jane, server) for _ in range(2)]
    assert [r.status_code for r in mine] == [200, 200]
    _close_all([*anonymous, *mine])


def test_the_budget_comes_from_the_settings(tmp_path):
    settings = _root(tmp_path, stream_limit=1, stream_limit_per_user=1)
    with running_server(settings) as url:
        jane, sam = _login(url, "jane"), _login(url, "sam")
        mine = _open(jane, url)
        assert mine.status_code == 200
        reason = _refused(_open(sam, url))
        assert "1" in reason and "per user" not in reason  # the total, not sam's own
        assert _default_context_seconds(url) < ANSWER_BOUND
        mine.close()


@pytest.mark.slow
def test_sigterm_stops_serve_within_10_s_with_streams_open(tmp_path):
    settings = _root(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "crds_events", "serve", "--root", str(settings.root),
         "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    streams = []
    try:
        announced = process.stdout.readline()
        url = re.search(r"web app on (http://127\.0\.0\.1:\d+)", announced).group(1)
        for name in ("jane", "sam"):
            session = _login(url, name)
            streams += [_open(session, url) for _ in range(3)]
        assert sorted(r.status_code for r in streams) == [200, 200, 200, 200, 429, 429]
        assert _default_context_seconds(url) < ANSWER_BOUND
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=STOP_BOUND + 20)
        took = time.monotonic() - began
        assert took < STOP_BOUND, f"SIGTERM took {took:.1f} s with streams open"
        assert process.returncode == 0, err[-2000:]
        assert "Traceback" not in err
        # the open streams were ended by the server, not left hanging
        for response in streams:
            if response.status_code == 200:
                assert response.text.startswith("retry:")
    finally:
        _close_all(streams)
        if process.poll() is None:
            process.kill()
            process.communicate()


# --- the browser's monitor: refused, it tries again by itself --------------------------------

CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.slow
def test_the_browser_monitor_retries_a_refused_stream_and_then_follows_it(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="python package playwright not installed")
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    settings = _root(tmp_path, stream_limit=1)
    sid = "20250101T000000-0000beef"
    with running_server(settings) as url, sync_api.sync_playwright() as playwright:
        holder = _open(_login(url, "jane"), url)  # the server's only stream slot
        assert holder.status_code == 200
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_context().new_page()
            page.set_default_timeout(30_000)
            page.goto(f"{url}/login")
            page.fill("input[name=name]", "sam")
            page.fill("input[name=password]", PASSWORD)
            page.click("#login-form button[type=submit]")
            page.wait_for_url(lambda address: "/login" not in address)
            page.goto(f"{url}/submissions/{sid}/monitor")
            page.wait_for_function(
                "document.getElementById('monitor-note').textContent.includes('refused')")
            holder.close()  # the slot frees; the page's next try (5 s later) gets it
            page.wait_for_function(
                "!document.getElementById('monitor-note').textContent.includes('refused')")
            # the browser now holds the slot: nobody else gets one
            _refused(_open(_login(url, "ada"), url))
            with SQLiteEventStore(settings.db_path) as store:
                store.record(ev.SubmissionProgress(submission_id=sid, message="certified x"))
            page.wait_for_function(
                "document.getElementById('monitor').textContent.includes('certified x')")
        finally:
            browser.close()
