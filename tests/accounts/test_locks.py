"""Instrument locks: one holder per instrument, one instrument per user, expiry, races, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from click.testing import CliRunner

from crds_events import events as ev
from crds_events.accounts.locks import (
    LOCKS,
    LockError,
    LockHeldError,
    LockNotHeldError,
    acquire_lock,
    current_lock,
    expire_locks,
    list_locks,
    release_lock,
    renew_lock,
)
from crds_events.accounts.users import add_user
from crds_events.cli import cli
from crds_events.config import load_settings
from crds_events.handlers.runner import HandlerRunner
from crds_events.store import SQLiteEventStore
from crds_events.store.projections import TableProjection, read_table
from crds_events.store.root import init_root

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
HOUR = 3600.0


@pytest.fixture
def store(tmp_path):
    with SQLiteEventStore(tmp_path / "events.db") as store:
        yield store


def types(store, instrument="acs"):
    return [r.type for r in store.read_stream(ev.lock_stream(instrument))]


def test_acquire_then_second_user_refused_naming_holder_and_expiry(store):
    lock = acquire_lock(store, "ACS", "alice", timeout=4 * HOUR, now=T0, submission_id="s1")
    assert (lock.instrument, lock.owner, lock.expires_at) == ("acs", "alice", T0 + timedelta(hours=4))
    with pytest.raises(LockHeldError) as caught:
        acquire_lock(store, "acs", "bob", timeout=HOUR, now=T0 + timedelta(hours=1))
    assert str(caught.value) == "instrument 'acs' is locked by 'alice' until 2026-03-01T16:00:00Z"
    assert caught.value.owner == "alice" and caught.value.expires_at == T0 + timedelta(hours=4)
    assert types(store) == ["LockAcquired"]
    [record] = store.read_stream(ev.lock_stream("acs"))
    assert record.actor == "alice" and record.data["submission_id"] == "s1"
    assert current_lock(store, "acs", now=T0) == lock


def test_holder_acquiring_again_renews(store):
    acquire_lock(store, "acs", "alice", timeout=HOUR, now=T0)
    again = acquire_lock(store, "acs", "alice", timeout=HOUR, now=T0 + timedelta(minutes=30))
    assert again.expires_at == T0 + timedelta(minutes=90)
    assert types(store) == ["LockAcquired", "LockRenewed"]
    renewed = renew_lock(store, "acs", "alice", timeout=HOUR, now=T0 + timedelta(minutes=80))
    assert renewed.expires_at == T0 + timedelta(minutes=140)
    assert current_lock(store, "acs", now=T0 + timedelta(minutes=139)).owner == "alice"
    assert current_lock(store, "acs", now=T0 + timedelta(minutes=140)) is None


def test_one_instrument_per_user(store):
    acquire_lock(store, "acs", "alice", timeout=HOUR, now=T0)
    with pytest.raises(LockError, match="already holds the lock on 'acs'"):
        acquire_lock(store, "wfc3", "alice", timeout=HOUR, now=T0)
    release_lock(store, "acs", "alice")
    assert acquire_lock(store, "wfc3", "alice", timeout=HOUR, now=T0).instrument == "wfc3"


def test_release_rules(store):
    assert release_lock(store, "acs", "alice") is None  # free: nothing to do, nothing recorded
    assert store.head() == 0
    acquire_lock(store, "acs", "alice", timeout=HOUR, now=T0)
    with pytest.raises(LockNotHeldError, match="locked by 'alice', not 'bob'"):
        release_lock(store, "acs", "bob", now=T0)
    with pytest.raises(LockNotHeldError):
        renew_lock(store, "acs", "bob", timeout=HOUR, now=T0)
    released = release_lock(store, "acs", "admin", force=True)
    assert released.owner == "alice"
    last = store.read_stream(ev.lock_stream("acs"))[-1]
    assert last.type == "LockReleased" and last.data["owner"] == "alice" and last.actor == "admin"
    assert current_lock(store, "acs", now=T0) is None
    assert acquire_lock(store, "acs", "bob", timeout=HOUR, now=T0).owner == "bob"


def test_expiry_frees_the_lock_and_is_recorded_once(store):
    acquire_lock(store, "acs", "alice", timeout=HOUR, now=T0)
    acquire_lock(store, "cos", "bob", timeout=3 * HOUR, now=T0)
    assert expire_locks(store, now=T0 + timedelta(minutes=59)) == []
    expired = expire_locks(store, now=T0 + timedelta(hours=1))
    assert [(lock.instrument, lock.owner) for lock in expired] == [("acs", "alice")]
    assert expire_locks(store, now=T0 + timedelta(hours=1)) == []  # nothing twice
    assert types(store) == ["LockAcquired", "LockExpired"]
    assert [lock.instrument for lock in list_locks(store, now=T0 + timedelta(hours=1))] == ["cos"]
    with pytest.raises(LockNotHeldError, match="does not hold"):
        renew_lock(store, "acs", "alice", timeout=HOUR, now=T0 + timedelta(hours=1))


def test_releasing_another_users_expired_lock_records_its_expiry(store):
    acquire_lock(store, "acs", "alice", timeout=HOUR, now=T0)
    released = release_lock(store, "acs", "bob", now=T0 + timedelta(hours=1))
    assert released.owner == "alice"
    assert types(store) == ["LockAcquired", "LockExpired"]
    assert release_lock(store, "acs", "bob") is None


def test_lock_past_expiry_is_free_before_the_job_runs(store):
    acquire_lock(store, "acs", "alice", timeout=HOUR, now=T0)
    later = T0 + timedelta(hours=2)
    assert current_lock(store, "acs", now=later) is None
    with pytest.raises(LockNotHeldError, match="expired at 2026-03-01T13:00:00Z"):
        renew_lock(store, "acs", "alice", timeout=HOUR, now=later)
    # bob takes it: the log records alice's expiry, then bob's lock
    assert acquire_lock(store, "acs", "bob", timeout=HOUR, now=later).owner == "bob"
    assert types(store) == ["LockAcquired", "LockExpired", "LockAcquired"]
    # and alice, whose lock lapsed, may lock another instrument
    assert acquire_lock(store, "cos", "alice", timeout=HOUR, now=later).owner == "alice"


def test_bad_instrument_names(store):
    for bad in ("", "../acs", "a b", "acs\n", None):
        with pytest.raises(LockError, match="instrument"):
            acquire_lock(store, bad, "alice", now=T0)  # type: ignore[arg-type]
    with pytest.raises(LockError, match="user"):
        acquire_lock(store, "acs", "", now=T0)


def test_locks_inside_a_transaction(store):
    """Handlers take and release locks inside their write transaction."""
    with store.transaction() as tx:
        acquire_lock(tx, "acs", "alice", timeout=HOUR, now=T0)
        with pytest.raises(LockHeldError):
            acquire_lock(tx, "acs", "bob", timeout=HOUR, now=T0)
    with store.transaction() as tx:
        assert release_lock(tx, "acs", "alice").owner == "alice"
    assert types(store) == ["LockAcquired", "LockReleased"]


def test_threads_racing_for_one_lock_exactly_one_wins(tmp_path):
    path = tmp_path / "events.db"
    SQLiteEventStore(path).close()
    racers = 6
    for round_ in range(5):
        instrument = f"inst{round_}"
        barrier = threading.Barrier(racers)
        outcomes: dict[str, object] = {}

        def race(user: str, instrument=instrument, barrier=barrier, outcomes=outcomes) -> None:
            with SQLiteEventStore(path) as mine:
                barrier.wait()
                try:
                    outcomes[user] = acquire_lock(mine, instrument, user, timeout=HOUR)
                except LockHeldError as refused:
                    outcomes[user] = refused

        threads = [threading.Thread(target=race, args=(f"user{i}-{round_}",))
                   for i in range(racers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [u for u, o in outcomes.items() if not isinstance(o, Exception)]
        assert len(winners) == 1 and len(outcomes) == racers
        losers = [o for o in outcomes.values() if isinstance(o, LockHeldError)]
        assert all(exc.owner == winners[0] for exc in losers)
        with SQLiteEventStore(path) as check:
            assert [r.type for r in check.read_stream(ev.lock_stream(instrument))] == ["LockAcquired"]
            assert current_lock(check, instrument).owner == winners[0]


def test_processes_racing_through_the_cli_exactly_one_wins(tmp_path):
    settings = load_settings(tmp_path / "root", environ={})
    init_root(settings)
    with SQLiteEventStore(settings.db_path) as store:
        for i in range(3):
            add_user(store, f"user{i}", f"user{i}@example.org")
    env = {**os.environ, "CRDS_EVENTS_ROOT": str(settings.root)}
    env.pop("CRDS_EVENTS_USER", None)
    procs = [subprocess.Popen([sys.executable, "-m", "crds_events", "lock", "acquire", "stis",
                               "--user", f"user{i}"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(3)]
    results = [(p.wait(timeout=60), p.stdout.read(), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert sorted(code for code, _, _ in results) == [0, 1, 1], results
    winner = next(out for code, out, _ in results if code == 0).split()[3]
    for code, _, err in results:
        if code:
            assert f"instrument 'stis' is locked by '{winner}' until" in err
    with SQLiteEventStore(settings.db_path) as store:
        assert [r.type for r in store.read_stream(ev.lock_stream("stis"))] == ["LockAcquired"]


def test_locks_projection_matches_library_view(store):
    acquire_lock(store, "acs", "alice", timeout=HOUR, now=T0)
    acquire_lock(store, "cos", "bob", timeout=HOUR, now=T0)
    acquire_lock(store, "stis", "carol", timeout=HOUR, now=T0)
    release_lock(store, "cos", "bob")
    expire_locks(store, now=T0 + timedelta(hours=2))
    acquire_lock(store, "wfc3", "dave", timeout=HOUR, now=T0 + timedelta(hours=2))
    projection = TableProjection(LOCKS)
    HandlerRunner(store, [projection]).run_until_idle()
    table = read_table(store, projection)
    states = {key[0]: (row["owner"], row["state"]) for key, row in table.items()}
    assert states == {"acs": ("alice", "expired"), "cos": ("bob", "released"),
                      "stis": ("carol", "expired"), "wfc3": ("dave", "held")}
    assert [lock.instrument for lock in list_locks(store, now=T0 + timedelta(hours=2))] == ["wfc3"]


def test_cli_lock_commands(tmp_path, monkeypatch):
    settings = load_settings(tmp_path / "root", environ={})
    init_root(settings)
    with SQLiteEventStore(settings.db_path) as store:
        add_user(store, "alice", "alice@example.org")
        add_user(store, "bob", "bob@example.org")
        add_user(store, "ada", "ada@example.org", "admin")
    monkeypatch.setenv("CRDS_EVENTS_ROOT", str(settings.root))
    runner = CliRunner()
    monkeypatch.setenv("CRDS_EVENTS_USER", "alice")
    result = runner.invoke(cli, ["lock", "acquire", "acs"])
    assert result.exit_code == 0 and result.output.startswith("acs locked by alice until ")
    result = runner.invoke(cli, ["lock", "acquire", "acs", "--user", "bob"])
    assert result.exit_code == 1 and "locked by 'alice' until" in result.output
    result = runner.invoke(cli, ["lock", "acquire", "acs", "--user", "mallory"])
    assert result.exit_code == 1 and "no such user" in result.output
    result = runner.invoke(cli, ["lock", "list"])
    assert result.output.split()[:2] == ["acs", "alice"]
    result = runner.invoke(cli, ["lock", "release", "acs", "--user", "bob"])
    assert result.exit_code == 1 and "locked by 'alice', not 'bob'" in result.output
    result = runner.invoke(cli, ["lock", "release", "acs", "--user", "ada"])  # admin may
    assert result.exit_code == 0 and "held by alice" in result.output
    result = runner.invoke(cli, ["lock", "list"])
    assert result.output.strip() == "no instrument is locked"
    result = runner.invoke(cli, ["lock", "release", "acs"])
    assert result.exit_code == 0 and "was not locked" in result.output
    monkeypatch.delenv("CRDS_EVENTS_USER")
    result = runner.invoke(cli, ["lock", "acquire", "acs"])
    assert result.exit_code == 1 and "CRDS_EVENTS_USER" in result.output


def test_expiry_job_in_a_server_records_expiry(tmp_path):
    from crds_events.server import parts
    from crds_events.server.core import Server

    settings = load_settings(tmp_path / "root", environ={})
    init_root(settings)
    with SQLiteEventStore(settings.db_path) as store:
        acquire_lock(store, "acs", "alice", timeout=0.5)
    server = Server(settings, [partial(parts.locks, expire_every=0.1), parts.scheduler],
                    handlers=[])
    server.start()
    try:
        with SQLiteEventStore(settings.db_path) as store:
            deadline = datetime.now(UTC) + timedelta(seconds=10)
            while types(store) != ["LockAcquired", "LockExpired"] and datetime.now(UTC) < deadline:
                store.wait_for(store.head() + 1, timeout=0.1)
            assert types(store) == ["LockAcquired", "LockExpired"]
            assert store.read_stream(ev.lock_stream("acs"))[-1].actor == "scheduler"
    finally:
        server.stop()
