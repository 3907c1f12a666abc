"""No event payload over 64 KB: the append refuses it with a clear error, writes nothing,
and the transaction it was part of rolls back whole (on each backend: ``store`` comes from
tests/store/conftest.py)."""

from __future__ import annotations

import pytest

from crds_events import events as ev
from crds_events.store import SQLiteEventStore
from crds_events.store.interface import MAX_EVENT_BYTES, PayloadTooLargeError, RawEvent


@pytest.fixture
def sqlite_store(tmp_path):
    with SQLiteEventStore(tmp_path / "log.sqlite") as opened:
        yield opened


def _progress(message: str) -> ev.SubmissionProgress:
    return ev.SubmissionProgress(submission_id="s1", message=message)


def test_a_payload_over_the_limit_is_refused_and_nothing_is_written(store):
    store.record(_progress("first"))
    head = store.head()
    with pytest.raises(PayloadTooLargeError, match=r"SubmissionProgress: payload of \d+ bytes"):
        store.record(_progress("x" * MAX_EVENT_BYTES))
    # multi-byte characters count as bytes, not characters
    with pytest.raises(PayloadTooLargeError):
        store.append("s", RawEvent("SubmissionProgress", {"message": "é" * (MAX_EVENT_BYTES // 2)}))
    with pytest.raises(PayloadTooLargeError), store.transaction() as tx:
        tx.record(_progress("fits"))
        tx.record(_progress("y" * (MAX_EVENT_BYTES + 1)))
    assert store.head() == head  # the whole transaction rolled back
    assert store.read_all()[-1].data["message"] == "first"


def test_a_payload_just_under_the_limit_is_appended(store, sqlite_store):
    store.record(_progress("z" * (MAX_EVENT_BYTES - 100)))  # 100: the JSON around it
    assert store.read_all()[-1].data["message"] == "z" * (MAX_EVENT_BYTES - 100)
    store = sqlite_store
    store.record(_progress("z" * (MAX_EVENT_BYTES - 100)))
    rows = store.db.conn.execute("SELECT max(length(CAST(data AS BLOB))) FROM events").fetchone()
    assert rows[0] <= MAX_EVENT_BYTES
