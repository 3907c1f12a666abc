"""`crds-events migrate-store --to postgresql://...`: a SQLite log copied to PostgreSQL in
order, positions kept, verified by count and digest, then its projections rebuilt there and
compared with the source's; a non-empty target refused; two migrations at once (one copies,
the other refuses); a migration killed mid-copy leaves the target empty."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import free_port, wait_for

from crds_events import events as ev
from crds_events.cli.group import cli
from crds_events.config import load_settings
from crds_events.store import RawEvent, SQLiteEventStore
from crds_events.store.handler import set_checkpoint
from crds_events.store.postgres import PostgresEventStore
from crds_events.store.projections import default_projections, read_table
from crds_events.store.root import init_root
from crds_events.store.transfer import StreamDigest

psycopg = pytest.importorskip(
    "psycopg", reason="PostgreSQL tests need psycopg (pip install -e '.[test]')")


def _root_with_log(tmp_path, events: int = 0):
    root = tmp_path / "root"
    settings = load_settings(root, environ={})
    init_root(settings)
    with SQLiteEventStore(settings.db_path) as store:
        store.append("submission:1", [ev.SubmissionProgress("1", "certifying é ✓"),
                                      ev.SubmissionProgress("1", "done")],
                     meta={"actor": "jdoe", "correlation_id": 7})
        store.append("delivery:hst_0001", ev.DeliveryArchiving("hst_0001"),
                     idempotency_key="delivery:hst_0001:cat_proc")
        store.append("context:hst", RawEvent("ContextSet", {"observatory": "hst",
                                                            "pointer": "latest",
                                                            "context": "hst_0001.pmap"}))
        for start in range(0, events, 1000):
            store.append("bulk", [ev.SubmissionProgress("b", f"event {i}")
                                  for i in range(start, min(events, start + 1000))])
        with store.transaction() as tx:
            set_checkpoint(tx, "mailer", store.head())
    return root, settings


def _migrate(root, url):
    return CliRunner().invoke(cli, ["migrate-store", "--root", str(root), "--to", url],
                              obj={}, catch_exceptions=False)


def test_the_log_is_copied_in_order_and_verified(tmp_path, postgres_url):
    root, settings = _root_with_log(tmp_path)
    with SQLiteEventStore(settings.db_path) as source:
        expected = source.read_all()
        digest = StreamDigest()
        digest.add_all(source.db.conn.execute(
            "SELECT position, stream, version, type, schema_version, data, meta, "
            "recorded_at, idempotency_key FROM events ORDER BY position"))
    result = _migrate(root, postgres_url)
    assert result.exit_code == 0, result.output
    assert "copied 4 events (positions 1..4) and 1 checkpoints" in result.output
    assert f"verified: 4 events, stream digest sha256:{digest.hexdigest()}" in result.output
    with PostgresEventStore(postgres_url) as target:
        copied = target.read_all()
        assert [r.to_json() for r in copied] == [r.to_json() for r in expected]
        assert target.pointer_events()[0].data["context"] == "hst_0001.pmap"
        # the reactions' checkpoints are copied; the projections' are those of the rebuild
        checkpoints = dict(target.execute("SELECT handler, position FROM _checkpoints"))
        assert checkpoints.pop("mailer") == 4
        assert checkpoints == {p.name: 4 for p in default_projections()}
        # the log goes on where it stopped, and remembers its idempotency keys
        assert target.append("submission:1", ev.SubmissionProgress("1", "next"), 2).positions \
            == (5,)
        assert target.append("delivery:hst_0001", ev.DeliveryArchiving("hst_0001"),
                             idempotency_key="delivery:hst_0001:cat_proc").duplicate


def test_projections_are_rebuilt_on_the_target_and_equal_the_sources(tmp_path, postgres_url):
    from fixtures.contexts import add_people, make_settings, seed_generations

    from crds_events.contexts.pointers import set_context
    from crds_events.handlers.runner import HandlerRunner

    settings = make_settings(tmp_path)  # a JWST root
    root = settings.root
    with SQLiteEventStore(settings.db_path) as source:
        add_people(source)
        seed_generations(settings, source, tmp_path, archived=2)
        set_context(settings, source, "latest", "jwst_0002.pmap", "new flats", "otto")
        projections = default_projections()
        HandlerRunner(source, projections).run_until_idle()  # the source's tables: at head
        # one projection the source's server had not caught up with: not compared
        stale = projections[0]
        with source.transaction() as tx:
            set_checkpoint(tx, stale.name, 1)
        head = source.head()
        expected = {p.fold.table: read_table(source, p) for p in projections}
    result = _migrate(root, postgres_url)
    assert result.exit_code == 0, result.output
    assert (f"rebuilt {len(projections)} projections from {head} events" in result.output
            and f"{len(projections) - 1} equal to the source's (1 not up to date there, not "
            f"compared: {stale.fold.table})" in result.output), result.output
    with PostgresEventStore(postgres_url) as target:
        assert {p.fold.table: read_table(target, p) for p in projections} == expected
        assert expected["context_pointers"] and expected["files"]
    # the migrated root's commands read the rebuilt tables
    env = {"CRDS_EVENTS_DATABASE_URL": postgres_url, "CRDS_EVENTS_OBSERVATORY": "jwst"}
    shown = CliRunner().invoke(cli, ["contexts", "--json", "--root", str(root)], obj={},
                               env=env)
    assert shown.exit_code == 0, shown.output
    assert "jwst_0002.pmap" in shown.output


def test_a_target_that_is_not_empty_is_refused_and_left_alone(tmp_path, postgres_url):
    root, _ = _root_with_log(tmp_path)
    with PostgresEventStore(postgres_url) as target:
        target.append("s:other", ev.SubmissionProgress("x", "already here"))
    result = _migrate(root, postgres_url)
    assert result.exit_code == 1
    assert "not empty (1 events, 0 checkpoints)" in result.output
    with PostgresEventStore(postgres_url) as target:
        assert [r.stream for r in target.read_all()] == ["s:other"]


def test_bad_targets_and_sources_are_one_clear_line(tmp_path, postgres_url):
    root, _ = _root_with_log(tmp_path)
    result = _migrate(root, "mysql://u:pw@h/db")
    assert result.exit_code == 1
    assert "--to: expected a PostgreSQL URL" in result.output and "pw" not in result.output
    unreachable = f"postgresql://crds:s3cret@127.0.0.1:{free_port()}/crds"
    result = _migrate(root, unreachable)
    assert result.exit_code == 1 and "cannot open the event log" in result.output
    assert "s3cret" not in result.output and "Traceback" not in result.output
    result = _migrate(tmp_path / "no-root", postgres_url)
    assert result.exit_code == 1 and "no event log" in result.output
    with PostgresEventStore(postgres_url) as target:
        assert target.head() == 0


def _cli(root, url) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "crds-events"), "migrate-store", "--root",
         str(root), "--to", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_migrations_at_once_copy_once(tmp_path, postgres_url):
    root, _ = _root_with_log(tmp_path, events=5000)
    runs = [_cli(root, postgres_url), _cli(root, postgres_url)]
    outcomes = [(*run.communicate(timeout=120), run.returncode) for run in runs]
    outcomes = [(code, out, err) for out, err, code in outcomes]
    assert sorted(code for code, _, _ in outcomes) == [0, 1], outcomes
    refused = next(err for code, _, err in outcomes if code == 1)
    # (the checkpoints: 1 copied, and the projections' once the first has rebuilt them)
    assert "not empty (5004 events, " in refused
    with PostgresEventStore(postgres_url) as target:
        assert target.head() == 5004 and len(target.read_all()) == 5004


def _copying(url: str) -> bool:
    """A COPY into the events table is under way (the copier holds the write lock)."""
    with psycopg.connect(url, autocommit=True) as conn:
        return bool(conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'COPY events%%' "
            "AND state = 'active'").fetchone())


def _locked(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        return bool(conn.execute(
            "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted").fetchone())


def test_a_migration_killed_mid_copy_leaves_the_target_empty(tmp_path, postgres_url):
    root, _ = _root_with_log(tmp_path, events=60000)
    run = _cli(root, postgres_url)
    try:
        assert wait_for(lambda: _copying(postgres_url), timeout=60, interval=0.01)
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
    finally:
        run.kill()
        run.communicate()
    if run.returncode == 0:
        pytest.fail("the copy finished before it could be killed: give it more events")
    # the server rolls the copy back as soon as it sees the client gone
    assert wait_for(lambda: not _locked(postgres_url), timeout=30)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    again = _cli(root, postgres_url)
    out, err = again.communicate(timeout=180)
    assert again.returncode == 0, err
    assert "verified: 60004 events" in out


def test_with_a_postgresql_url_init_migrates_it_and_commands_use_it(
        tmp_path, postgres_url):
    env = {"CRDS_EVENTS_DATABASE_URL": postgres_url}
    root = tmp_path / "pg-root"
    runner = CliRunner()
    result = runner.invoke(cli, ["init", "--root", str(root)], obj={}, env=env)
    assert result.exit_code == 0, result.output
    assert not (root / "events.db").exists()  # the log is the PostgreSQL one
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM _crds_events_migrations").fetchone()[0] == 4
    # every command reads the PostgreSQL log, never <root>/events.db
    result = runner.invoke(cli, ["deliveries", "--root", str(root)], obj={}, env=env)
    assert result.exit_code == 0, result.output
    assert not (root / "events.db").exists()
    result = runner.invoke(cli, ["migrate-store", "--root", str(root), "--to", postgres_url],
                           obj={}, env=env)
    assert result.exit_code == 1 and "already on PostgreSQL" in result.output
