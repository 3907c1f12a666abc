"""Honest delivery (issue 13, item 4): "archived" only when the delivery directory is
verifiably ours. An unmounted share (the directory replaced by an empty one, or gone)
is a recorded fault mailed to operators, never an archive; when it is back, archiving
continues."""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest
from fixtures.delivery import DEVS, load_poller_module, make_root, ready_submission
from helpers import wait_for

from crds_events.accounts import users
from crds_events.delivery import publish as delivery
from crds_events.delivery.directory import MARKER_NAME, check_directory, directory_state
from crds_events.delivery.reconcile import reconcile
from crds_events.server import parts
from crds_events.server.core import Server
from crds_events.store import SQLiteEventStore
from crds_events.submissions import review
from crds_events.watch.delivery import DeliveryWatcher

ArchivePoller = load_poller_module().ArchivePoller
FILES = {"jwst_nircam_flat_0002.fits": b"flat two\n"}
FAULT_TYPES = ["DeliveryDirectoryUnavailable", "DeliveryDirectoryRestored"]


@pytest.fixture
def root(tmp_path):
    settings = make_root(tmp_path)
    store = SQLiteEventStore(settings.db_path)
    yield settings, store
    store.close()


def _created(settings, store, sid: str, files: dict[str, bytes]) -> str:
    ready_submission(settings, store, sid, files)
    review.confirm(settings, store, sid, "jane")
    name = [n for n, i in delivery.delivery_states(store).items()
            if i.submission_id == sid][0]
    delivery.publish(settings, store, name)
    return name


def _types(store, types) -> list[str]:
    return [r.type for r in store.read_all(types=list(types))]


def _unplug(settings, tmp_path, *, replace: bool = True):
    """What an unmount does: the real directory goes away; an empty one (the mount point)
    is left in its place, or nothing at all."""
    saved = tmp_path / "share"
    os.rename(settings.delivery, saved)
    if replace:
        settings.delivery.mkdir()
    return saved


def _plug(settings, saved) -> None:
    if settings.delivery.exists():
        shutil.rmtree(settings.delivery)
    os.rename(saved, settings.delivery)


def test_first_reconcile_marks_the_directory_and_records_the_marker(root):
    settings, store = root
    report = reconcile(settings, store)
    assert not report.unavailable
    marker = (settings.delivery / MARKER_NAME).read_text().strip()
    assert len(marker) == 32
    assert directory_state(store, "jwst").marker == marker
    assert check_directory(settings.delivery, marker) == ""
    reconcile(settings, store)  # marking happens once
    assert _types(store, ["DeliveryDirectoryMarked"]) == ["DeliveryDirectoryMarked"]
    assert (settings.delivery / MARKER_NAME).read_text().strip() == marker


@pytest.mark.parametrize("replace", [True, False], ids=["empty-mount-point", "gone"])
def test_replaced_or_missing_directory_is_a_fault_never_an_archive(root, tmp_path, replace):
    settings, store = root
    name = _created(settings, store, "s1", FILES)
    reconcile(settings, store)  # marks the directory; the .cat is there: still created
    saved = _unplug(settings, tmp_path, replace=replace)
    for _ in range(3):  # scan after scan: one fault for the outage, nothing else
        report = reconcile(settings, store)
        assert "delivery directory" in report.unavailable
    assert delivery.delivery_states(store)[name].state == "created"
    assert _types(store, ["DeliveryArchived", "FileReleased"]) == []
    faults = store.read_all(types=FAULT_TYPES)
    assert [r.type for r in faults] == ["DeliveryDirectoryUnavailable"]
    reason = faults[0].event.reason
    assert ("no marker" in reason) if replace else ("does not exist" in reason)
    assert settings.delivery.exists() is replace  # a vanished directory is not re-created
    # nothing is published into the wrong directory meanwhile
    ready_submission(settings, store, "s2", {"jwst_nircam_flat_0003.fits": b"three\n"})
    review.confirm(settings, store, "s2", "jane")
    with pytest.raises(delivery.DeliveryError, match="not published"):
        delivery.publish(settings, store, "jwst_0002")
    if replace:
        assert list(settings.delivery.iterdir()) == []
    # back: reconciliation resumes, the outage ends once, and the archive's work counts
    _plug(settings, saved)
    report = reconcile(settings, store)
    assert report.restored and not report.unavailable
    assert delivery.delivery_states(store)[name].state == "created"  # its .cat is there
    (settings.delivery / f"{name}.cat").unlink()  # the archive takes it
    reconcile(settings, store)
    assert delivery.delivery_states(store)[name].state == "archived"
    assert [r.type for r in store.read_all(types=FAULT_TYPES)] == FAULT_TYPES
    assert delivery.publish(settings, store, "jwst_0002").delivery == "jwst_0002"


