"""The file store's start-up repair: abandoned ``.incoming-*`` temp files removed, stored
files that no event names reported and kept, files an event names never touched; run by
`Server.start` on a real root."""

from __future__ import annotations

import os
import time

from crds_events import events as ev
from crds_events.config import load_settings
from crds_events.server.core import Server
from crds_events.store import SQLiteEventStore
from crds_events.store.filerepair import repair_file_store
from crds_events.store.filestore import FileStore
from crds_events.store.root import init_root


def _root(tmp_path):
    settings = load_settings(tmp_path / "root", {"observatory": "jwst"}, environ={})
    init_root(settings)
    return settings


def _age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def _catalog(store, name: str) -> None:
    store.record(ev.FileCataloged(name=name, delivery="", observatory="jwst", sha1="x",
                                  size=1, kind="reference", instrument="nircam",
                                  filekind="flat"))


def test_repair_removes_stale_temps_and_reports_unnamed_files(tmp_path):
    settings = _root(tmp_path)
    files = FileStore.from_settings(settings)
    for name in ("jwst_nircam_flat_0001.fits", "jwst_nircam_flat_0002.fits",
                 "jwst_0002.pmap"):
        files.put(name.encode(), name)
    references = files.references_dir
    stale, fresh = references / ".incoming-abc123", references / ".incoming-def456"
    stale.write_bytes(b"half a file")
    fresh.write_bytes(b"being written by another process")
    _age(stale, 3600)
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours")
    link = references / ".incoming-link"
    link.symlink_to(outside)
    _age(link, 3600)
    with SQLiteEventStore(settings.db_path) as store:
        _catalog(store, "jwst_nircam_flat_0001.fits")
        store.record(ev.ContextSet(observatory="jwst", kind="edit", context="jwst_0002.pmap"))
        report = repair_file_store(settings, store)
    assert report.removed_temps == [".incoming-abc123"]
    assert not stale.exists() and fresh.exists()  # a put still in progress is left alone
    assert link.is_symlink() and outside.read_text() == "not ours"  # never followed
    assert report.unnamed == ["jwst_nircam_flat_0002.fits"]
    # reported, not deleted; named files untouched
    for name in ("jwst_nircam_flat_0001.fits", "jwst_nircam_flat_0002.fits",
                 "jwst_0002.pmap"):
        assert files.exists(name)


def test_repair_on_an_empty_or_missing_store(tmp_path):
    settings = _root(tmp_path)
    with SQLiteEventStore(settings.db_path) as store:
        report = repair_file_store(settings, store)
    assert report.removed_temps == [] and report.unnamed == []
    for kind in ("mapping", "reference"):
        directory = FileStore.from_settings(settings).directory_for(kind)
        if directory.exists():
            directory.rmdir()
    with SQLiteEventStore(settings.db_path) as store:
        assert repair_file_store(settings, store).unnamed == []


def test_server_start_runs_the_repair(tmp_path):
    settings = _root(tmp_path)
    files = FileStore.from_settings(settings)
    files.put(b"left by a lost confirm", "jwst_nircam_flat_0009.fits")
    temp = files.references_dir / ".incoming-zzz"
    temp.write_bytes(b"x")
    _age(temp, 7200)
    server = Server(settings, [])
    server.start()
    try:
        assert server.file_repair.unnamed == ["jwst_nircam_flat_0009.fits"]
        assert server.file_repair.removed_temps == [".incoming-zzz"] and not temp.exists()
        assert files.exists("jwst_nircam_flat_0009.fits")
    finally:
        server.stop()
