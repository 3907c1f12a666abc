"""The handler runner: checkpoint and effects commit together; background loop stops clean."""

from __future__ import annotations

import time

import pytest

from crds_events import events as ev
from crds_events.handlers.runner import HandlerRunner
from crds_events.store import SQLiteEventStore, caused_by
from crds_events.store.handler import Handler, get_checkpoint


class Tally(Handler):
    """Counts SubmissionProgress messages per submission; can be told to fail once."""

    name = "test:tally"
    consumes = frozenset({"SubmissionProgress"})

    def __init__(self, fail_on: str | None = None):
        self.fail_on = fail_on

    def setup(self, tx):
        tx.execute("CREATE TABLE IF NOT EXISTS tally (sub TEXT PRIMARY KEY, n INTEGER)")

    def handle(self, tx, record):
        event = record.event
        tx.execute("INSERT INTO tally VALUES (?, 1) ON CONFLICT(sub) DO UPDATE SET n = n + 1",
                   (event.submission_id,))
        if event.message == self.fail_on:
            self.fail_on = None  # fail only the first time
            raise RuntimeError("handler crashed mid-batch")


class Confirmer(Handler):
    """Reacts to SubmissionReady by appending SubmissionConfirmed in the same transaction."""

    name = "test:confirmer"
    consumes = frozenset({"SubmissionReady"})

    def handle(self, tx, record):
        event = record.event
        tx.append(record.stream, ev.SubmissionConfirmed(event.submission_id, "robot",
                                                        event.files, event.new_context),
                  record.version, meta=caused_by(record, actor="robot"))


@pytest.fixture
def store(tmp_path):
    store = SQLiteEventStore(tmp_path / "e.db")
    yield store
    store.close()


def tally(store):
    return dict(store.db.conn.execute("SELECT sub, n FROM tally"))


def test_failed_batch_leaves_no_effect_and_no_checkpoint(store):
    for i in range(5):
        store.record(ev.SubmissionProgress("1", f"m{i}"))
    store.record(ev.EmailSent("e", "<m>"))  # not consumed: only moves the checkpoint
    runner = HandlerRunner(store, [Tally(fail_on="m3")], batch=10)
    with pytest.raises(RuntimeError, match="mid-batch"):
        runner.run_once()
    assert tally(store) == {} and get_checkpoint(store, "test:tally") == 0
    assert runner.run_until_idle() == 5
    assert tally(store) == {"1": 5}  # exactly once despite the retried batch
    assert get_checkpoint(store, "test:tally") == store.head() == 6
    assert runner.run_until_idle() == 0 and runner.lag() == {"test:tally": 0}


def test_batches_stop_short_of_the_head(store):
    for i in range(7):
        store.record(ev.SubmissionProgress(str(i % 2), f"m{i}"))
    runner = HandlerRunner(store, [Tally()], batch=3)
    assert runner.run_once() == 3 and get_checkpoint(store, "test:tally") == 3
    assert runner.run_until_idle() == 4
    assert tally(store) == {"0": 4, "1": 3}


def test_handler_appends_in_its_transaction(store):
    ready = store.record(ev.SubmissionReady("5", ("a.fits",), "hst_0009.pmap"),
                         meta={"actor": "jdoe", "correlation_id": "sub-5"})
    runner = HandlerRunner(store, [Confirmer()])
    runner.run_until_idle()
    confirmed = store.read_stream("submission:5")[-1]
    assert confirmed.type == "SubmissionConfirmed" and confirmed.version == 2
    assert confirmed.meta == {"actor": "robot", "causation_id": ready.position,
                              "correlation_id": "sub-5"}
    assert get_checkpoint(store, "test:confirmer") == store.head() == 2


def test_background_loop_follows_appends_and_stops(store, tmp_path):
    runner_store = SQLiteEventStore(tmp_path / "e.db")
    runner = HandlerRunner(runner_store, [Tally()], poll_interval=0.01)
    runner.start()
    try:
        assert runner.running
        for i in range(20):
            store.record(ev.SubmissionProgress("bg", f"m{i}"))
        deadline = time.monotonic() + 10
        while get_checkpoint(store, "test:tally") < store.head() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert tally(store) == {"bg": 20}
    finally:
        runner.stop()
        runner_store.close()
    assert not runner.running


def test_handler_names_must_be_unique(store):
    with pytest.raises(ValueError, match="unique"):
        HandlerRunner(store, [Tally(), Tally()])
