"""The reading half of the store interface (`EventReader`): a store, an open transaction and
a `LogReader` over a read-only connection answer every read the same way, on both backends
(on PostgreSQL the plain `LogReader` over a translating connection: what the web uses)."""

from __future__ import annotations

import sqlite3

import pytest

from crds_events import events as ev
from crds_events.store import RawEvent
from crds_events.store.folds import CONTEXT_POINTERS, replay
from crds_events.store.reader import LogReader


def _read_only(backend):
    """A read-only connection of the backend's log, as the web opens one per request."""
    if backend.name == "sqlite":
        conn = sqlite3.connect(str(backend.target), isolation_level=None)
        conn.execute("PRAGMA query_only = 1")
        return conn, conn.close
    import psycopg

    from crds_events.store.postgres_reader import TranslatingConnection

    raw = psycopg.connect(backend.target, autocommit=True)
    raw.execute("SET default_transaction_read_only = on")
    return TranslatingConnection(raw), raw.close


@pytest.fixture
def reader_conn(backend):
    conn, close = _read_only(backend)
    yield conn
    close()


@pytest.fixture
def store(backend):
    store = backend.store
    store.record(ev.ContextSet(observatory="hst", kind="latest", context="hst_0001.pmap"),
                 meta={"actor": "ada"}, idempotency_key="first")
    store.append("delivery:hst_0001", ev.DeliveryRequested(
        delivery="hst_0001", observatory="hst", submission_id="s1", files=("a.fits",),
        serial=1))
    store.append("delivery:hst_0012", ev.DeliveryRequested(
        delivery="hst_0012", observatory="hst", submission_id="s2", files=("b.fits",),
        serial=12))
    store.append("context:hst", RawEvent("ContextSet", {
        "observatory": "hst", "pointer": "edit", "context": "hst_0001.pmap"},
        schema_version=1))
    for serial in (2, 3, 4):
        store.record(ev.ContextSet(observatory="hst", kind="latest",
                                   context=f"hst_000{serial}.pmap"), meta={"actor": "bo"})
    store.record(ev.FileMarkedBad(name="a.fits", by="ada", reason="bad a.fits"))
    yield store


def _readers(store, conn):
    yield "store", store
    with store.transaction() as tx:
        yield "transaction", tx
    yield "reader", LogReader(conn)


def test_every_reader_answers_alike(store, reader_conn):
    answers = {}
    for name, reader in _readers(store, reader_conn):
        answers[name] = (
            reader.head(),
            [r.position for r in reader.read_all(2, types=["ContextSet"], limit=3)],
            [r.position for r in reader.iter_all(batch=2)],
            [r.version for r in reader.read_stream("context:hst", after_version=1)],
            reader.get(1).idempotency_key,
            reader.stream_version("context:hst"),
            reader.find_key("first").position,
            reader.find_key("never"),
            reader.streams_with_prefix("delivery:hst_"),
            [r.stream for r in reader.read_prefix("delivery:", types=["DeliveryRequested"])],
            [r.position for r in reader.pointer_events()],
            [r.position for r in reader.pointer_events(5)],
        )
    assert answers["store"] == answers["transaction"] == answers["reader"]
    head, _, everything, *_ = answers["store"]
    assert everything == list(range(1, head + 1))
    assert answers["store"][8] == ["delivery:hst_0001", "delivery:hst_0012"]


def test_pointer_events_fold_to_the_full_replay(store):
    records = store.read_all()
    for position in range(store.head() + 1):
        upto = [r for r in records if r.position <= position]
        assert replay(CONTEXT_POINTERS, store.pointer_events(position)) == \
            replay(CONTEXT_POINTERS, upto), position


def test_newest_pages_and_filters(store, reader_conn):
    reader = LogReader(reader_conn)
    assert [r.position for r in reader.newest(3)] == [8, 7, 6]
    assert [r.position for r in reader.newest(3, before=6)] == [5, 4, 3]
    assert [r.position for r in reader.newest(10, type="ContextSet", actor="bo")] == [7, 6, 5]
    assert [r.position for r in reader.newest(10, stream_prefix="delivery:")] == [3, 2]
    assert [r.position for r in reader.newest(10, stream="context:hst", since=4, until=6)] \
        == [6, 5, 4]
    assert [r.position for r in reader.newest(10, type="ContextSet",
                                              fields={"context": "hst_0003.pmap"})] == [6]
    with pytest.raises(ValueError, match="not a field name"):
        reader.newest(1, fields={"x') OR 1 --": 1})
    assert reader.count_by_type() == {"ContextSet": 5, "DeliveryRequested": 2,
                                      "FileMarkedBad": 1}
    assert [r.position for r in reader.mentioning(["FileMarkedBad"], "a.fits")] == [8]
    assert [r.position for r in reader.mentioning(["FileMarkedBad"], "a_fits")] == []


def test_dates_become_positions(store, reader_conn):
    reader = LogReader(reader_conn)
    stamps = [r.recorded_at for r in store.read_all()]
    assert reader.first_position_since(stamps[3]) == 4
    assert reader.last_position_until(stamps[3]) == 4
    assert reader.first_position_since("9999") == store.head() + 1
    assert reader.last_position_until("0000") == 0
    assert reader.last_position_until(stamps[0][:10]) == store.head()  # the whole day
