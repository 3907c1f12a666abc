"""Delivery end to end: a real server (handler runner, delivery worker, watchdog observer
native or polling, e-mail composer) on a temp root, with the archive poller simulator
(ops/archive_poller.py) doing to the delivery directory what SDP's poller does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from functools import partial

import pytest
from fixtures.delivery import (
    DEVS,
    REPO,
    confirmed_in_bulk,
    duplicate_facts,
    load_poller_module,
    make_root,
    ready_submission,
)
from helpers import wait_for

from crds_events import events as ev
from crds_events.delivery import publish as delivery
from crds_events.delivery.directory import MARKER_NAME
from crds_events.server import parts
from crds_events.server.core import Server
from crds_events.server.scheduler import Scheduler
from crds_events.store import open_store
from crds_events.store.folds import DELIVERIES, FILES
from crds_events.store.projections import TableProjection, read_table
from crds_events.submissions import review
from crds_events.submissions.dropbox import drop_submission
from crds_events.watch.delivery import DeliveryWatcher

ArchivePoller = load_poller_module().ArchivePoller
MODES = ["native", "polling"]


@pytest.fixture
def servers():
    started = []

    def start(settings, **options) -> Server:
        server = Server(settings, [partial(parts.mail, poll_interval=0.1),
                                   partial(parts.delivery, **options)], poll_interval=0.05)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def pollers():
    started = []

    def start(directory, **options):
        poller = ArchivePoller(directory, **options)
        poller.start()
        started.append(poller)
        return poller

    yield start
    for poller in started:
        poller.stop()


def _tables(store):
    return (read_table(store, TableProjection(FILES)),
            read_table(store, TableProjection(DELIVERIES)))


def _states(store) -> dict[str, str]:
    return {name: info.state for name, info in delivery.delivery_states(store).items()}


def _left_in(directory) -> list[str]:
    """What the delivery directory still holds besides the server's marker."""
    return [p.name for p in directory.iterdir() if p.name != MARKER_NAME]


def _stream_types(store, name) -> list[str]:
    return [r.type for r in store.read_stream(ev.delivery_stream(name))
            if r.type.startswith("Delivery")]


@pytest.mark.parametrize("mode", MODES)
def test_confirm_cat_proc_deleted_then_archived_and_released(tmp_path, servers, pollers,
                                                             mode):
    settings = make_root(tmp_path, mode=mode, interval=0.1)
    server = servers(settings)
    store = server.store
    pollers(settings.delivery, interval=0.05, delay=0.6)
    files = {"jwst_nircam_flat_0002.fits": b"a flat\n", "jwst_nircam_flat_0002.rmap": b"r\n",
             "jwst_nircam_0002.imap": b"i\n", "jwst_0002.pmap": b"p\n"}
    ready_submission(settings, store, "s1", files)
    review.confirm(settings, store, "s1", "jane")
    assert wait_for(lambda: _states(store).get("jwst_0001") == "archived", 20), _states(store)
    assert _stream_types(store, "jwst_0001") == [
        "DeliveryRequested", "DeliveryCreated", "DeliveryArchiving", "DeliveryArchived"]
    assert (settings.catalogs / "jwst_0001.cat").read_text().splitlines() == list(files)
    assert wait_for(lambda: all(
        _tables(store)[0].get((n,), {}).get("available") for n in files)
        and _tables(store)[1].get(("jwst_0001",), {}).get("state") == "archived", 10)
    file_rows, delivery_rows = _tables(store)
    for name in files:
        row = file_rows[(name,)]
        assert (row["state"], row["delivery"], row["available"]) == (
            "archived", "jwst_0001", True)
    assert delivery_rows[("jwst_0001",)]["state"] == "archived"
    # the delivery directory is clean again, and nothing was recorded twice
    assert wait_for(lambda: not _left_in(settings.delivery), 5), _left_in(settings.delivery)
    assert duplicate_facts(store) == []


