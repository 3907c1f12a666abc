"""No page gives away a secret, and personal data only to those allowed it (issue 14.1).

A log holding one event of EVERY registered type (secret and personal values marked, see
`fixtures.visibility`) is served by a real server on 127.0.0.1; every GET route of the app's
url_map is fetched with its path parameters filled from the log (every event position,
stream, submission id, file and context name), once anonymously and once as a logged-in
operator. A new event type or a new page is covered without touching this file.
"""

from __future__ import annotations

import http.cookiejar
import itertools
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from fixtures.visibility import (
    OPERATOR,
    PASSWORD,
    PERSONAL_MARK,
    SECRET_MARK,
    every_event_app,
    instance,
    personal_value,
)

from crds_events import events as ev
from crds_events.events.visibility import HIDDEN
from crds_events.server.wsgi import WebServer
from crds_events.store.eventlog import SQLiteEventStore

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# the stylesheet and scripts: no data; the crds client's GET /logout/ ends the crawler's
# session (as the client needs it to), so the operator's crawl would go on anonymous
SKIP_ENDPOINTS = {"static", "crds_login.logout"}
PER_RULE = 400  # URLs per route at most (products of several parameters)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a redirect is an answer of its own
        return None


def _opener() -> urllib.request.OpenerDirector:
    jar = http.cookiejar.CookieJar()
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect)


def _fetch(opener, url: str, data: bytes | None = None) -> tuple[int, str]:
    try:
        with opener.open(url, data=data, timeout=60) as reply:
            return reply.status, reply.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def _login(opener, base: str) -> None:
    status, page = _fetch(opener, base + "/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert status == 200 and token, page[:500]
    body = urllib.parse.urlencode({"name": OPERATOR, "password": PASSWORD,
                                   "csrf_token": token.group(1)}).encode()
    status, page = _fetch(opener, base + "/login", body)
    assert status == 302, (status, page[:500])


def _pools(settings) -> tuple[dict[str, list[str]], list[str]]:
    """Values for path parameters, by parameter name, and the generic pool for the rest."""
    with SQLiteEventStore(settings.db_path) as store:
        conn = store.db.conn
        head = conn.execute("SELECT max(position) FROM events").fetchone()[0]
        streams = [r[0] for r in conn.execute("SELECT DISTINCT stream FROM events")]
        names = [r[0] for r in conn.execute("SELECT name FROM files ORDER BY name")]
    ids = sorted({s.split(":", 1)[1] for s in streams if ":" in s})
    pmaps = sorted(n for n in names if n.endswith(".pmap"))
    generic = sorted({*ids, *names})
    pools = {
        "position": [str(p) for p in range(head + 2)],
        "stream": [*streams, *(s + ".json" for s in streams)],
        "submission_id": sorted(s.split(":", 1)[1] for s in streams
                                if s.startswith("submission:")),
        "name": [*generic, *(n + ".json" for n in generic)],
        "observatory": ["jwst"],
        "old": pmaps, "new": pmaps,
        "decoration": [""],
    }
    return pools, generic


def _urls(app, settings) -> list[str]:
    """Every GET route of the app, its parameters filled from the log."""
    pools, generic = _pools(settings)
    urls: set[str] = set()
    for rule in app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()) or rule.endpoint in SKIP_ENDPOINTS:
            continue
        arguments = sorted(rule.arguments)
        choices = [pools.get(arg, generic) for arg in arguments]
        for values in itertools.islice(itertools.product(*choices), PER_RULE):
            built = rule.build(dict(zip(arguments, values, strict=True)), append_unknown=False)
            if built is None:
                continue
            path = built[1]
            urls.add(path)
            if not arguments:
                urls.add(path + "?limit=500")  # past the first page of every list
    # a stream of server-sent events ends at its submission's outcome, or after max seconds
    return sorted(u if "?" in u else u + "?max=1" for u in urls)


