"""Online backup while a server runs and appends, and restore into a fresh root."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from crds_events import events as ev
from crds_events.cli import cli
from crds_events.config import load_settings
from crds_events.contexts.importcache import import_cache
from crds_events.demo.generate import GeneratorConfig, generate
from crds_events.server.core import Server
from crds_events.store import SQLiteEventStore
from crds_events.store.backup import BackupError, backup, restore
from crds_events.store.root import init_root


@pytest.fixture
def live_root(tmp_path):
    """A root holding an imported generated context (files in the store, projections)."""
    settings = load_settings(tmp_path / "root", {"observatory": "jwst"})
    init_root(settings)
    generated = generate(GeneratorConfig(instruments=2, types=3, datasets=0, seed=5),
                         tmp_path / "generated")
    store = SQLiteEventStore(settings.db_path)
    try:
        import_cache(settings, store, generated.mappings_dir, generated.references_dir,
                     generated.pmap, ("latest", "edit"))
    finally:
        store.close()
    return settings


def _events(db_path: Path, upto: int | None = None) -> list[tuple]:
    store = SQLiteEventStore(db_path)
    try:
        return [(e.position, e.stream, e.version, e.type, e.data, e.meta, e.recorded_at,
                 e.idempotency_key)
                for e in store.iter_all() if upto is None or e.position <= upto]
    finally:
        store.close()


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("dest_name", ["backup-dir", "backup.tar.gz"])
def test_backup_while_appending_restores_an_identical_log(live_root, tmp_path, dest_name):
    server = Server(live_root)
    server.start()
    stop = threading.Event()
    appended: list[int] = []

    def writer():
        store = SQLiteEventStore(live_root.db_path)
        try:
            number = 0
            while not stop.is_set() or number < 50:
                number += 1
                result = store.record(ev.RemoteContextPushed(
                    observatory="jwst", pipeline=f"ops-{number % 3}",
                    context="jwst_0001.pmap"))
                appended.append(result.position)
        finally:
            store.close()

    thread = threading.Thread(target=writer, name="backup-test-writer")
    thread.start()
    try:
        while len(appended) < 20:  # the backup starts while appends are in full flow
            stop.wait(0.01)
        result = backup(live_root, tmp_path / dest_name)
    finally:
        stop.set()
        thread.join()
        server.stop()
    source_head = _events(live_root.db_path)[-1][0]
    assert 0 < result.head < source_head  # appends went on during and after the backup

    target = load_settings(tmp_path / "restored")
    restored = restore(tmp_path / dest_name, target)
    assert restored.head == result.head
    assert _events(target.db_path) == _events(live_root.db_path, upto=result.head)
    with sqlite3.connect(target.db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert _files(target.store) == _files(live_root.store)
    assert (target.config_path.read_text() == live_root.config_path.read_text())

    # the restored root serves: a server starts on it and catches its projections up
    server = Server(load_settings(target.root))
    server.start()
    try:
        assert server.store.head() == result.head
    finally:
        server.stop()


def test_restore_refuses_a_root_with_a_log_and_bad_sources(live_root, tmp_path):
    backup(live_root, tmp_path / "b")
    with pytest.raises(BackupError, match="already there"):
        restore(tmp_path / "b", live_root)
    with pytest.raises(BackupError, match="not empty"):
        backup(live_root, tmp_path / "b")
    (tmp_path / "junk").mkdir()
    with pytest.raises(BackupError, match="not a crds-events backup"):
        restore(tmp_path / "junk", load_settings(tmp_path / "other"))
    db = tmp_path / "b" / "events.db"
    db.write_bytes(db.read_bytes()[: len(db.read_bytes()) // 2])
    with pytest.raises((BackupError, sqlite3.DatabaseError)):
        restore(tmp_path / "b", load_settings(tmp_path / "other2"))


def test_cli_backup_and_restore(live_root, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["backup", str(tmp_path / "cli-backup"),
                                 "--root", str(live_root.root)])
    assert result.exit_code == 0, result.output
    assert "position" in result.output
    result = runner.invoke(cli, ["restore", str(tmp_path / "cli-backup"),
                                 "--root", str(tmp_path / "cli-restored")])
    assert result.exit_code == 0, result.output
    assert _events(tmp_path / "cli-restored" / "events.db") == _events(live_root.db_path)
    result = runner.invoke(cli, ["restore", str(tmp_path / "cli-backup"),
                                 "--root", str(tmp_path / "cli-restored")])
    assert result.exit_code != 0
    assert "already there" in result.output
