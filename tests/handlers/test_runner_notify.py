"""On PostgreSQL the handler runner sleeps until NOTIFY wakes it: an append by another
process is handled at once, although the runner's poll is minutes long."""

from __future__ import annotations

import time
from collections.abc import Sequence

from crds_events.handlers.runner import HandlerRunner
from crds_events.store import RawEvent, RecordedEvent, Transaction
from crds_events.store.handler import Handler, get_checkpoint
from crds_events.store.postgres import PostgresEventStore
from crds_events.store.postgres_notify import LogListener


class Echo(Handler):
    name = "echo"
    consumes = frozenset({"Ping"})

    def handle_batch(self, tx: Transaction, records: Sequence[RecordedEvent]) -> None:
        for record in records:
            tx.append("echoes", RawEvent("Echo", {"ping": record.position}))


def test_notify_wakes_a_waiting_runner(postgres_url):
    runner_store = PostgresEventStore(postgres_url)
    runner = HandlerRunner(runner_store, [Echo()], poll_interval=600.0)
    listener = LogListener(postgres_url)
    listener.subscribe(runner.wake)
    runner.start()
    listener.start()
    try:
        assert listener.wait_listening(10)
        time.sleep(0.3)  # the runner has looked (nothing to do) and sleeps its 600 s
        with PostgresEventStore(postgres_url) as other:  # another process, as it were
            ping = other.append("pings", RawEvent("Ping", {})).positions[0]
            deadline = time.monotonic() + 10
            while get_checkpoint(other, "echo") < ping and time.monotonic() < deadline:
                time.sleep(0.05)
            assert get_checkpoint(other, "echo") >= ping
            assert [r.data for r in other.read_stream("echoes")] == [{"ping": ping}]
    finally:
        listener.stop()
        runner.stop()
        runner_store.close()


def test_without_notify_the_runner_still_polls(tmp_path):
    # SQLite: no listener; the poll finds the event
    from crds_events.store import SQLiteEventStore

    with SQLiteEventStore(tmp_path / "events.db") as store, \
            SQLiteEventStore(tmp_path / "events.db") as other:
        runner = HandlerRunner(store, [Echo()], poll_interval=0.05)
        runner.start()
        try:
            ping = other.append("pings", RawEvent("Ping", {})).positions[0]
            deadline = time.monotonic() + 10
            while get_checkpoint(other, "echo") < ping and time.monotonic() < deadline:
                time.sleep(0.05)
            assert get_checkpoint(other, "echo") >= ping
        finally:
            runner.stop()