def test_cat_err_is_failed_and_devs_are_mailed(tmp_path, servers, pollers):
    settings = make_root(tmp_path)
    server = servers(settings)
    store = server.store
    pollers(settings.delivery, interval=0.05, delay=0.2, error_rate=1.0)
    ready_submission(settings, store, "s1", {"jwst_nircam_flat_0002.fits": b"f\n"})
    review.confirm(settings, store, "s1", "jane")
    assert wait_for(lambda: _states(store).get("jwst_0001") == "failed", 20), _states(store)

    def mail():
        return [r.event for r in store.read_all(types=["EmailQueued"])
                if r.event.kind == "DELIVERY FAILED"]

    queued = wait_for(mail, 10)
    assert queued and queued[0].to == (DEVS,)
    assert queued[0].about == ev.delivery_stream("jwst_0001")
    assert "jwst_0001" in queued[0].subject and "s1" in queued[0].body
    assert "jwst_nircam_flat_0002.fits" in queued[0].body
    assert (settings.delivery / "jwst_0001.cat_err").exists()
    assert (settings.delivery / "jwst_nircam_flat_0002.fits").exists()  # left for ops
    file_rows, _ = _tables(store)
    assert not file_rows[("jwst_nircam_flat_0002.fits",)]["available"]


@pytest.mark.parametrize("mode", MODES)
def test_observer_that_missed_everything_is_put_right_by_the_scan(tmp_path, servers, pollers,
                                                                  mode):
    settings = make_root(tmp_path, mode=mode, interval=0.1)
    server = servers(settings, scan_interval=None)  # only the start-up scan
    store = server.store
    sids = confirmed_in_bulk(settings, store, 6)
    names = [delivery.delivery_name("jwst", n) for n in range(1, 7)]
    assert wait_for(lambda: all(_states(store).get(n) == "created" for n in names), 20)
    watcher = server.component("delivery-watcher", DeliveryWatcher)
    watcher.stop()  # the observer misses everything from now on
    poller = pollers(settings.delivery, interval=0.05, delay=0.1, error_rate=0.5, seed=3)
    fates = {n: "failed" if poller.fails(n) else "archived" for n in names}
    assert set(fates.values()) == {"failed", "archived"}  # the seed gives both
    assert wait_for(lambda: len(poller.outcomes) == 6, 20)
    assert all(s == "created" for n, s in _states(store).items() if n in names)
    watcher.start()  # the start-up scan puts everything right
    assert wait_for(lambda: {n: _states(store).get(n) for n in names} == fates, 20), \
        _states(store)
    released = {r.data["name"] for r in store.read_all(types=["FileReleased"])}
    expected = {f"jwst_nircam_flat_bulk{i:05d}.fits" for i, n in enumerate(names)
                if fates[n] == "archived"}
    assert released == expected and len(sids) == 6
    assert duplicate_facts(store) == []


@pytest.mark.slow
def test_a_thousand_deliveries_at_once_all_reach_archived(tmp_path, servers, pollers):
    settings = make_root(tmp_path)
    server = servers(settings)
    store = server.store
    began = time.monotonic()
    pollers(settings.delivery, interval=0.05, delay=0.0)
    confirmed_in_bulk(settings, store, 1000)
    assert wait_for(lambda: list(_states(store).values()).count("archived") == 1000, 60), \
        {s: list(_states(store).values()).count(s) for s in set(_states(store).values())}
    elapsed = time.monotonic() - began
    assert len(store.read_all(types=["FileReleased"])) == 1000
    assert duplicate_facts(store) == []
    assert len(list((settings.catalogs).glob("jwst_*.cat"))) == 1000
    assert wait_for(lambda: not _left_in(settings.delivery), 10)
    print(f"1000 deliveries confirmed -> archived in {elapsed:.1f} s")


_SERVE = textwrap.dedent("""
    import sys
    from functools import partial
    from crds_events.config import load_settings
    from crds_events.server import parts
    from crds_events.server.core import Server
    settings = load_settings(sys.argv[1])
    server = Server(settings, [partial(parts.mail, poll_interval=0.1),
                               partial(parts.delivery, scan_interval=1.0)], poll_interval=0.05)
    server.serve_forever(announce=lambda text: None)
""")


