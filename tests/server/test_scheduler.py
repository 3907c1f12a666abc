"""The scheduler: interval jobs on APScheduler 3 (coalesced, never overlapping, failures
counted), run-at-start, clean stop (threads joined: the autouse no_leaked_threads fixture),
and the server wiring (lock expiry and outbox retry jobs)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from helpers import wait_for

from crds_events import events as ev
from crds_events.accounts import locks
from crds_events.config import load_settings
from crds_events.server import parts
from crds_events.server.core import Server, ServerError
from crds_events.server.parts import LOCK_EXPIRY_JOB, OUTBOX_RETRY_JOB
from crds_events.server.scheduler import Scheduler, SchedulerError
from crds_events.store.root import init_root


@pytest.fixture
def scheduler():
    made = Scheduler()
    yield made
    made.stop()


def test_jobs_run_every_interval_until_stopped(scheduler):
    ticks = []
    scheduler.add_job("tick", lambda: ticks.append(time.monotonic()), 0.1)
    scheduler.start()
    assert wait_for(lambda: len(ticks) >= 3)
    scheduler.stop()
    count = len(ticks)
    time.sleep(0.3)
    assert len(ticks) == count, "no run after stop"
    assert scheduler.stats("tick").runs == count and not scheduler.running


def test_jobs_are_scheduled_coalesced_single_instance_with_a_grace_time(scheduler):
    scheduler.add_job("scan", print, 90)
    scheduler.add_job("quick", print, 0.5)
    scheduler.start()
    rows = {row["name"]: row for row in scheduler.describe()}
    assert {(r["coalesce"], r["max_instances"]) for r in rows.values()} == {(True, 1)}
    assert rows["scan"]["misfire_grace_time"] == 90 and rows["quick"]["misfire_grace_time"] == 1
    assert rows["scan"]["next_run"] > datetime.now(UTC) + timedelta(seconds=80)


def test_a_slow_job_never_overlaps_and_missed_runs_coalesce(scheduler):
    running, most, runs = [0], [0], [0]
    lock = threading.Lock()

    def slow():
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.4)
        with lock:
            running[0] -= 1
            runs[0] += 1

    scheduler.add_job("slow", slow, 0.05)
    scheduler.start()
    time.sleep(1.3)
    scheduler.stop()  # waits for the run in progress
    assert most[0] == 1
    # 26 intervals passed; a run takes 8 of them: without coalescing/max_instances there
    # would be far more runs than the ~3 that fit
    assert 2 <= runs[0] <= 4
    assert running[0] == 0


def test_a_failing_job_is_counted_and_runs_again(scheduler, caplog):
    def broken():
        raise OSError("disk on fire")

    scheduler.add_job("broken", broken, 0.05)
    scheduler.start()
    assert wait_for(lambda: scheduler.stats("broken").failures >= 2)
    stats = scheduler.stats("broken")
    assert stats.last_error == "OSError: disk on fire" and stats.runs >= 2
    assert "job broken failed" in caplog.text


def test_run_at_start_and_jobs_added_while_running(scheduler):
    at_start, later = threading.Event(), threading.Event()
    scheduler.add_job("reconcile", at_start.set, 3600, run_at_start=True)
    scheduler.start()
    assert at_start.wait(5), "a run_at_start job runs at start, not after an hour"
    scheduler.add_job("late", later.set, 0.05)
    assert later.wait(5)
    assert scheduler.next_run("reconcile") > datetime.now(UTC) + timedelta(minutes=50)
    assert scheduler.job_names() == ["late", "reconcile"]


def test_run_job_by_hand_and_restart(scheduler):
    calls = []
    scheduler.add_job("count", lambda: calls.append(1) or len(calls), 3600)
    assert scheduler.run_job("count") == 1  # not started: runs in this thread
    scheduler.start()
    assert scheduler.run_job("count") == 2
    scheduler.stop()
    scheduler.start()  # a stopped scheduler starts again
    assert scheduler.run_job("count") == 3
    scheduler.remove_job("count")
    with pytest.raises(SchedulerError, match="no such job"):
        scheduler.run_job("count")


@pytest.mark.parametrize("name, func, seconds, message", [
    ("", print, 1, "non-empty"),
    ("x", "print", 1, "not callable"),
    ("x", print, 0, "positive"),
    ("x", print, -5, "positive"),
])
def test_bad_jobs_are_refused(scheduler, name, func, seconds, message):
    with pytest.raises(SchedulerError, match=message):
        scheduler.add_job(name, func, seconds)


def test_duplicate_job_names_are_refused(scheduler):
    scheduler.add_job("one", print, 10)
    with pytest.raises(SchedulerError, match="already scheduled"):
        scheduler.add_job("one", print, 10)


# --- the server's scheduler ---------------------------------------------------------------


@pytest.fixture
def servers(tmp_path):
    settings = load_settings(tmp_path / "root", {"observatory": "jwst"}, environ={})
    init_root(settings)
    made = []

    def build(*wired) -> Server:
        server = Server(settings, wired, poll_interval=0.02)
        made.append(server)
        return server

    yield build
    for server in made:
        server.stop()


def test_register_adds_lock_expiry_and_outbox_jobs(servers):
    with pytest.raises(ServerError, match="no scheduler"):
        servers().component("scheduler")
    server = servers(partial(parts.locks, expire_every=0.1),
                     partial(parts.mail, poll_interval=0.05, retry_every=0.1), parts.scheduler)
    scheduler = server.component("scheduler", Scheduler)
    assert scheduler.job_names() == [LOCK_EXPIRY_JOB, OUTBOX_RETRY_JOB]
    with pytest.raises(ServerError, match="already has a scheduler"):
        servers(parts.scheduler, parts.scheduler)

    # a lock that ran out an hour ago: the lock-expiry job records it
    past = datetime.now(UTC) - timedelta(hours=1)
    locks.acquire_lock(server.store, "nircam", "sam", timeout=60, now=past)
    server.start()
    assert wait_for(lambda: server.store.read_all(types=[ev.LockExpired.type]))
    [expired] = server.store.read_all(types=[ev.LockExpired.type])
    assert (expired.event.instrument, expired.event.owner, expired.actor) == \
        ("nircam", "sam", "scheduler")
    assert wait_for(lambda: scheduler.stats(OUTBOX_RETRY_JOB).runs >= 1)
    assert scheduler.stats(OUTBOX_RETRY_JOB).failures == 0
    assert scheduler.stats(LOCK_EXPIRY_JOB).failures == 0
    server.stop()  # the scheduler stops first (added last), its threads joined
    assert not scheduler.running


def test_register_without_outbox_has_only_lock_expiry(servers):
    server = servers(parts.locks, parts.scheduler)
    scheduler = server.component("scheduler", Scheduler)
    assert scheduler.job_names() == [LOCK_EXPIRY_JOB]
    reconciled = threading.Event()
    scheduler.add_job("delivery-reconcile", reconciled.set, 300, run_at_start=True)
    server.start()
    assert reconciled.wait(5)
