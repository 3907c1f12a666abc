"""One manifest per submission, and hostile entries never block the ingest worker: drop
directories made by `drop_submission` beside the classic flat drop, drops at once, a SIGKILL
mid-drop, and FIFOs, symlinks and vanished directories, with real observers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import wait_for

from crds_events import events as ev
from crds_events.submissions.dropbox import (
    drop_submission,
    is_drop_id,
    remove_stale_staging,
    take_manifest,
    uploads_dir,
)
from crds_events.submissions.manifest import (
    MANIFEST_NAME,
    ManifestError,
    read_manifest,
    write_manifest,
)
from crds_events.watch.ingest import IngestWatcher

FIELDS = {"deliverer": "Jane Doe", "instrument": "MIRI", "description": "test drop"}


def _started(store) -> dict[str, ev.SubmissionStarted]:
    return {r.event.submission_id: r.event
            for r in store.read_all(types=[ev.SubmissionStarted.type])}


def _file(directory: Path, name: str, data: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)
    return directory / name


def _in_thread(function, timeout: float = 30.0):
    """Run ``function`` on a thread: its result (or its exception, raised here), or a
    failure if it is still blocked after ``timeout`` seconds."""
    result: list = []

    def call() -> None:
        try:
            result.append((True, function()))
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            result.append((False, exc))

    thread = threading.Thread(target=call, daemon=True, name="test-blocking-check")
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{function} blocked for {timeout} s"
    ok, value = result[0]
    if not ok:
        raise value
    return value


def test_each_drop_directory_and_the_flat_drop_are_submissions(settings, store, tmp_path):
    made = tmp_path / "made"
    watcher = IngestWatcher(settings, settle=0.2)
    watcher.start()
    try:
        time.sleep(0.2)  # the observer is watching
        # by hand, the classic way: files then the manifest, in ingest/jane/
        _file(settings.ingest / "jane", "flat.fits", b"f" * 100)
        write_manifest(settings.ingest / "jane", FIELDS)
        # and two `crds-events submit` drops at the same moment, same fields
        first = drop_submission(settings, "jane", [_file(made, "a.fits", b"a" * 100)], FIELDS)
        second = drop_submission(settings, "jane", [_file(made, "b.fits", b"b" * 100)], FIELDS)
        assert first != second and is_drop_id(first) and is_drop_id(second)
        assert wait_for(lambda: len(_started(store)) == 3)
        time.sleep(1.0)  # the set-aside renames must not add anything
    finally:
        watcher.stop()
    started = _started(store)
    assert len(started) == 3
    assert started[first].files == ("a.fits",) and started[second].files == ("b.fits",)
    [flat_id] = set(started) - {first, second}
    assert started[flat_id].files == ("flat.fits",)
    assert (uploads_dir(settings, first) / "a.fits").read_bytes() == b"a" * 100
    for sid in (first, second):
        own = settings.ingest / "jane" / sid
        assert not (own / MANIFEST_NAME).exists()
        assert (own / f".{MANIFEST_NAME}.{sid}.started").is_file()
    assert (settings.ingest / "jane" / f".{MANIFEST_NAME}.{flat_id}.started").is_file()


def test_drops_at_once_are_each_complete_and_distinct(settings, store, tmp_path):
    paths = [_file(tmp_path / "made" / str(i), "same.fits", b"s" * 4096) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda p: drop_submission(settings, "jane", [p], FIELDS), paths))
    assert len(set(ids)) == 8
    jane = settings.ingest / "jane"
    assert sorted(entry.name for entry in jane.iterdir()) == sorted(ids)  # no temp left
    for sid in ids:
        assert (jane / sid / "same.fits").read_bytes() == b"s" * 4096
    outcomes = IngestWatcher(settings, store=store, settle=0.05).scan()
    assert sorted(o.submission_id for o in outcomes if o.state == "started") == sorted(ids)
    # a rescan (or a copy of a taken directory put back) is the same submission, not a new one
    again = jane / ids[0] / MANIFEST_NAME
    os.replace(jane / ids[0] / f".{MANIFEST_NAME}.{ids[0]}.started", again)
    [outcome] = IngestWatcher(settings, store=store, settle=0.05).scan()
    assert (outcome.state, outcome.submission_id) == ("duplicate", ids[0])
    assert len(_started(store)) == 8


_DROP_SCRIPT = """
import sys
from pathlib import Path
from crds_events.config import load_settings
from crds_events.submissions.dropbox import drop_submission
settings = load_settings(Path(sys.argv[1]), {"observatory": "jwst"}, environ={})
print(drop_submission(settings, "jane", [Path(sys.argv[2])],
                      {"deliverer": "J", "instrument": "MIRI", "description": "big"}))