def _crawl(base: str, opener, urls: list[str]) -> dict[str, tuple[int, str]]:
    with ThreadPoolExecutor(4) as pool:
        answers = pool.map(lambda u: _fetch(opener, base + u), urls)
        return dict(zip(urls, answers, strict=True))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    app, settings, seeded = every_event_app(tmp_path_factory.mktemp("visibility"))
    with SQLiteEventStore(settings.db_path) as store:
        hashes = [r.data[f] for r in store.read_all()
                  for f in ev.event_class(r.type).secret_fields if r.data.get(f)]
    urls = _urls(app, settings)
    server = WebServer(app, "127.0.0.1", 0)
    server.start()
    try:
        base = server.url
        anonymous = _crawl(base, _opener(), urls)
        operator_opener = _opener()
        _login(operator_opener, base)
        operator = _crawl(base, operator_opener, urls)
    finally:
        server.stop()
    return {"urls": urls, "anonymous": anonymous, "operator": operator, "seeded": seeded,
            "hashes": hashes}


def _secret_names() -> set[str]:
    return {f for cls in ev.event_types().values() for f in cls.secret_fields}


def _leaks_secret(body: str, hashes: list[str]) -> list[str]:
    found = [name for name in _secret_names() if name in body]
    found += [text for text in ("scrypt$", SECRET_MARK) if text in body]
    found += [f"hash {h[:12]}..." for h in hashes if h in body]
    return found


def test_the_crawl_covers_every_event_type_and_route(site):
    seeded, urls = site["seeded"], site["urls"]
    assert set(seeded) == {n for n in ev.event_types() if not n.startswith("_")}
    for position in seeded.values():
        assert f"/events/{position}.json?max=1" in urls
        assert f"/asof/{position}?max=1" in urls
    assert "/events.json?limit=500" in urls and len(urls) > 300
    assert any(u.startswith("/streams/user:") for u in urls)
    assert any(u.startswith("/submissions/vis-1") for u in urls)
    # the real hashes are known, so their absence below means something
    assert any(h.startswith("scrypt$") and SECRET_MARK not in h for h in site["hashes"])


def test_no_response_to_anyone_contains_a_secret(site):
    for viewer in ("anonymous", "operator"):
        for url, (status, body) in site[viewer].items():
            assert status < 500, (viewer, url, status, body[:300])
            assert not _leaks_secret(body, site["hashes"]), (viewer, url,
                                                              _leaks_secret(body, site["hashes"]))


def test_no_response_to_an_anonymous_client_contains_personal_data(site):
    for url, (_status, body) in site["anonymous"].items():
        assert PERSONAL_MARK not in body, url
        address = EMAIL.search(body)
        assert address is None, (url, address and address.group())


def test_an_anonymous_client_still_sees_the_public_history(site):
    answers = site["anonymous"]
    for name, position in site["seeded"].items():
        status, body = answers[f"/events/{position}.json?max=1"]
        assert status == 200, (name, body[:300])
        shown = json.loads(body)["event"]["data"]
        cls = ev.event_class(name)
        truth = json.loads(json.dumps(instance(cls).to_data()))
        assert set(shown) == set(truth) - set(cls.secret_fields), name
        for field, value in truth.items():
            if field in cls.personal_fields:
                assert shown[field] in (HIDDEN, [], {}), (name, field)
            elif field not in cls.secret_fields:
                assert shown[field] == value, (name, field)
    status, body = answers["/events.json?limit=500"]
    assert status == 200 and len(json.loads(body)["events"]) >= len(site["seeded"])
    # login-only pages send an anonymous visitor to log in, showing nothing
    assert answers["/operate/emails.json?max=1"][0] == 302
    assert answers["/submissions/vis-1.json?max=1"][0] == 302


def test_a_logged_in_operator_sees_personal_data_where_pages_show_it(site):
    answers = site["operator"]
    for name, position in site["seeded"].items():
        cls = ev.event_class(name)
        status, body = answers[f"/events/{position}.json?max=1"]
        assert status == 200
        for field in cls.personal_fields:
            assert json.dumps(personal_value(name, field))[1:-1] in body, (name, field)
        stream = json.loads(body)["event"]["stream"]
        status, page = answers[f"/streams/{stream}?max=1"]
        assert status == 200 and "scrypt$" not in page
    marks = {
        "/activity.json?limit=500": personal_value("SubmissionStarted", "description"),
        "/submissions.json?limit=500": personal_value("SubmissionStarted", "deliverer"),
        "/operate/emails.json?limit=500": personal_value("EmailQueued", "subject"),
        "/events.json?limit=500": "ada@example.org",
    }
    for url, mark in marks.items():
        status, body = answers[url]
        assert status == 200 and mark in body, url
