"""Malformed input is a 4xx with a one-line reason - never a 500, a traceback or a server path.

Over HTTP against the real server for the two findings (an integer beyond SQLite's range,
deeply nested JSON in upload fields); through the app's test client for the fuzz of every
GET route of the url_map (with ``TESTING`` on, an uncaught exception fails the test itself
instead of hiding behind a 500 page); and the last-resort 500 page, which names no path.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote

import pytest
import requests
from fixtures.pages import jwst_app
from fixtures.rpc import running_server
from fixtures.submissions import seed_root

from crds_events.accounts import users
from crds_events.config import load_settings
from crds_events.store import SQLiteEventStore
from crds_events.store.root import init_root
from crds_events.web import create_app

PASSWORD = "correct horse"
HUGE = "9223372036854775808"  # 2**63: one past SQLite's largest integer
NESTED = "[" * 100_000 + "]" * 100_000

HOSTILE = [
    HUGE, "99999999999999999999999999", "-1", "-9223372036854775809", "0",
    "../../../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "a\x00b", "x" * 10_240,
    "[" * 5_000, '{"a":' * 3_000, "1e309", "nan", "%", "<script>", "\\..\\..\\",
]
QUERY_NAMES = [
    "action", "actor", "after", "as_of", "before", "calver", "context", "counts", "files",
    "header", "instrument", "kind", "limit", "max", "name", "new", "next", "old", "position",
    "reason", "since", "state", "stream", "type", "until", "what", "q",
]


@pytest.fixture
def served(tmp_path):
    settings = load_settings(tmp_path / "root", {"observatory": "jwst"}, environ={})
    init_root(settings)
    seed_root(settings, tmp_path / "context", ["nircam"])
    with SQLiteEventStore(settings.db_path) as store:
        users.add_user(store, "jane", "jane@example.org", "submitter", PASSWORD)
        token = users.issue_token(store, "jane")
    with running_server(settings) as url:
        yield url, token, settings


def _clean(response: requests.Response | object, root: str) -> None:
    text = response.text if hasattr(response, "text") else ""
    assert root not in text and "Traceback" not in text


def test_an_event_position_beyond_sqlite_is_400_not_500(served):
    url, _, settings = served
    for path in (f"/events/{HUGE}.json", f"/events/{HUGE}", f"/asof/{HUGE}.json",
                 f"/events.json?before={HUGE}", f"/events.json?limit={HUGE}",
                 f"/streams/user:jane.json?before={HUGE}"):
        response = requests.get(url + path, timeout=30)
        assert response.status_code == 400, (path, response.status_code, response.text[:200])
        assert HUGE[:15] in response.text or "before" in response.text or "limit" in response.text
        _clean(response, str(settings.root))
    # the largest position SQLite holds is a plain "no such event"
    assert requests.get(f"{url}/events/{2**63 - 1}.json", timeout=30).status_code == 404


def test_deeply_nested_upload_fields_are_400_and_drop_nothing(served):
    url, token, settings = served
    auth = {"Authorization": f"Bearer {token}"}
    for fields, reason in ((NESTED, "nested more than"), ('{"a":' * 50 + "1" + "}" * 50,
                                                          "nested more than"),
                           ("x" * 300_000, "bytes, more than"), ("{not json", "not JSON")):
        response = requests.post(f"{url}/upload/submit", timeout=60, headers=auth,
                                 data={"fields": fields},
                                 files=[("file", ("flat.fits", b"SIMPLE"))])
        assert response.status_code == 400, response.text[:200]
        error = response.json()["error"]
        assert error.startswith("fields: ") and reason in error and "\n" not in error
        _clean(response, str(settings.root))
    cancel = requests.post(f"{url}/upload/submissions/x/cancel", timeout=30,
                           headers={**auth, "Content-Type": "application/json"}, data=NESTED)
    assert cancel.status_code == 400 and "body: nested" in cancel.json()["error"]
    ingest = settings.ingest / "jane"
    assert not ingest.exists() or not any(ingest.iterdir())


def test_a_deeply_nested_rpc_request_is_a_json_rpc_error(served):
    url, _, _ = served
    body = '{"method": "get_default_context", "params": ' + NESTED + ', "id": 1}'
    reply = requests.post(f"{url}/json/", data=body, timeout=30)
    assert reply.status_code == 200
    error = reply.json()["error"]["message"]
    assert "malformed JSON-RPC request" in error and "nested" in error


# --- the fuzz -------------------------------------------------------------------------------------


def _fill(rule, value: str) -> str:
    """The rule's path with every argument set to ``value`` (quoted as a client would)."""
    def one(match: re.Match) -> str:
        converter = match.group(1) or ""
        return quote(value, safe="/" if converter == "path" else "")
    return re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?\w+>", one, rule.rule)