"""


def test_sigkill_mid_drop_leaves_nothing_to_take(settings, store, tmp_path):
    big = tmp_path / "big.fits"
    with open(big, "wb") as out:
        for _ in range(192):
            out.write(b"\x01" * (1024 * 1024))
    jane = settings.ingest / "jane"
    jane.mkdir(parents=True)
    dropper = subprocess.Popen([sys.executable, "-c", _DROP_SCRIPT, str(settings.root),
                                str(big)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        staged = wait_for(lambda: [e for e in os.listdir(jane) if e.startswith(".drop-")],
                          60, interval=0.001)
        dropper.send_signal(signal.SIGKILL)
        dropper.wait(10)
    finally:
        if dropper.poll() is None:
            dropper.kill()
            dropper.wait()
    assert staged, "the drop never started"
    left = sorted(os.listdir(jane))
    assert left == staged, "the kill came too late to test a drop cut short"
    # half a drop is hidden: nothing to take, now or on any rescan
    assert IngestWatcher(settings, store=store, settle=0.05).scan() == []
    assert _started(store) == {}
    assert remove_stale_staging(jane, older_than=3600) == []  # a live drop is left alone
    assert remove_stale_staging(jane, older_than=0) == staged
    assert os.listdir(jane) == []
    # and the next drop goes through
    sid = drop_submission(settings, "jane", [_file(tmp_path / "made", "s.fits", b"s" * 10)],
                          FIELDS)
    [outcome] = IngestWatcher(settings, store=store, settle=0.05).scan()
    assert (outcome.state, outcome.submission_id) == ("started", sid)


def test_non_regular_entries_never_block_the_worker(settings, store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.mkfifo(outside / "pipe")
    # a FIFO named submission.yaml (flat and in a drop directory), a symlink to a FIFO
    # outside, a socket-like special file as a listed upload, a symlinked user directory
    _file(settings.ingest / "jane", "a.fits", b"a" * 10)
    os.mkfifo(settings.ingest / "jane" / MANIFEST_NAME)
    own = settings.ingest / "jane" / "20250101T000000-0123abcd"
    _file(own, "b.fits", b"b" * 10)
    os.mkfifo(own / MANIFEST_NAME)
    _file(settings.ingest / "bob", "n.fits", b"n" * 10)
    os.symlink(outside / "pipe", settings.ingest / "bob" / MANIFEST_NAME)
    _file(settings.ingest / "dora", "d.fits", b"d" * 10)
    os.mkfifo(settings.ingest / "dora" / "pipe.fits")
    write_manifest(settings.ingest / "dora", {**FIELDS, "instrument": "NIRSPEC",
                                              "files": ["d.fits", "pipe.fits"]})
    os.symlink(outside, settings.ingest / "eve")
    watcher = IngestWatcher(settings, settle=0.2)
    watcher.start()
    try:
        time.sleep(0.5)  # the start-up scan has met all of them
        # another user's drop, made while the hostile entries sit there, still goes through
        carl = drop_submission(settings, "carl", [_file(tmp_path / "made", "c.fits", b"c" * 9)],
                               {**FIELDS, "instrument": "NIRCAM"})
        assert wait_for(lambda: carl in _started(store), 20)
        rejected = wait_for(lambda: [r.event for r in store.read_all(
            types=[ev.SubmissionRejected.type])], 20)
    finally:
        started = time.monotonic()
        _in_thread(watcher.stop, 20)
    assert time.monotonic() - started < 10  # nothing hangs the worker's stop
    assert set(_started(store)) == {carl}
    [dora] = rejected
    assert "'pipe.fits': not a regular file" in dora.reason
    assert str(settings.root) not in dora.reason
    # the explicit scan and the drop box called directly do not block either
    outcomes = _in_thread(lambda: IngestWatcher(settings, store=store, settle=0.05).scan())
    assert outcomes == []
    for directory in (settings.ingest / "jane", own, settings.ingest / "bob"):
        outcome = _in_thread(lambda d=directory: take_manifest(store, settings, "jane", d))
        assert outcome.state == "empty"
    assert (settings.ingest / "jane" / MANIFEST_NAME).exists()  # left as it is


def test_read_manifest_refuses_a_fifo_without_blocking(tmp_path):
    os.mkfifo(tmp_path / MANIFEST_NAME)
    with pytest.raises(ManifestError) as caught:
        _in_thread(lambda: read_manifest(tmp_path / MANIFEST_NAME), 10)
    assert "regular file" in str(caught.value.problems)


def test_a_vanished_ingest_directory_is_recreated(settings, store, tmp_path):
    watcher = IngestWatcher(settings, settle=0.1)
    watcher.start()
    try:
        first = drop_submission(settings, "jane", [_file(tmp_path / "m", "a.fits", b"a" * 9)],
                                FIELDS)
        assert wait_for(lambda: first in _started(store))
        import shutil

        shutil.rmtree(settings.ingest / "jane")  # an operator clears it, mid-run
        second = drop_submission(settings, "jane", [_file(tmp_path / "m", "b.fits", b"b" * 9)],
                                 FIELDS)
        assert wait_for(lambda: second in _started(store))
    finally:
        watcher.stop()
