"""What only the PostgreSQL log has: its migrations (applied once, even by processes opening
a new database at once), its connection errors (clear, no password), the one setting that
chooses the backend, and NOTIFY waking `wait_for`. The contract itself is tested on both
backends in test_eventlog.py, test_concurrency.py, test_crash.py."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest
from helpers import free_port

from crds_events import events as ev
from crds_events.config import ConfigError, load_settings
from crds_events.store import SQLiteEventStore, StoreError, open_store
from crds_events.store.postgres import PostgresEventStore, redact_url
from crds_events.store.postgres_schema import MIGRATIONS, applied_migrations

NAMES = [name for name, _ in MIGRATIONS]

psycopg = pytest.importorskip(
    "psycopg", reason="PostgreSQL tests need psycopg (pip install -e '.[test]')")


def test_migrations_are_recorded_and_applied_once(postgres_url):
    PostgresEventStore(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert applied_migrations(conn) == NAMES == [
            "m001_events", "m002_checkpoints", "m003_event_filter_indexes",
            "m004_as_of_indexes"]  # the SQLite log's step names
        indexes = {name for (name,) in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'events'")}
        assert {"events_stream", "events_idempotency", "events_type_position",
                "events_actor_position", "events_file_name",
                "events_context_pointer"} <= indexes
    again = PostgresEventStore(postgres_url)  # reopening applies nothing twice
    again.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM _crds_events_migrations").fetchone()[0] == 4


def _open(url: str, barrier, results) -> None:
    barrier.wait()
    try:
        PostgresEventStore(url).close()
        results.put("ok")
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        results.put(repr(exc))


def test_processes_opening_a_new_log_at_once_migrate_it_once(postgres_url):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(3)
    results = ctx.Queue()
    workers = [ctx.Process(target=_open, args=(postgres_url, barrier, results))
               for _ in range(3)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    results.close()
    results.join_thread()
    assert outcomes == ["ok"] * 3
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert applied_migrations(conn) == NAMES


def test_a_log_that_cannot_be_reached_is_one_clear_error_without_the_password():
    url = f"postgresql://crds:s3cret@127.0.0.1:{free_port()}/crds"
    with pytest.raises(StoreError, match=r"cannot open the event log at "
                                         r"postgresql://crds:\*\*\*@127\.0\.0\.1") as info:
        PostgresEventStore(url, connect_timeout=2)
    assert "s3cret" not in str(info.value)
    assert redact_url("postgresql://u@h/d") == "postgresql://u@h/d"


def test_the_database_url_setting_chooses_the_backend(tmp_path, postgres_url):
    on_pg = load_settings(tmp_path, environ={"CRDS_EVENTS_DATABASE_URL": postgres_url})
    assert on_pg.database_url == postgres_url
    with open_store(on_pg) as store:
        assert isinstance(store, PostgresEventStore)
        store.append("s:a", ev.SubmissionProgress("1", "on postgresql"))
    with open_store(postgres_url) as store:
        assert store.read_all()[0].data["message"] == "on postgresql"

    default = load_settings(tmp_path, environ={})
    assert default.database_url == f"sqlite:///{tmp_path.resolve()}/events.db"
    with open_store(default) as store:
        assert isinstance(store, SQLiteEventStore) and store.path == default.db_path
    (tmp_path / "crds-events.toml").write_text('[paths]\ndatabase_url = "sqlite:///log/e.db"\n')
    (tmp_path / "log").mkdir()
    relative = load_settings(tmp_path, environ={})
    assert relative.db_path == tmp_path.resolve() / "log" / "e.db"
    with open_store(relative) as store:
        assert isinstance(store, SQLiteEventStore) and store.path == relative.db_path


def test_a_database_url_of_another_kind_is_refused_naming_the_setting(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, environ={"CRDS_EVENTS_DATABASE_URL": "mysql://u:pw@h/db"})
    message = str(info.value)
    assert "'database_url' from $CRDS_EVENTS_DATABASE_URL" in message
    assert "sqlite:///" in message and "postgresql://" in message
    assert "pw" not in message  # the rest of a URL may hold a password


def test_wait_for_is_woken_by_a_commit_of_another_process(postgres_url):
    with PostgresEventStore(postgres_url) as store, PostgresEventStore(postgres_url) as other:
        timer = threading.Timer(0.3, lambda: other.append("s:a", ev.SubmissionProgress("1", "x")))
        started = time.monotonic()
        timer.start()
        try:
            assert store.wait_for(1, timeout=30)
        finally:
            timer.join()
        assert time.monotonic() - started < 25  # woken, not timed out
        assert not store.wait_for(2, timeout=0.2)


def test_truncate_is_refused_like_update_and_delete(postgres_url):
    with PostgresEventStore(postgres_url) as store:
        store.append("s:a", ev.SubmissionProgress("1", "x"))
        with psycopg.connect(postgres_url, autocommit=True) as conn, \
                pytest.raises(psycopg.IntegrityError, match="append-only: TRUNCATE"):
            conn.execute("TRUNCATE events")
        assert store.head() == 1


def test_a_closed_store_refuses_reads(postgres_url):
    store = PostgresEventStore(postgres_url)
    store.close()
    store.close()  # twice is fine
    with pytest.raises(StoreError, match="closed"):
        store.head()
