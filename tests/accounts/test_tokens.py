"""API tokens expire and are revoked one by one; session generations; the login back-off
window; the `user token`, `user token revoke`, `user tokens` and `user password` commands.

Real SQLite logs in temp directories; the back-off is driven by an injected clock.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from crds_events import events as ev
from crds_events.accounts import users
from crds_events.accounts.backoff import LoginBackoff
from crds_events.cli import cli
from crds_events.config import load_settings
from crds_events.store import SQLiteEventStore
from crds_events.store.folds import USERS, replay
from crds_events.store.root import init_root

PASSWORD = "correct horse battery"


@pytest.fixture
def store(tmp_path):
    with SQLiteEventStore(tmp_path / "log.sqlite") as store:
        users.add_user(store, "jane", "jane@example.org", "submitter", PASSWORD)
        yield store


def _id(token: str) -> str:
    return token.split("_")[1]


def test_tokens_expire_after_their_days(store):
    now = datetime(2030, 1, 1, tzinfo=UTC)
    token = users.issue_token(store, "jane", days=90, now=now)
    issued = store.read_stream(ev.user_stream("jane"))[-1].event
    assert issued.expires_at == "2030-04-01T00:00:00Z"
    assert users.check_token(store, token, now=now + timedelta(days=89)).name == "jane"
    with pytest.raises(users.TokenRefused, match=r"expired on 2030-04-01"):
        users.check_token(store, token, now=now + timedelta(days=90))
    # the default is 90 days from now
    fresh = users.issue_token(store, "jane")
    assert users.user_for_token(store, fresh).name == "jane"
    with pytest.raises(users.TokenRefused, match="expired"):
        users.check_token(store, fresh, now=datetime.now(UTC) + timedelta(days=91))


def test_bad_days_are_refused_and_record_nothing(store):
    head = store.head()
    for days in (0, -1, users.MAX_TOKEN_DAYS + 1, True, "30"):
        with pytest.raises(users.UserError, match="days"):
            users.issue_token(store, "jane", days=days)  # type: ignore[arg-type]
    assert store.head() == head


def test_a_token_without_expiry_from_before_never_expires(store):
    # what the log holds for a token issued before expiry existed: no expires_at at all
    token = "ce_0ld0ld00_" + "x" * 43
    store.record(ev.UserTokenIssued(username="jane", token_id="0ld0ld00",
                                    token_hash=users._token_hash(token)))
    far = datetime.now(UTC) + timedelta(days=36500)
    assert users.check_token(store, token, now=far).name == "jane"
    assert users.list_tokens(store, "jane")[0].expires_at == ""


def test_revoke_one_token_leaves_the_others(store):
    first, second = users.issue_token(store, "jane"), users.issue_token(store, "jane")
    assert users.revoke_token(store, "jane", _id(first), "lost", actor="ada")
    with pytest.raises(users.TokenRefused, match=f"token {_id(first)} was revoked"):
        users.check_token(store, first)
    assert users.user_for_token(store, first) is None
    assert users.check_token(store, second).name == "jane"
    head = store.head()
    assert not users.revoke_token(store, "jane", _id(first))  # already: nothing recorded
    assert store.head() == head
    with pytest.raises(users.UserError, match="no such token"):
        users.revoke_token(store, "jane", "deadbeef")
    users.add_user(store, "sam", "sam@example.org")
    with pytest.raises(users.UserError, match="no such token"):  # not sam's to revoke
        users.revoke_token(store, "sam", _id(second))
    with pytest.raises(users.UnknownUserError):
        users.revoke_token(store, "nobody", _id(second))
    assert store.head() == head + 1
    states = {t.token_id: t.state() for t in users.list_tokens(store, "jane")}
    assert states == {_id(first): "revoked", _id(second): "active"}


def test_two_revokes_at_once_record_one_event(store, tmp_path):
    token = users.issue_token(store, "jane")
    results: list[bool] = []
    barrier = threading.Barrier(2)
    path = tmp_path / "log.sqlite"

    def revoke() -> None:
        with SQLiteEventStore(path) as own:
            barrier.wait()
            results.append(users.revoke_token(own, "jane", _id(token)))

    threads = [threading.Thread(target=revoke) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, True]
    revoked = [r for r in store.read_stream(ev.user_stream("jane"))
               if r.type == ev.UserTokenRevoked.type]
    assert len(revoked) == 1


def test_garbage_tokens_are_refused_with_a_reason(store):
    users.issue_token(store, "jane")
    for garbage in ("", "ce_", "nope", "ce_" + "x" * 10_000, None, 42):
        with pytest.raises(users.TokenRefused, match="invalid token"):
            users.check_token(store, garbage)  # type: ignore[arg-type]


def test_a_disabled_accounts_tokens_are_refused(store):
    token = users.issue_token(store, "jane")
    users.disable_user(store, "jane", "left")
    with pytest.raises(users.TokenRefused, match="disabled"):
        users.check_token(store, token)


def test_logout_and_password_change_bump_the_session_generation(store):
    assert users.get_user(store, "jane").session_generation == 0
    users.revoke_sessions(store, "jane")
    assert users.get_user(store, "jane").session_generation == 1
    users.set_password(store, "jane", "another long password")
    assert users.get_user(store, "jane").session_generation == 2
    # the projection's fold agrees with the stream fold
    row = replay(USERS, store.read_all(types=USERS.consumes))[("jane",)]
    assert row["session_generation"] == 2
    with pytest.raises(users.UnknownUserError):
        users.revoke_sessions(store, "nobody")


# --- the back-off window --------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_holds_after_ten_failures_until_the_window_passes():
    clock = Clock()
    backoff = LoginBackoff(clock=clock)
    keys = ("account:jane", "address:10.0.0.1")
    for _ in range(9):
        assert backoff.retry_after(keys) == 0
        backoff.failed(keys)
        clock.now += 1
    assert backoff.retry_after(keys) == 0
    backoff.failed(keys)  # the tenth, at t+9
    assert backoff.retry_after(keys) == 51  # the first failure (t) leaves at t+60
    assert backoff.retry_after(["account:jane"]) == 51
    assert backoff.retry_after(["account:sam", "address:10.0.0.2"]) == 0
    clock.now += 51
    assert backoff.retry_after(keys) == 0


def test_backoff_success_clears_the_account_not_the_address():
    clock = Clock()
    backoff = LoginBackoff(clock=clock)
    for _ in range(10):
        backoff.failed(["account:jane", "address:a"])
    backoff.succeeded("account:jane")
    assert backoff.retry_after(["account:jane"]) == 0
    assert backoff.retry_after(["address:a"]) > 0


def test_backoff_memory_is_bounded():
    backoff = LoginBackoff(clock=Clock(), max_keys=100)
    for i in range(1000):
        backoff.failed([f"account:spray{i}"])
    assert len(backoff._failures) == 100
    assert backoff.retry_after(["account:spray999"]) == 0  # one failure: not held


# --- CLI -------------------------------------------------------------------------------------------


def test_cli_token_days_list_and_revoke(tmp_path, monkeypatch):
    monkeypatch.delenv("CRDS_EVENTS_USER", raising=False)
    settings = load_settings(tmp_path / "root", environ={})
    init_root(settings)
    with SQLiteEventStore(settings.db_path) as store:
        users.add_user(store, "jane", "jane@example.org", "submitter", PASSWORD)
    base = ["--root", str(settings.root)]
    runner = CliRunner()
    issued = runner.invoke(cli, ["user", "token", "jane", "--days", "7", *base])
    assert issued.exit_code == 0, issued.output
    token = issued.output.strip()
    default = runner.invoke(cli, ["user", "token", "issue", "jane", *base])
    assert default.exit_code == 0, default.output
    bad = runner.invoke(cli, ["user", "token", "jane", "--days", "0", *base])
    assert bad.exit_code == 2 and "--days" in bad.output

    listed = runner.invoke(cli, ["user", "tokens", "jane", *base])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert len(lines) == 2 and lines[0].split()[0] == _id(token)
    assert all(line.split()[-1] == "active" for line in lines)
    in_a_week = (datetime.now(UTC) + timedelta(days=7)).strftime("%Y-%m-%d")
    assert f"expires {in_a_week}" in lines[0]
    assert token not in listed.output and users._token_hash(token) not in listed.output

    revoked = runner.invoke(cli, ["user", "token", "revoke", "jane", _id(token),
                                  "--reason", "lost laptop", "--user", "ada", *base])
    assert revoked.exit_code == 0 and f"revoked token {_id(token)}" in revoked.output
    again = runner.invoke(cli, ["user", "token", "revoke", "jane", _id(token), *base])
    assert again.exit_code == 0 and "already revoked" in again.output
    unknown = runner.invoke(cli, ["user", "token", "revoke", "jane", "deadbeef", *base])
    assert unknown.exit_code == 1 and "no such token" in unknown.output
    listed = runner.invoke(cli, ["user", "tokens", "jane", *base])
    assert listed.output.splitlines()[0].split()[-1] == "revoked"
    with SQLiteEventStore(settings.db_path) as store:
        assert users.user_for_token(store, token) is None
        event = store.read_stream(ev.user_stream("jane"))[-1]
        assert event.type == ev.UserTokenRevoked.type
        assert (event.event.reason, event.meta.get("actor")) == ("lost laptop", "ada")

    nobody = runner.invoke(cli, ["user", "tokens", "nobody", *base])
    assert nobody.exit_code == 1 and "no such user" in nobody.output


def test_cli_password_change(tmp_path, monkeypatch):
    monkeypatch.delenv("CRDS_EVENTS_USER", raising=False)
    settings = load_settings(tmp_path / "root", environ={})
    init_root(settings)
    with SQLiteEventStore(settings.db_path) as store:
        users.add_user(store, "jane", "jane@example.org", "submitter", PASSWORD)
    base = ["--root", str(settings.root)]
    result = CliRunner().invoke(cli, ["user", "password", "jane", *base],
                                input="a fresh password\na fresh password\n")
    assert result.exit_code == 0, result.output
    short = CliRunner().invoke(cli, ["user", "password", "jane", *base], input="x\nx\n")
    assert short.exit_code == 1 and "password" in short.output
    with SQLiteEventStore(settings.db_path) as store:
        assert users.authenticate(store, "jane", "a fresh password") is not None
        assert users.authenticate(store, "jane", PASSWORD) is None
        assert users.get_user(store, "jane").session_generation == 1
