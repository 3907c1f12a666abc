"""Leader election (crds_events.server.leader) against a real PostgreSQL cluster: processes
of their own (tests/server/leader_process.py) killed with SIGKILL, sessions ended by
``pg_terminate_backend``; and the SQLite case, where the one process always leads."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from crds_events.server.leader import _HOLDER, LEADER_CLASS, Leader, SoleLeader, leader_for

HELPER = Path(__file__).with_name("leader_process.py")
TAKEOVER = 15.0  # generous: the election retries every 0.2 s in these processes


class Process:
    """A helper process whose stdout lines are read by a thread (no blocking reads)."""

    def __init__(self, *args: str):
        self.popen = subprocess.Popen([sys.executable, str(HELPER), *args],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.popen.stdout:
            self.lines.put(line.strip())

    def expect(self, prefix: str, timeout: float) -> str | None:
        """The next line starting with ``prefix`` within ``timeout`` (None: none came)."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                return None
            self.seen.append(line)
            if line.startswith(prefix):
                return line
        return None

    def end(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)
        self._reader.join(10)
        self.popen.stdout.close()
        self.popen.stderr.close()


def holder(url: str) -> str | None:
    """The application_name of the session holding the leader lock of ``url``'s log."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(_HOLDER, (LEADER_CLASS,)).fetchone()
    return row[0] if row else None


def terminate(url: str, application_name: str) -> int:
    """End the sessions named ``application_name`` (what a network cut or a DBA does)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return len(conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s", (application_name,)).fetchall())


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_sqlite_has_one_leader_always():
    calls = []
    leader = leader_for("sqlite:///x.db", on_elected=lambda: calls.append("up"),
                        on_deposed=lambda: calls.append("down"))
    assert isinstance(leader, SoleLeader) and not leader.leading
    leader.start()
    assert leader.leading and leader.info().me and leader.info().process == leader.name
    leader.stop()
    leader.stop()  # idempotent
    assert calls == ["up", "down"] and not leader.leading


def test_two_processes_exactly_one_leads_and_a_kill_hands_over(postgres_url):
    first, second = Process("leader", postgres_url), Process("leader", postgres_url)
    try:
        names = {}
        for process in (first, second):
            ready = process.expect("ready", 30)
            assert ready, process.seen
            names[process] = ready.split()[1]
        # exactly one is elected, and stays the only one
        assert wait_until(lambda: holder(postgres_url) is not None, TAKEOVER)
        leading = next(p for p in (first, second) if names[p] == holder(postgres_url))
        other = second if leading is first else first
        assert leading.expect("elected", TAKEOVER)
        assert other.expect("elected", 2.0) is None  # ten election rounds: still one leader
        assert holder(postgres_url) == names[leading]

        # SIGKILL: no clean-up in the leader; its session (and lock) end with its socket
        os.kill(leading.popen.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        assert other.expect("elected", TAKEOVER), other.seen
        assert time.monotonic() - killed_at < TAKEOVER
        assert holder(postgres_url) == names[other]
    finally:
        first.end()
        second.end()


def test_sigterm_steps_down_before_the_other_takes_over(postgres_url):
    first = Process("leader", postgres_url)
    try:
        assert first.expect("elected", 30), first.seen
        second = Process("leader", postgres_url)
        try:
            assert second.expect("ready", 30)
            first.popen.send_signal(signal.SIGTERM)
            assert first.expect("deposed", TAKEOVER)  # singletons stopped...
            assert first.expect("stopped", TAKEOVER)  # ...then the lock released
            assert second.expect("elected", TAKEOVER), second.seen
            assert first.popen.wait(10) == 0
        finally:
            second.end()
    finally:
        first.end()


def test_a_dropped_connection_stops_the_singletons_then_it_campaigns_again(postgres_url):
    events: list[str] = []
    leader = Leader(postgres_url, on_elected=lambda: events.append("elected"),
                    on_deposed=lambda: events.append("deposed"), interval=0.2)
    leader.start()
    try:
        assert wait_until(lambda: leader.leading, TAKEOVER)
        assert leader.info().me and holder(postgres_url) == leader.name
        assert terminate(postgres_url, leader.name) == 1
        # the heartbeat fails: the singletons stop; nobody else wants the lock, so it
        # is elected again on a new session
        assert wait_until(lambda: leader.elections == 2, TAKEOVER), events
        assert events == ["elected", "deposed", "elected"]
        assert holder(postgres_url) == leader.name
    finally:
        leader.stop()
    assert events[-1] == "deposed" and not leader.leading
    assert wait_until(lambda: holder(postgres_url) is None, 5)


def test_a_follower_names_the_leader(postgres_url):
    one = Leader(postgres_url, on_elected=lambda: None, on_deposed=lambda: None,
                 interval=0.2, name="crds-events@test:one")
    two = Leader(postgres_url, on_elected=lambda: None, on_deposed=lambda: None,
                 interval=0.2, name="crds-events@test:two")
    one.start()
    try:
        assert wait_until(lambda: one.leading, TAKEOVER)
        two.start()
        try:
            assert wait_until(lambda: two.info().process == "crds-events@test:one", TAKEOVER)
            assert not two.leading and not two.info().me
            assert one.info().as_dict()["self"] is True
        finally:
            two.stop()
    finally:
        one.stop()


def test_each_log_schema_has_its_own_leader(postgres_cluster, postgres_url):
    other_url = postgres_cluster.create_schema()
    leaders = [Leader(url, on_elected=lambda: None, on_deposed=lambda: None, interval=0.2)
               for url in (postgres_url, other_url)]
    try:
        for leader in leaders:
            leader.start()
        assert wait_until(lambda: all(leader.leading for leader in leaders), TAKEOVER)
    finally:
        for leader in leaders:
            leader.stop()
        postgres_cluster.drop_schema(other_url)


def test_a_failing_start_gives_the_lead_up(postgres_url):
    def fail() -> None:
        raise RuntimeError("cannot start")

    deposed = threading.Event()
    leader = Leader(postgres_url, on_elected=fail, on_deposed=deposed.set, interval=0.2,
                    retry_after_failure=60)
    leader.start()
    try:
        assert deposed.wait(TAKEOVER)
        assert wait_until(lambda: holder(postgres_url) is None, 5)
        assert not leader.leading
    finally:
        leader.stop()
