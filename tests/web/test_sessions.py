"""Sessions end at logout and at a password change, logins back off, API tokens expire and
can be revoked - over HTTP against the real server (waitress), with the real log."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import requests
from fixtures.rpc import running_server
from fixtures.submissions import seed_root

from crds_events import events as ev
from crds_events.accounts import users
from crds_events.config import load_settings
from crds_events.contexts import pointers as contexts
from crds_events.store import SQLiteEventStore
from crds_events.store.root import init_root

PASSWORD = "correct horse"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
COOKIE = "crds_events_session"


@pytest.fixture
def site(tmp_path):
    settings = load_settings(tmp_path / "root", {"observatory": "jwst"}, environ={})
    init_root(settings)
    pmap = seed_root(settings, tmp_path / "context", ["nircam"])
    with SQLiteEventStore(settings.db_path) as store:
        users.add_user(store, "olga", "olga@example.org", "operator", PASSWORD)
        users.add_user(store, "jane", "jane@example.org", "submitter", PASSWORD)
    with running_server(settings) as url:
        store = SQLiteEventStore(settings.db_path)
        try:
            yield url, store, pmap, settings
        finally:
            store.close()


def csrf(session: requests.Session, url: str, path: str = "/login") -> str:
    match = _TOKEN.search(session.get(url + path, timeout=30).text)
    assert match, f"no CSRF field on {path}"
    return match.group(1)


def login(url: str, name: str, password: str = PASSWORD,
          session: requests.Session | None = None) -> requests.Response:
    session = session or requests.Session()
    return session.post(f"{url}/login", timeout=30, allow_redirects=False,
                        data={"name": name, "password": password,
                              "csrf_token": csrf(session, url)})


def logged_in(url: str, name: str) -> requests.Session:
    session = requests.Session()
    response = login(url, name, session=session)
    assert response.status_code == 302, response.text
    return session


def set_versions(session: requests.Session, url: str, pmap: str, token: str,
                 reason: str = "replay test") -> requests.Response:
    return session.post(f"{url}/operate/context", timeout=30, allow_redirects=False,
                        data={"kind": "versions", "context": pmap, "reason": reason,
                              "csrf_token": token})


def replay(url: str, cookie: str) -> requests.Session:
    """A new client carrying only a saved cookie (what an attacker who copied it has)."""
    session = requests.Session()
    session.cookies.set(COOKIE, cookie)
    return session


# --- sessions -----------------------------------------------------------------------------------


def test_a_cookie_replayed_after_logout_is_anonymous_and_cannot_set_a_context(site):
    url, store, pmap, _ = site
    olga = logged_in(url, "olga")
    token = csrf(olga, url, "/operate/context")
    saved = olga.cookies.get(COOKIE)
    # while logged in, the saved cookie works from anywhere (the control)
    assert replay(url, saved).get(f"{url}/submit", timeout=30,
                                  allow_redirects=False).status_code == 200

    out = olga.post(f"{url}/logout", timeout=30, allow_redirects=False,
                    data={"csrf_token": token})
    assert out.status_code == 302
    revoked = [r for r in store.read_stream(ev.user_stream("olga"))
               if r.type == ev.UserSessionsRevoked.type]
    assert [(r.event.reason, r.meta.get("actor")) for r in revoked] == [("logout", "olga")]

    attacker = replay(url, saved)
    page = attacker.get(f"{url}/submit", timeout=30, allow_redirects=False)
    assert page.status_code == 302 and "/login" in page.headers["Location"]
    home = attacker.get(f"{url}/", timeout=30)
    assert home.status_code == 200 and "olga" not in home.text  # anonymous on pages
    head = store.head()
    refused = set_versions(replay(url, saved), url, pmap, token)
    assert refused.status_code == 401 and "session has ended" in refused.text
    assert store.head() == head and contexts.get_context(store, "versions") is None

    # logging in again works, with a new cookie; the old one stays dead
    again = logged_in(url, "olga")
    assert set_versions(again, url, pmap, csrf(again, url, "/operate/context")
                        ).status_code == 302
    assert contexts.get_context(store, "versions") == pmap
    assert replay(url, saved).get(f"{url}/submit", timeout=30,
                                  allow_redirects=False).status_code == 302


def test_logout_ends_the_users_other_sessions_too_and_no_one_elses(site):
    url, _, _, _ = site
    laptop, phone, jane = logged_in(url, "olga"), logged_in(url, "olga"), logged_in(url, "jane")
    laptop.post(f"{url}/logout", timeout=30, data={"csrf_token": csrf(laptop, url, "/submit")})
    assert phone.get(f"{url}/submit", timeout=30, allow_redirects=False).status_code == 302
    assert jane.get(f"{url}/submit", timeout=30, allow_redirects=False).status_code == 200


def test_an_anonymous_logout_records_nothing(site):
    url, store, _, _ = site
    session = requests.Session()
    head = store.head()
    response = session.post(f"{url}/logout", timeout=30, allow_redirects=False,
                            data={"csrf_token": csrf(session, url)})
    assert response.status_code == 302 and store.head() == head


def test_two_logouts_of_one_user_at_once_both_succeed(site):
    url, store, _, _ = site
    sessions = [logged_in(url, "olga") for _ in range(2)]
    tokens = [csrf(s, url, "/submit") for s in sessions]

    def out(i: int) -> int:
        return sessions[i].post(f"{url}/logout", timeout=30, allow_redirects=False,
                                data={"csrf_token": tokens[i]}).status_code

    with ThreadPoolExecutor(2) as pool:
        codes = list(pool.map(out, range(2)))
    # the second may already find its session ended (401): never a 500, never both lost
    assert codes[0] in (302, 401) and codes[1] in (302, 401) and 302 in codes
    assert users.get_user(store, "olga").session_generation >= 1


def test_a_password_change_ends_the_old_sessions(site):
    url, store, pmap, _ = site
    olga = logged_in(url, "olga")
    token = csrf(olga, url, "/operate/context")
    saved = olga.cookies.get(COOKIE)
    users.set_password(store, "olga", "a brand new password", actor="ada")
    assert olga.get(f"{url}/submit", timeout=30, allow_redirects=False).status_code == 302
    head = store.head()
    assert set_versions(replay(url, saved), url, pmap, token).status_code == 401
    assert store.head() == head
    assert login(url, "olga").status_code == 401  # the old password is gone too
    assert login(url, "olga", "a brand new password").status_code == 302


# --- login back-off -----------------------------------------------------------------------------


def test_the_eleventh_wrong_password_within_a_minute_is_refused_even_if_right(site):
    url, store, _, _ = site
    session = requests.Session()
    for _ in range(10):
        assert login(url, "olga", "wrong password", session).status_code == 401
    refused = login(url, "olga", PASSWORD, session)
    assert refused.status_code == 429
    assert re.search(r"try again in \d+ s", refused.text)
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert login(url, "olga").status_code == 429  # a new session: the account is held
    # every test client is 127.0.0.1, so the address (10 failures) holds jane's login too
    head = store.head()
    assert login(url, "jane").status_code == 429
    assert store.head() == head  # refusals record nothing


def test_unknown_names_back_off_like_known_ones(site):
    url, _, _, _ = site
    for _ in range(10):
        assert login(url, "nobody", "wrong password").status_code == 401
    assert login(url, "nobody", "wrong password").status_code == 429


def test_a_success_clears_the_accounts_failures(site):
    url, _, _, _ = site
    for _ in range(9):
        assert login(url, "olga", "wrong password").status_code == 401
    assert login(url, "olga").status_code == 302
    # the account counts from zero again; the address still has its nine failures
    assert login(url, "olga", "wrong password").status_code == 401
    assert login(url, "olga").status_code == 429  # the address: ten failures in the minute


# --- API tokens on the upload API ---------------------------------------------------------------


def _upload(url: str, token: str) -> requests.Response:
    # no fields: a token that authenticates gets the 400 for that, one that does not a 401
    return requests.post(f"{url}/upload/submit", timeout=30,
                         headers={"Authorization": f"Bearer {token}"},
                         files=[("file", ("flat.fits", b"x"))])


def test_revoked_and_expired_tokens_are_refused_by_the_upload_api(site):
    url, store, _, settings = site
    valid = users.issue_token(store, "jane")
    revoked = users.issue_token(store, "jane", days=30)
    expired = users.issue_token(store, "jane", days=1,
                                now=datetime.now(UTC) - timedelta(days=2))
    revoked_id = revoked.split("_")[1]
    assert users.revoke_token(store, "jane", revoked_id, "laptop stolen", actor="ada")

    accepted = _upload(url, valid)
    assert accepted.status_code == 400 and "fields" in accepted.json()["error"]
    gone = _upload(url, revoked)
    assert gone.status_code == 401
    assert gone.json()["error"] == f"token {revoked_id} was revoked on " \
                                   f"{datetime.now(UTC):%Y-%m-%d}"
    late = _upload(url, expired)
    assert late.status_code == 401 and "expired on" in late.json()["error"]
    assert "\n" not in late.json()["error"]
    assert not (settings.ingest / "jane").exists() or not any((settings.ingest / "jane").iterdir())


def test_a_token_issued_before_expiry_existed_keeps_working(site):
    url, store, _, _ = site
    old = users.issue_token(store, "jane", days=None)  # what every token was before
    issued = [r for r in store.read_stream(ev.user_stream("jane"))
              if r.type == ev.UserTokenIssued.type]
    assert issued[-1].event.expires_at == ""
    assert _upload(url, old).status_code == 400  # authenticated; only the fields are missing
