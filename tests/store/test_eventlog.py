"""Contract tests for the event store: every backend must pass them.

The backends are listed in `BACKENDS` (tests/store/conftest.py): SQLite and PostgreSQL;
each test taking ``store`` or ``backend`` runs once per backend.
"""

from __future__ import annotations

import re
import threading

import pytest

from crds_events import events as ev
from crds_events.store import (
    ANY,
    NO_STREAM,
    ConcurrencyError,
    RawEvent,
    SQLiteEventStore,
    StoreError,
    caused_by,
)
from crds_events.store.handler import Handler, catch_up, get_checkpoint, step


def progress(n: int, submission: str = "1") -> ev.SubmissionProgress:
    return ev.SubmissionProgress(submission_id=submission, message=f"step {n}")


def assert_gapless(store) -> None:
    positions = [r.position for r in store.read_all()]
    assert positions == list(range(1, len(positions) + 1))


def test_append_and_read_stream_in_version_order(store):
    first = store.append("submission:1", [progress(1), progress(2)], NO_STREAM)
    second = store.append("submission:1", progress(3), 2)
    assert first.positions == (1, 2) and first.version == 2 and not first.duplicate
    assert second.positions == (3,) and second.version == 3
    records = store.read_stream("submission:1")
    assert [r.version for r in records] == [1, 2, 3]
    assert [r.event.message for r in records] == ["step 1", "step 2", "step 3"]
    assert store.read_stream("submission:1", after_version=1, limit=1)[0].version == 2
    assert store.stream_version("submission:1") == 3
    assert store.stream_version("submission:nope") == NO_STREAM


def test_recorded_fields(store):
    meta = {"actor": "jdoe", "correlation_id": "c-1"}
    result = store.append("submission:7", progress(1, "7"), meta=meta)
    record = store.get(result.position)
    assert record.stream == "submission:7" and record.type == "SubmissionProgress"
    assert record.schema_version == ev.SubmissionProgress.schema_version
    assert record.meta == meta and record.actor == "jdoe"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", record.recorded_at)
    assert record.data == progress(1, "7").to_data()
    assert store.get(999) is None


def test_expected_version_conflicts_raise_and_write_nothing(store):
    store.append("s:a", progress(1), NO_STREAM)
    head = store.head()
    with pytest.raises(ConcurrencyError) as info:
        store.append("s:a", progress(2), NO_STREAM)
    assert (info.value.stream, info.value.expected, info.value.actual) == ("s:a", 0, 1)
    with pytest.raises(ConcurrencyError):
        store.append("s:a", [progress(2), progress(3)], 5)
    with pytest.raises(ConcurrencyError):
        store.append("s:new", progress(1), 1)  # exact version of a stream that is absent
    assert store.head() == head
    assert store.append("s:a", progress(2), ANY).version == 2
    assert store.append("s:a", progress(3), 2).version == 3
    assert_gapless(store)


def test_failed_batch_is_all_or_nothing_and_positions_stay_gapless(store):
    store.append("s:a", progress(1))
    bad = RawEvent("SubmissionProgress", {"submission_id": "1", "message": object()})
    with pytest.raises(StoreError, match="SubmissionProgress: payload is not JSON"):
        store.append("s:a", [progress(2), bad])
    assert store.head() == 1 and store.stream_version("s:a") == 1
    with pytest.raises(ValueError):
        store.append("s:a", [])
    with pytest.raises(TypeError):
        store.append("s:a", ["not an event"])
    assert store.append("s:b", progress(1)).positions == (2,)
    assert_gapless(store)


def test_idempotency_key_dedupes(store):
    first = store.append("delivery:hst_0001", ev.DeliveryArchiving("hst_0001"),
                         idempotency_key="delivery:hst_0001:cat_proc")
    again = store.append("delivery:hst_0001", ev.DeliveryArchiving("hst_0001"),
                         idempotency_key="delivery:hst_0001:cat_proc")
    assert again.duplicate and again.positions == first.positions
    assert again.version == first.version
    # even with an expected version that no longer matches: the fact is already recorded
    batch = [progress(1), progress(2), progress(3)]
    b1 = store.append("s:x", batch, NO_STREAM, idempotency_key="batch")
    b2 = store.append("s:x", batch, NO_STREAM, idempotency_key="batch")
    assert b2.duplicate and b2.positions == b1.positions and b2.version == 3
    assert store.head() == 4
    assert [r.idempotency_key for r in store.read_all()] == [
        "delivery:hst_0001:cat_proc", "batch", None, None]


def test_update_and_delete_are_rejected(backend):
    store, raw_sql = backend.store, backend.raw_sql
    store.append("s:a", progress(1))
    with pytest.raises(backend.integrity_error, match="append-only: UPDATE"):
        raw_sql("UPDATE events SET type = 'Other' WHERE position = 1")
    with pytest.raises(backend.integrity_error, match="append-only: DELETE"):
        raw_sql("DELETE FROM events")
    assert store.get(1).type == "SubmissionProgress"