def _serve(settings) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", _SERVE, str(settings.root)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_server_killed_while_the_poller_works_then_restarted(tmp_path, pollers, database_url):
    settings = make_root(tmp_path, database_url=database_url)
    store = open_store(settings)
    try:
        confirmed_in_bulk(settings, store, 40)
        names = [delivery.delivery_name("jwst", n) for n in range(1, 41)]
        poller = pollers(settings.delivery, interval=0.05, delay=0.4, error_rate=0.3, seed=7)
        fates = {n: "failed" if poller.fails(n) else "archived" for n in names}
        first = _serve(settings)
        try:
            # killed once the archive is visibly at work, before it has finished
            assert wait_for(lambda: "archiving" in _states(store).values(), 30), \
                first.stderr.read1() if first.poll() is not None else _states(store)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        states = _states(store)
        assert sorted(states.values()) != sorted(fates.values()), "killed too late"
        # the archive finishes, alone, whatever had been published before the kill
        assert wait_for(lambda: not poller.busy and not [
            p for p in settings.delivery.iterdir() if p.name.endswith((".cat", ".cat_proc"))
        ], 30)
        assert len(poller.outcomes) > 0
        second = _serve(settings)
        try:
            assert wait_for(lambda: {n: _states(store).get(n) for n in names} == fates, 30), \
                _states(store)
            time.sleep(1.5)  # a periodic scan runs: nothing may be recorded twice
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0, second.stderr.read().decode()
        assert duplicate_facts(store) == []
        released = {r.data["name"] for r in store.read_all(types=["FileReleased"])}
        assert released == {f"jwst_nircam_flat_bulk{i:05d}.fits"
                            for i, n in enumerate(names) if fates[n] == "archived"}
        assert len(store.read_all(types=["DeliveryCreated"])) == 40
        assert sorted(p.name for p in settings.catalogs.iterdir()) == \
            sorted(f"{n}.cat" for n in names)
    finally:
        store.close()


@pytest.mark.slow
def test_real_submission_confirmed_is_delivered_archived_and_released(tmp_path, servers,
                                                                       pollers):
    from fixtures.submissions import make_flat, seed_root

    settings = make_root(tmp_path)
    seed_root(settings, tmp_path / "context", ["nircam", "miri"])
    server = Server(settings, [partial(parts.mail, poll_interval=0.1),
                               partial(parts.submissions, settle=0.1, scan_interval=2.0),
                               parts.delivery], poll_interval=0.05)
    server.start()
    try:
        store = server.store
        pollers(settings.delivery, interval=0.05, delay=0.3)
        flat = make_flat(tmp_path / "made" / "flat.fits", filter_="F200W", seed=1)
        sid = drop_submission(settings, "jane", [flat], {
            "deliverer": "Jane", "instrument": "NIRCAM", "description": "flats",
            "change_level": "MODERATE"})
        outcome = review.follow(store, sid, timeout=60)
        assert isinstance(outcome, ev.SubmissionReady), outcome
        review.confirm(settings, store, sid, "jane")
        assert wait_for(lambda: _states(store).get("jwst_0001") == "archived", 30), \
            _states(store)
        catalog = (settings.catalogs / "jwst_0001.cat").read_text().splitlines()
        assert sorted(catalog) == sorted(outcome.files)  # references and new mappings
        assert set(outcome.generated) <= set(catalog)
        assert wait_for(lambda: all(_tables(store)[0].get((n,), {}).get("available")
                                    for n in outcome.files), 10)
    finally:
        server.stop()


def test_scheduler_job_reconciles_when_the_watcher_is_down(tmp_path, pollers):
    settings = make_root(tmp_path)
    server = Server(settings, [partial(parts.delivery, reconcile_every=0.3), parts.locks,
                               parts.scheduler], poll_interval=0.05)
    watcher = server.component("delivery-watcher", DeliveryWatcher)
    assert watcher.scan_interval is None
    server.start()
    try:
        store = server.store
        confirmed_in_bulk(settings, store, 2)
        assert wait_for(lambda: list(_states(store).values()) == ["created", "created"], 20)
        watcher.stop()  # no observer, no watcher thread: only the job is left
        pollers(settings.delivery, interval=0.05, delay=0.0)
        assert wait_for(lambda: list(_states(store).values()) == ["archived", "archived"], 20)
        stats = server.component("scheduler", Scheduler).stats(parts.RECONCILE_JOB)
        assert stats.runs >= 1 and stats.failures == 0
    finally:
        server.stop()
