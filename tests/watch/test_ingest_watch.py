"""The drop-directory watcher with real observers (inotify and polling) on temp dirs."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from helpers import wait_for

from crds_events import events as ev
from crds_events.accounts import locks
from crds_events.submissions.dropbox import uploads_dir
from crds_events.submissions.manifest import MANIFEST_NAME, write_manifest
from crds_events.watch.ingest import IngestWatcher

MANIFEST = {"deliverer": "Jane Doe", "instrument": "MIRI", "description": "test drop"}


def _of_type(store, cls) -> list:
    return [r for r in store.read_all(types=[cls.type])]


def _drop(settings, user: str, files: dict[str, bytes], manifest=MANIFEST) -> Path:
    directory = settings.ingest / user
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    write_manifest(directory, manifest)
    return directory


def test_complete_manifest_gives_exactly_one_submission(settings, store):
    watcher = IngestWatcher(settings, settle=0.2)
    watcher.start()
    try:
        time.sleep(0.2)  # the observer is watching
        directory = _drop(settings, "jane", {"a.fits": b"a" * 100, "b.fits": b"b" * 200})
        assert wait_for(lambda: _of_type(store, ev.SubmissionStarted))
        time.sleep(1.0)  # more events (the manifest's rename aside) must not add anything
    finally:
        watcher.stop()
    started = _of_type(store, ev.SubmissionStarted)
    assert len(started) == 1
    event = started[0].event
    assert (event.user, event.instrument, event.files) == ("jane", "miri", ("a.fits", "b.fits"))
    assert started[0].actor == "jane"
    uploads = uploads_dir(settings, event.submission_id)
    assert (uploads / "b.fits").read_bytes() == b"b" * 200
    assert not (directory / MANIFEST_NAME).exists()
    assert (directory / f".{MANIFEST_NAME}.{event.submission_id}.started").is_file()
    assert (directory / "a.fits").is_file()  # uploads stay until confirmed
    assert locks.current_lock(store, "miri").owner == "jane"


def test_half_written_file_is_not_taken(settings, store):
    directory = settings.ingest / "jane"
    directory.mkdir(parents=True)
    growing = directory / "big.fits"
    stop = threading.Event()

    def writer():
        with open(growing, "ab") as out:
            while not stop.is_set():
                out.write(b"x" * 1000)
                out.flush()
                time.sleep(0.05)

    thread = threading.Thread(target=writer, name="test-writer")
    thread.start()
    watcher = IngestWatcher(settings, settle=0.3)
    watcher.start()
    try:
        time.sleep(0.2)
        write_manifest(directory, MANIFEST)
        time.sleep(1.5)
        assert _of_type(store, ev.SubmissionStarted) == []  # still growing: not taken
        stop.set()
        thread.join()
        final_size = growing.stat().st_size
        assert wait_for(lambda: _of_type(store, ev.SubmissionStarted))
    finally:
        stop.set()
        thread.join()
        watcher.stop()
    started = _of_type(store, ev.SubmissionStarted)
    assert len(started) == 1
    copy = uploads_dir(settings, started[0].event.submission_id) / "big.fits"
    assert copy.stat().st_size == final_size


def test_scan_finds_what_the_observer_missed(settings, store):
    # dropped while nothing watched: only the start-up scan can see it
    _drop(settings, "jane", {"a.fits": b"a" * 10})
    _drop(settings, "bob", {"n.fits": b"n" * 10}, {**MANIFEST, "instrument": "NIRCAM"})
    watcher = IngestWatcher(settings, settle=0.1)
    watcher.start()
    try:
        assert wait_for(lambda: len(_of_type(store, ev.SubmissionStarted)) == 2)
    finally:
        watcher.stop()
    # and the explicit scan, without any observer
    _drop(settings, "carl", {"c.fits": b"c" * 10}, {**MANIFEST, "instrument": "NIRSPEC"})
    outcomes = IngestWatcher(settings, store=store, settle=0.05).scan()
    assert [(o.user, o.state) for o in outcomes] == [("carl", "started")]
    users = sorted(r.event.user for r in _of_type(store, ev.SubmissionStarted))
    assert users == ["bob", "carl", "jane"]


def test_same_manifest_again_is_one_submission(settings, store):
    directory = _drop(settings, "jane", {"a.fits": b"a" * 10})
    manifest = directory / MANIFEST_NAME
    stat = manifest.stat()
    watcher = IngestWatcher(settings, store=store, settle=0.05)
    [first] = watcher.scan()
    # a crash before the manifest was set aside: the same manifest (bytes and mtime) is back
    aside = directory / f".{MANIFEST_NAME}.{first.submission_id}.started"
    os.replace(aside, manifest)
    os.utime(manifest, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    [again] = IngestWatcher(settings, store=store, settle=0.05).scan()
    assert (again.state, again.submission_id) == ("duplicate", first.submission_id)
    assert len(_of_type(store, ev.SubmissionStarted)) == 1
    assert not manifest.exists()


def test_bad_manifest_is_rejected_naming_the_field(settings, store):
    _drop(settings, "jane", {"a.fits": b""}, {"deliverer": "Jane", "instrument": "WFC3"})
    [outcome] = IngestWatcher(settings, store=store, settle=0.05).scan()
    assert outcome.state == "rejected"
    [rejected] = _of_type(store, ev.SubmissionRejected)
    reason = rejected.event.reason
    assert "'description': missing" in reason
    assert "unknown JWST instrument 'WFC3'" in reason
    assert "0 bytes" in reason
    assert rejected.actor == "jane"
    assert _of_type(store, ev.SubmissionStarted) == []
    assert not uploads_dir(settings, outcome.submission_id).exists()
    assert locks.current_lock(store, "miri") is None


def test_locked_instrument_is_refused_naming_holder(settings, store):
    lock = locks.acquire_lock(store, "miri", "bob", timeout=3600)
    _drop(settings, "jane", {"a.fits": b"a" * 10})
    [outcome] = IngestWatcher(settings, store=store, settle=0.05).scan()
    assert outcome.state == "rejected"
    assert "locked by 'bob'" in outcome.reason
    assert locks.format_time(lock.expires_at) in outcome.reason
    assert _of_type(store, ev.SubmissionStarted) == []
    assert not uploads_dir(settings, outcome.submission_id).exists()
