"""Users as events: validation, scrypt passwords, tokens, the users projection, roles, CLI."""

from __future__ import annotations

import base64
import hashlib
import threading

import pytest
from click.testing import CliRunner

from crds_events import events as ev
from crds_events.accounts.users import (
    USERS,
    UnknownUserError,
    User,
    UserError,
    UserExistsError,
    add_user,
    authenticate,
    can,
    disable_user,
    get_user,
    hash_password,
    issue_token,
    list_users,
    set_password,
    user_for_token,
    validate_email,
    validate_name,
    verify_password,
)
from crds_events.cli import cli
from crds_events.config import load_settings
from crds_events.handlers.runner import HandlerRunner
from crds_events.store import SQLiteEventStore
from crds_events.store.projections import TableProjection, read_table
from crds_events.store.root import init_root

PASSWORD = "correct horse battery"


@pytest.fixture
def store(tmp_path):
    with SQLiteEventStore(tmp_path / "events.db") as store:
        yield store


@pytest.mark.parametrize("name", ["alice", "bob_smith", "j.doe", "x-1", "0day", "a" * 64])
def test_good_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", [
    "", ".hidden", "..", "-dash", "Alice", "a/b", "../x", "a b", "é", "a" * 65, None, "a\n",
])
def test_bad_names(name):
    with pytest.raises(UserError, match="user name"):
        validate_name(name)


@pytest.mark.parametrize("email", ["a@example.org", "first.last+tag@mail.stsci.edu", "x@localhost"])
def test_good_emails(email):
    assert validate_email(email) == email


@pytest.mark.parametrize("email", ["", "no-at-sign", "a@", "@b.org", "a@b@c.org", "a b@c.org",
                                   "a@-bad.org", "a@b..org", "a@b.org\n", None])
def test_bad_emails(email):
    with pytest.raises(UserError, match="e-mail"):
        validate_email(email)


def test_password_hash_is_salted_scrypt_and_verifies_in_its_own_terms():
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first != second  # random salt
    scheme, n, r, p, salt, digest = first.split("$")
    assert scheme == "scrypt" and PASSWORD not in first
    # recompute independently from the stored parameters
    expected = hashlib.scrypt(PASSWORD.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                              p=int(p), dklen=len(base64.b64decode(digest)))
    assert base64.b64decode(digest) == expected
    assert verify_password(PASSWORD, first) and verify_password(PASSWORD, second)
    assert not verify_password(PASSWORD + "x", first)
    for broken in ("", "scrypt$1$2", "md5$x$y$z$a$b", first.replace("scrypt", "bcrypt"),
                   "scrypt$9999999999$8$1$AAAA$AAAA"):
        assert not verify_password(PASSWORD, broken)


def test_add_authenticate_disable(store):
    user = add_user(store, "alice", "alice@example.org", "operator", PASSWORD, actor="root")
    assert user == User("alice", "alice@example.org", "operator")
    assert get_user(store, "alice") == user
    assert authenticate(store, "alice", PASSWORD) == user
    assert authenticate(store, "alice", "wrong password") is None
    assert authenticate(store, "nobody", PASSWORD) is None
    assert authenticate(store, "../x", PASSWORD) is None
    # the log holds the hash, never the password
    [record] = store.read_stream(ev.user_stream("alice"))
    assert record.type == "UserAdded" and record.actor == "root"
    assert PASSWORD not in str(record.data) and record.data["password_hash"].startswith("scrypt$")
    assert disable_user(store, "alice", "left the team") is True
    assert disable_user(store, "alice") is False  # nothing more recorded
    assert store.stream_version(ev.user_stream("alice")) == 2
    assert authenticate(store, "alice", PASSWORD) is None
    assert get_user(store, "alice").disabled


def test_password_change(store):
    add_user(store, "bob", "bob@example.org", password=PASSWORD)
    set_password(store, "bob", "a brand new secret")
    assert authenticate(store, "bob", PASSWORD) is None
    assert authenticate(store, "bob", "a brand new secret").name == "bob"
    with pytest.raises(UserError, match="at least 8"):
        set_password(store, "bob", "short")
    with pytest.raises(UnknownUserError, match="no such user"):
        set_password(store, "carol", "long enough secret")


def test_duplicate_and_invalid_adds_record_nothing(store):
    add_user(store, "alice", "alice@example.org", password=PASSWORD)
    with pytest.raises(UserExistsError, match="already exists"):
        add_user(store, "alice", "other@example.org", password=PASSWORD)
    with pytest.raises(UserError, match="role"):
        add_user(store, "bob", "bob@example.org", "superuser", PASSWORD)
    with pytest.raises(UserError, match="password"):
        add_user(store, "bob", "bob@example.org", "submitter", "short")
    assert store.head() == 1