def test_duplicate_stream_version_is_rejected_by_the_schema(backend):
    store, raw_sql = backend.store, backend.raw_sql
    store.append("s:a", progress(1))
    # an explicit free position: only UNIQUE(stream, version) can refuse the row
    with pytest.raises(backend.integrity_error, match="(?i)unique"):
        raw_sql("INSERT INTO events (position, stream, version, type, schema_version, data, "
                "meta, recorded_at) VALUES (99, 's:a', 1, 'X', 1, '{}', '{}', 'now')")


def test_read_all_filters(store):
    store.append("submission:1", [progress(1), progress(2)])
    store.append("context:hst", ev.ContextSet("hst", "latest", "hst_0001.pmap"))
    store.append("submission:2", progress(1, "2"))
    everything = store.read_all()
    assert [r.position for r in everything] == [1, 2, 3, 4]
    assert [r.position for r in store.read_all(2)] == [3, 4]
    assert [r.position for r in store.read_all(streams=["submission:2", "context:hst"])] == [3, 4]
    assert [r.position for r in store.read_all(types=["ContextSet"])] == [3]
    assert [r.position for r in store.read_all(types=["SubmissionProgress"], limit=2)] == [1, 2]
    assert [r.position for r in store.iter_all(batch=1)] == [1, 2, 3, 4]
    assert [r.position for r in store.iter_all(1, types=["SubmissionProgress"], batch=2)] == [2, 4]


def test_transaction_commits_or_rolls_back_together(store):
    with store.transaction() as tx:
        tx.append("s:a", progress(1))
        tx.record(ev.ContextSet("hst", "edit", "hst_0002.pmap"))
    assert store.head() == 2
    assert store.read_stream("context:hst")[0].event.context == "hst_0002.pmap"
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.append("s:a", progress(2))
        raise RuntimeError("handler failed")
    assert store.head() == 2
    with pytest.raises(StoreError, match="not re-entrant"), store.transaction(), \
            store.transaction():
        pass


def test_two_connections_see_each_other(backend):
    store = backend.store
    other = backend.open_other()
    try:
        store.append("s:a", progress(1))
        assert other.head() == 1
        with pytest.raises(ConcurrencyError):
            other.append("s:a", progress(2), NO_STREAM)
        other.append("s:a", progress(2), 1)
        assert store.stream_version("s:a") == 2
    finally:
        other.close()


def test_wait_for(backend):
    store = backend.store
    assert store.wait_for(0, timeout=0)
    assert not store.wait_for(1, timeout=0.05)
    other = backend.open_other()
    timer = threading.Timer(0.1, lambda: other.append("s:a", progress(1)))
    timer.start()
    try:
        assert store.wait_for(1, timeout=5)
    finally:
        timer.join()
        other.close()


def test_caused_by_links_reactions(store):
    origin = store.get(store.append("s:a", progress(1), meta={"actor": "jdoe"}).position)
    meta = caused_by(origin)
    assert meta == {"actor": "jdoe", "causation_id": 1, "correlation_id": 1}
    reaction = store.get(store.append("s:a", progress(2), meta=meta).position)
    assert caused_by(reaction, actor="system")["correlation_id"] == 1


def test_sqlite_settings_and_migrations(tmp_path):
    store = SQLiteEventStore(tmp_path / "e.db")
    try:
        conn = store.db.conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
        applied = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations")]
        assert applied == ["m001_events", "m002_checkpoints", "m003_event_filter_indexes",
                           "m004_as_of_indexes"]
        plan = conn.execute("EXPLAIN QUERY PLAN SELECT position FROM events WHERE type = 'X' "
                            "ORDER BY position DESC").fetchall()
        assert "events_type_position" in str(plan)
    finally:
        store.close()
    again = SQLiteEventStore(tmp_path / "e.db")  # reopening applies nothing twice
    try:
        assert again.db.conn.execute("SELECT count(*) FROM _sqlite_migrations").fetchone()[0] == 4
    finally:
        again.close()
    with pytest.raises(StoreError, match="does not exist"):
        SQLiteEventStore(tmp_path / "missing" / "e.db")


class _Echo(Handler):
    """Appends one reaction per consumed event (but its own); fails on a poisoned one."""

    name = "echo"
    consumes = frozenset({"SubmissionProgress"})

    def handle(self, tx, record) -> None:
        if record.stream == "echo":
            return
        if record.event.message == "poison":
            raise RuntimeError("handler failed")
        tx.append("echo", ev.SubmissionProgress("echo", f"saw {record.position}"),
                  meta=caused_by(record))


def test_a_checkpoint_commits_with_the_handlers_events(store):
    store.append("s:a", [progress(1), progress(2)])
    handler = _Echo()
    assert catch_up(store, [handler]) == 4  # its own two reactions are consumed too
    assert get_checkpoint(store, "echo") == store.head() == 4
    assert [r.event.message for r in store.read_stream("echo")] == ["saw 1", "saw 2"]
    store.append("s:a", [progress(3), ev.SubmissionProgress("1", "poison")])
    head = store.head()
    with pytest.raises(RuntimeError, match="handler failed"):
        step(store, handler)
    # neither the reaction to progress(3) nor the checkpoint: the transaction rolled back
    assert store.head() == head and get_checkpoint(store, "echo") == 4
