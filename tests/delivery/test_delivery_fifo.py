"""A FIFO in the delivery directory never freezes writers (issue 13, item 5, delivery side).

A FIFO named like a manifest used to be read by the reconciliation inside its write
transaction: the read waits for a writer that never comes, and every other write of the
server waited 30 s and failed "database is locked". Now scans look before they lock and
never open anything but regular files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from functools import partial

import pytest
from fixtures.contexts import seed_generations
from fixtures.delivery import REPO, make_root, ready_submission
from helpers import wait_for

from crds_events.accounts import users
from crds_events.contexts.pointers import set_context
from crds_events.delivery import publish as delivery
from crds_events.delivery.reconcile import disk_state, reconcile
from crds_events.server import parts
from crds_events.server.core import Server
from crds_events.server.wsgi import WebServer
from crds_events.store import SQLiteEventStore
from crds_events.submissions import review
from crds_events.watch.delivery import DeliveryWatcher

WRITE_BOUND = 1.0  # seconds: the acceptance


def _fifo_in_place_of_a_created_manifest(settings, store) -> str:
    """A real delivery (created: its .cat published), whose .cat is then swapped for a
    FIFO; and an unknown manifest name that is a FIFO."""
    ready_submission(settings, store, "s1", {"jwst_nircam_flat_0009.fits": b"nine\n"})
    review.confirm(settings, store, "s1", "jane")
    delivery.publish(settings, store, "jwst_0001")
    (settings.delivery / "jwst_0001.cat").unlink()
    os.mkfifo(settings.delivery / "jwst_0001.cat")
    os.mkfifo(settings.delivery / "jwst_9999.cat")
    return "jwst_0001"


def test_reconcile_ignores_fifos_and_records_nothing(tmp_path):
    settings = make_root(tmp_path)
    with SQLiteEventStore(settings.db_path) as store:
        name = _fifo_in_place_of_a_created_manifest(settings, store)
        assert disk_state(settings.delivery, name) == "odd"
        head = store.head()
        report = reconcile(settings, store)  # returns: nothing was opened
        assert delivery.delivery_states(store)[name].state == "created"
        assert any("not a regular file" in note for note in report.ignored)
        assert {r.type for r in store.read_all(head)} == {"DeliveryDirectoryMarked"}


def test_fifo_in_the_delivery_directory_leaves_writes_fast_on_a_running_server(tmp_path):
    settings = make_root(tmp_path, interval=0.1)
    with SQLiteEventStore(settings.db_path) as setup:
        seed_generations(settings, setup, tmp_path, archived=2)
        users.add_user(setup, "olga", "olga@example.org", "operator")
        _fifo_in_place_of_a_created_manifest(settings, setup)
    server = Server(settings, [partial(parts.web, threads=4),
                               partial(parts.delivery, scan_interval=0.1)],
                    host="127.0.0.1", port=0, poll_interval=0.05)
    server.start()
    try:
        import requests

        url = server.component("web", WebServer).url
        watcher = server.component("delivery-watcher", DeliveryWatcher)
        assert wait_for(lambda: len(watcher.reports) >= 3, 10)  # scans keep running
        for n in range(6):  # while scans run every 0.1 s
            began = time.monotonic()
            set_context(settings, server.store, "latest", f"jwst_000{1 + n % 2}.pmap",
                        f"switch {n}", "olga")
            elapsed = time.monotonic() - began
            assert elapsed < WRITE_BOUND, f"set_context took {elapsed:.2f} s"
            began = time.monotonic()
            answer = requests.get(f"{url}/health", timeout=WRITE_BOUND * 5)
            assert time.monotonic() - began < WRITE_BOUND and answer.status_code == 200
    finally:
        server.stop()


@pytest.mark.parametrize("fifo", ["jwst_9999.cat", "created manifest"])
def test_serve_with_a_fifo_in_delivery_stops_on_sigterm(tmp_path, fifo):
    settings = make_root(tmp_path)
    with SQLiteEventStore(settings.db_path) as store:
        if fifo == "created manifest":
            _fifo_in_place_of_a_created_manifest(settings, store)
        else:
            settings.delivery.mkdir(exist_ok=True)
            os.mkfifo(settings.delivery / fifo)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "crds_events", "serve", "--root", str(settings.root),
         "--port", "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = process.stdout.readline().decode()  # the announcement: it is serving
        assert line, process.stderr.read().decode()
        with SQLiteEventStore(settings.db_path) as store:
            # its start-up scan has looked at the delivery directory (marked it first)
            assert wait_for(lambda: store.read_all(types=["DeliveryDirectoryMarked"]), 10)
            time.sleep(0.5)
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(10)
        assert code == 0, process.stderr.read().decode()[-2000:]
        assert time.monotonic() - began < 10
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