def test_racing_adds_of_one_name_one_wins(tmp_path):
    path = tmp_path / "events.db"
    SQLiteEventStore(path).close()
    barrier = threading.Barrier(4)
    outcomes = []

    def add(i: int) -> None:
        with SQLiteEventStore(path) as mine:
            barrier.wait()
            try:
                add_user(mine, "dup", f"dup{i}@example.org")
                outcomes.append("won")
            except UserExistsError:
                outcomes.append("lost")

    threads = [threading.Thread(target=add, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost", "lost", "lost", "won"]


def test_tokens(store):
    add_user(store, "alice", "alice@example.org", password=PASSWORD)
    add_user(store, "bob", "bob@example.org", password=PASSWORD)
    token_a, token_b = issue_token(store, "alice"), issue_token(store, "bob")
    assert token_a != token_b and token_a.startswith("ce_")
    assert user_for_token(store, token_a).name == "alice"
    assert user_for_token(store, token_b).name == "bob"
    assert user_for_token(store, token_a + "x") is None
    assert user_for_token(store, "") is None
    # only the hash is in the log
    issued = store.read_all(types=["UserTokenIssued"])
    assert all(token_a not in str(r.data) and token_b not in str(r.data) for r in issued)
    disable_user(store, "alice")
    assert user_for_token(store, token_a) is None
    with pytest.raises(UserError, match="disabled"):
        issue_token(store, "alice")


def test_users_projection_matches_library_view(store):
    add_user(store, "alice", "alice@example.org", "admin", PASSWORD)
    add_user(store, "bob", "bob@example.org")
    issue_token(store, "bob")
    disable_user(store, "bob")
    projection = TableProjection(USERS)
    HandlerRunner(store, [projection]).run_until_idle()
    table = read_table(store, projection)
    assert set(table) == {("alice",), ("bob",)}
    assert table[("bob",)]["disabled"] is True and len(table[("bob",)]["tokens"]) == 1
    assert table[("alice",)]["role"] == "admin" and table[("alice",)]["password_hash"]
    assert [User.from_row(row) for _, row in sorted(table.items())] == list_users(store)


# --- roles -------------------------------------------------------------------------------------

SUBMITTER = User("sam", "sam@x.org", "submitter")
OPERATOR = User("olga", "olga@x.org", "operator")
ADMIN = User("ada", "ada@x.org", "admin")


def test_role_policy():
    for user in (SUBMITTER, OPERATOR, ADMIN):
        assert can(user, "submit")
        assert can(user, "confirm", owner=user.name) and can(user, "cancel", owner=user.name)
        assert can(user, "force", owner="someone-else")  # any team member may force
    assert not can(SUBMITTER, "confirm", owner="olga")
    assert not can(OPERATOR, "cancel", owner="sam")
    assert can(ADMIN, "confirm", owner="sam") and can(ADMIN, "cancel", owner="sam")
    assert not can(SUBMITTER, "set_context")
    assert can(OPERATOR, "set_context") and can(ADMIN, "set_context")
    for action in ("mark_bad", "manage_users"):
        assert not can(SUBMITTER, action) and not can(OPERATOR, action) and can(ADMIN, action)
    assert can(ADMIN, "release_lock", owner="sam") and not can(OPERATOR, "release_lock", owner="sam")
    assert not can(ADMIN, "launch_rockets")  # unknown actions grant nothing
    assert not can(None, "submit")
    disabled = User("ada", "ada@x.org", "admin", disabled=True)
    assert not any(can(disabled, a) for a in ("submit", "force", "manage_users"))
    # rows from the projection work too
    assert can({"name": "olga", "email": "o@x.org", "role": "operator", "disabled": 0},
               "set_context")


# --- CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path):
    settings = load_settings(tmp_path / "root", environ={})
    init_root(settings)
    return settings


def test_cli_user_commands(root, tmp_path, monkeypatch):
    monkeypatch.delenv("CRDS_EVENTS_USER", raising=False)
    runner = CliRunner()
    password_file = tmp_path / "pw"
    password_file.write_text(PASSWORD + "\n")
    base = ["--root", str(root.root)]
    result = runner.invoke(cli, ["user", "add", "alice", "--email", "alice@example.org",
                                 "--role", "admin", "--password-file", str(password_file), *base])
    assert result.exit_code == 0, result.output
    # prompted password with confirmation
    result = runner.invoke(cli, ["user", "add", "bob", "--email", "bob@example.org", *base],
                           input="another secret\nanother secret\n")
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["user", "add", "carol", "--email", "carol@example.org", *base],
                           input="mismatch one\nmismatch two\n")
    assert result.exit_code != 0
    result = runner.invoke(cli, ["user", "add", ".evil", "--email", "e@x.org", *base])
    assert result.exit_code == 1 and "user name '.evil'" in result.output
    result = runner.invoke(cli, ["user", "add", "dave", "--email", "not-an-email", *base])
    assert result.exit_code == 1 and "e-mail" in result.output
    result = runner.invoke(cli, ["user", "add", "alice", "--email", "a@x.org",
                                 "--password-file", str(password_file), *base])
    assert result.exit_code == 1 and "already exists" in result.output

    result = runner.invoke(cli, ["user", "disable", "bob", *base])
    assert result.exit_code == 0 and "disabled bob" in result.output
    result = runner.invoke(cli, ["user", "list", *base])
    lines = result.output.splitlines()
    assert [line.split()[:3] for line in lines] == [["alice", "admin", "active"],
                                                    ["bob", "submitter", "disabled"]]
    result = runner.invoke(cli, ["user", "token", "alice", *base])
    assert result.exit_code == 0
    token = result.output.strip()
    with SQLiteEventStore(root.db_path) as store:
        assert user_for_token(store, token).name == "alice"
        assert authenticate(store, "alice", PASSWORD).role == "admin"
        assert authenticate(store, "bob", "another secret") is None  # disabled
        assert get_user(store, "carol") is None
    result = runner.invoke(cli, ["user", "token", "nobody", *base])
    assert result.exit_code == 1 and "no such user" in result.output