def test_another_servers_directory_is_not_ours(root, tmp_path):
    settings, store = root
    name = _created(settings, store, "s1", FILES)
    reconcile(settings, store)
    (settings.delivery / f"{name}.cat").unlink()
    (settings.delivery / MARKER_NAME).unlink()
    (settings.delivery / MARKER_NAME).write_text("0123456789abcdef\n")
    report = reconcile(settings, store)
    assert "another directory" in report.unavailable
    assert delivery.delivery_states(store)[name].state == "created"


def test_marker_that_is_a_fifo_is_reported_without_blocking(root):
    settings, store = root
    reconcile(settings, store)
    (settings.delivery / MARKER_NAME).unlink()
    os.mkfifo(settings.delivery / MARKER_NAME)
    report = reconcile(settings, store)  # would block forever if the FIFO were opened
    assert "not a regular file" in report.unavailable


def test_unplugged_share_on_a_running_server_mails_operators_then_archiving_continues(
        tmp_path):
    settings = make_root(tmp_path, mode="native", interval=0.1)
    with SQLiteEventStore(settings.db_path) as setup:
        users.add_user(setup, "olga", "olga@example.org", "operator")
    server = Server(settings, [partial(parts.mail, poll_interval=0.1),
                               partial(parts.delivery, scan_interval=0.2)], poll_interval=0.05)
    server.start()
    poller = None
    try:
        store = server.store
        name = _created(settings, store, "s1", FILES)
        saved = _unplug(settings, tmp_path)
        assert wait_for(lambda: _types(store, FAULT_TYPES), 10)
        watcher = server.component("delivery-watcher", DeliveryWatcher)
        seen = len(watcher.reports)
        assert wait_for(lambda: len(watcher.reports) >= min(seen + 5, 10), 10)  # more scans

        def mails(kind):
            return [r.event for r in store.read_all(types=["EmailQueued"])
                    if r.event.kind == kind]

        queued = wait_for(lambda: mails("DELIVERY DIRECTORY UNAVAILABLE"), 10)
        assert queued and queued[0].to == ("olga@example.org", DEVS)
        assert "no marker" in queued[0].body
        assert _types(store, FAULT_TYPES) == ["DeliveryDirectoryUnavailable"]
        assert _types(store, ["DeliveryArchived", "FileReleased"]) == []
        # the share is mounted again; the archive does its work there
        _plug(settings, saved)
        poller = ArchivePoller(settings.delivery, interval=0.05, delay=0.1)
        poller.start()
        assert wait_for(lambda: delivery.delivery_states(store)[name].state == "archived", 20)
        assert _types(store, FAULT_TYPES) == FAULT_TYPES
        assert _types(store, ["FileReleased"]) == ["FileReleased"]
        assert wait_for(lambda: mails("DELIVERY DIRECTORY RESTORED"), 10)
        # deliveries made after the outage are archived too
        later = _created(settings, store, "s2", {"jwst_nircam_flat_0003.fits": b"3\n"})
        assert wait_for(lambda: delivery.delivery_states(store)[later].state == "archived",
                        20)
        assert len(store.read_all(types=["DeliveryDirectoryMarked"])) == 1
    finally:
        if poller is not None:
            poller.stop()
        server.stop()


def test_reconcilers_at_once_record_one_fault_per_outage(root, tmp_path):
    settings, store = root
    reconcile(settings, store)
    _unplug(settings, tmp_path)

    def scan(_):
        with SQLiteEventStore(settings.db_path) as own:
            return reconcile(settings, own).unavailable

    with ThreadPoolExecutor(4) as pool:
        reasons = list(pool.map(scan, range(8)))
    assert all("no marker" in reason for reason in reasons)
    assert _types(store, FAULT_TYPES) == ["DeliveryDirectoryUnavailable"]


def test_a_file_where_the_directory_should_be_is_a_fault(tmp_path):
    settings = make_root(tmp_path)
    settings.delivery.rmdir()
    settings.delivery.write_text("not a directory\n")
    with SQLiteEventStore(settings.db_path) as store:
        report = reconcile(settings, store)
        assert "is not a directory" in report.unavailable
        assert _types(store, FAULT_TYPES) == ["DeliveryDirectoryUnavailable"]


def test_server_started_while_the_share_is_away_waits_for_it(tmp_path):
    settings = make_root(tmp_path, mode="native", interval=0.1)
    with SQLiteEventStore(settings.db_path) as setup:
        name = _created(settings, setup, "s1", FILES)
        reconcile(settings, setup)  # marked
    saved = _unplug(settings, tmp_path, replace=False)
    server = Server(settings, [partial(parts.delivery, scan_interval=0.2)], poll_interval=0.05)
    server.start()  # no directory to watch: starts anyway, records the fault
    try:
        store = server.store
        assert wait_for(lambda: _types(store, FAULT_TYPES), 10)
        assert not settings.delivery.exists()
        _plug(settings, saved)
        assert wait_for(lambda: _types(store, FAULT_TYPES) == FAULT_TYPES, 10)
        (settings.delivery / f"{name}.cat").unlink()  # the archive takes it
        assert wait_for(lambda: delivery.delivery_states(store)[name].state == "archived", 10)
    finally:
        server.stop()