def _plain(rule) -> str:
    def one(match: re.Match) -> str:
        return "1" if match.group(1) == "int" else "jwst_0001.pmap"
    return re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?\w+>", one, rule.rule)


def _get(client, path: str, root: str, **query: str):
    response = client.get(path, query_string=query, buffered=False)
    try:
        assert response.status_code < 500, (path, query and list(query), response.status_code)
        if response.mimetype != "text/event-stream":  # a stream runs until its deadline
            body = response.get_data(as_text=True)
            assert root not in body, (path, list(query))
            assert "Traceback (most recent call last)" not in body, path
    finally:
        response.close()
    return response


def test_every_get_route_survives_hostile_paths_and_queries(tmp_path):
    app, settings = jwst_app(tmp_path)
    root = str(settings.root)
    with SQLiteEventStore(settings.db_path) as store:
        if users.get_user(store, "fuzz") is None:
            users.add_user(store, "fuzz", "fuzz@example.org", "admin", PASSWORD)
    anonymous = app.test_client()
    admin = app.test_client()
    login = admin.post("/login", data={"name": "fuzz", "password": PASSWORD, "csrf_token":
                                       re.search(r'name="csrf_token" value="([^"]+)"',
                                                 admin.get("/login").text).group(1)})
    assert login.status_code == 302
    rules = [r for r in app.url_map.iter_rules() if "GET" in r.methods]
    assert len(rules) > 40  # the app's routes, not an empty map
    checked = 0
    for rule in rules:
        for client in (anonymous, admin):
            if rule.arguments:
                for value in HOSTILE:
                    _get(client, _fill(rule, value), root)
                    checked += 1
            plain = _plain(rule)
            for i, name in enumerate(QUERY_NAMES):
                if rule.endpoint == "submit.events" and name == "max":
                    continue  # a stream's own length, bounded by the server; checked below
                # every name gets the out-of-range numbers (as admin, who reaches every
                # branch) and the other values in turn (CPU is shared: not all x all)
                values = ((HUGE, "-1", HOSTILE[i % len(HOSTILE)]) if client is admin
                          else (HOSTILE[(i + 7) % len(HOSTILE)],))
                for value in values:
                    _get(client, plain, root, **{name: value})
                    checked += 1
    assert checked > 5000


def test_hostile_stream_cursors_are_refused(tmp_path):
    app, settings = jwst_app(tmp_path)
    with SQLiteEventStore(settings.db_path) as store:
        users.add_user(store, "fuzz", "fuzz@example.org", "admin", PASSWORD)
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    client.post("/login", data={"name": "fuzz", "password": PASSWORD, "csrf_token": token})
    for after in (HUGE, "x" * 10_240, "1" * 30):
        response = client.get("/submissions/s-1/events", query_string={"after": after, "max": "0"})
        assert response.status_code == 400 and "not an event position" in response.text
    # a negative cursor means "from the start", as it always did
    assert client.get("/submissions/s-1/events", query_string={"after": "-5", "max": "0"}
                      ).status_code == 200
    for seconds in ("nan", "inf", "-inf", "x"):
        response = client.get("/submissions/s-1/events", query_string={"max": seconds},
                              buffered=False)
        try:
            assert response.status_code == 400, seconds
        finally:
            response.close()


# --- the last resort -------------------------------------------------------------------------------


def test_an_uncaught_exception_is_a_500_without_traceback_or_path(tmp_path, caplog):
    app, settings = jwst_app(tmp_path)
    # a fresh app that does not propagate exceptions, as in production
    app = create_app(settings, config={"TESTING": False, "PROPAGATE_EXCEPTIONS": False})
    secret_path = str(settings.db_path)

    def broken():
        raise OSError(f"cannot open {secret_path}")

    app.add_url_rule("/broken", view_func=broken)
    app.add_url_rule("/broken.json", endpoint="broken_json", view_func=broken)
    with caplog.at_level(logging.ERROR):
        page = app.test_client().get("/broken")
        data = app.test_client().get("/broken.json")
    assert page.status_code == 500 and data.status_code == 500
    for response in (page, data):
        body = response.get_data(as_text=True)
        assert "internal error" in body and str(settings.root) not in body
        assert "Traceback" not in body and "OSError" not in body
    assert data.get_json()["status"] == 500
    assert secret_path in caplog.text  # the operator has the details
    app.extensions["crds_events"].close()
