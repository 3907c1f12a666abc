"""Delivery as a library: allocation at confirm, publishing the .cat, reconciling the
delivery directory with the log (no threads here; the observers are in test_delivery_e2e)."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixtures.delivery import confirmed_in_bulk, make_root, ready_submission

from crds_events import events as ev
from crds_events.cli import cli
from crds_events.delivery import publish as delivery
from crds_events.delivery.reconcile import disk_state, reconcile
from crds_events.handlers.delivery import DeliveryRequestHandler
from crds_events.handlers.runner import HandlerRunner
from crds_events.store import SQLiteEventStore
from crds_events.store.filestore import FileStore
from crds_events.store.folds import DELIVERIES, FILES
from crds_events.store.projections import TableProjection, read_table
from crds_events.submissions import review

FILES_A = {"jwst_nircam_flat_0002.fits": b"flat two\n", "jwst_nircam_flat_0002.rmap": b"rm\n"}


@pytest.fixture
def root(tmp_path):
    settings = make_root(tmp_path)
    store = SQLiteEventStore(settings.db_path)
    yield settings, store
    store.close()


def _confirm(settings, store, sid, files):
    ready_submission(settings, store, sid, files)
    review.confirm(settings, store, sid, "jane")
    return store.read_stream(ev.submission_stream(sid))


def _request_of(store, sid):
    row = store.db.conn.execute("SELECT stream FROM events WHERE idempotency_key = ?",
                                (delivery.requested_key(sid),)).fetchone()
    return row[0].split(":", 1)[1] if row else None


def test_confirm_allocates_serials_in_order_and_catalogs_under_the_name(root):
    settings, store = root
    _confirm(settings, store, "s1", FILES_A)
    _confirm(settings, store, "s2", {"jwst_nircam_flat_0003.fits": b"three\n"})
    assert _request_of(store, "s1") == "jwst_0001"
    assert _request_of(store, "s2") == "jwst_0002"
    cataloged = {r.data["name"]: r.data["delivery"] for r in store.read_all(
        types=["FileCataloged"])}
    assert cataloged == {"jwst_nircam_flat_0002.fits": "jwst_0001",
                         "jwst_nircam_flat_0002.rmap": "jwst_0001",
                         "jwst_nircam_flat_0003.fits": "jwst_0002"}
    # allocating again (the handler, a replay) finds the same name, appends nothing
    head = store.head()
    with store.transaction() as tx:
        assert delivery.allocate(tx, settings, "s1", list(FILES_A)) == "jwst_0001"
    assert store.head() == head


def test_serial_never_reuses_a_catalog_already_on_disk(root):
    settings, store = root
    (settings.catalogs / "jwst_0007.cat").write_text("old\n")
    _confirm(settings, store, "s1", FILES_A)
    assert _request_of(store, "s1") == "jwst_0008"


def test_publish_links_read_only_writes_cat_last_and_catalog_copy(root):
    settings, store = root
    _confirm(settings, store, "s1", FILES_A)
    created = delivery.publish(settings, store, "jwst_0001")
    assert created.files == tuple(FILES_A) and created.submission_id == "s1"
    manifest = settings.delivery / "jwst_0001.cat"
    assert manifest.read_text() == "".join(f"{n}\n" for n in FILES_A)
    assert Path(created.catalog) == settings.catalogs / "jwst_0001.cat"
    assert Path(created.catalog).read_text() == manifest.read_text()
    store_files = FileStore.from_settings(settings)
    for name, data in FILES_A.items():
        linked = settings.delivery / name
        assert linked.read_bytes() == data
        assert os.path.samefile(linked, store_files.path_for(name))  # a hard link
        assert not linked.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert not [p for p in settings.delivery.iterdir() if p.name.startswith(".")]
    # publishing again is a no-op: same event, one DeliveryCreated
    assert delivery.publish(settings, store, "jwst_0001") == created
    assert len(store.read_all(types=["DeliveryCreated"])) == 1


def test_publish_resumes_after_a_crash_without_a_second_cat(root):
    settings, store = root
    _confirm(settings, store, "s1", FILES_A)
    paths = delivery.Paths.of(settings, "jwst_0001")
    # crash 1: temporary and catalog copy written, not yet renamed -> finished
    settings.delivery.mkdir(exist_ok=True)
    paths.temporary.write_text("partial")
    paths.catalog.write_text("".join(f"{n}\n" for n in FILES_A))
    delivery.publish(settings, store, "jwst_0001")
    assert paths.manifest.read_text() == paths.catalog.read_text()
    assert not paths.temporary.exists()

    # crash 2: published, the archive took and deleted it while we were down, and
    # DeliveryCreated was never recorded -> recorded now, nothing re-published
    _confirm(settings, store, "s2", {"jwst_nircam_flat_0009.fits": b"nine\n"})
    second = delivery.Paths.of(settings, "jwst_0002")
    second.catalog.write_text("jwst_nircam_flat_0009.fits\n")  # temp gone: renamed, taken
    created = delivery.publish(settings, store, "jwst_0002")
    assert created is not None
    assert not second.manifest.exists()
    assert not (settings.delivery / "jwst_nircam_flat_0009.fits").exists()


def test_publish_refuses_files_missing_from_the_store(root):
    settings, store = root
    _confirm(settings, store, "s1", FILES_A)
    os.unlink(FileStore.from_settings(settings).path_for("jwst_nircam_flat_0002.fits"))
    with pytest.raises(delivery.DeliveryError, match="jwst_nircam_flat_0002.fits"):
        delivery.publish(settings, store, "jwst_0001")
    assert not (settings.delivery / "jwst_0001.cat").exists()
    problems = store.read_all(types=["DeliveryProblemFound"])
    assert len(problems) == 1 and problems[0].event.missing == ("jwst_nircam_flat_0002.fits",)
    assert delivery.delivery_states(store)["jwst_0001"].state == "requested"


def _project(store):
    files, deliveries = TableProjection(FILES), TableProjection(DELIVERIES)
    HandlerRunner(store, [files, deliveries]).run_until_idle()
    return read_table(store, files), read_table(store, deliveries)


def test_reconcile_follows_the_archive_forward_only(root):
    settings, store = root
    _confirm(settings, store, "s1", FILES_A)
    _confirm(settings, store, "s2", {"jwst_nircam_flat_0003.fits": b"three\n"})
    for name in ("jwst_0001", "jwst_0002"):
        delivery.publish(settings, store, name)
    d = settings.delivery
    assert reconcile(settings, store).recorded == []  # nothing happened yet
    os.rename(d / "jwst_0001.cat", d / "jwst_0001.cat_proc")
    os.rename(d / "jwst_0002.cat", d / "jwst_0002.cat_err")
    report = reconcile(settings, store)
    assert sorted(report.recorded) == [("delivery:jwst_0001", "DeliveryArchiving"),
                                       ("delivery:jwst_0002", "DeliveryFailed")]
    assert reconcile(settings, store).recorded == []  # a rescan records nothing twice
    os.unlink(d / "jwst_0001.cat_proc")  # archived (the poller's links stay: we remove them)
    report = reconcile(settings, store)
    assert sorted(report.recorded) == sorted(
        [("delivery:jwst_0001", "DeliveryArchived")]
        + [(f"file:{n}", "FileReleased") for n in FILES_A])
    assert not any((d / n).exists() for n in FILES_A)  # links cleaned
    assert (d / "jwst_nircam_flat_0003.fits").exists()  # the failed one keeps its files
    # a .cat reappearing after archived: logged, not recorded
    (d / "jwst_0001.cat").write_text("".join(f"{n}\n" for n in FILES_A))
    report = reconcile(settings, store)
    assert report.recorded == [] and any("never go backwards" in n for n in report.ignored)
    files, deliveries = _project(store)
    assert deliveries[("jwst_0001",)]["state"] == "archived"
    assert deliveries[("jwst_0002",)]["state"] == "failed"
    for name in FILES_A:
        assert files[(name,)]["state"] == "archived" and files[(name,)]["available"]
        assert files[(name,)]["delivery"] == "jwst_0001"
    assert files[("jwst_nircam_flat_0003.fits",)]["state"] == "delivered"
    assert not files[("jwst_nircam_flat_0003.fits",)]["available"]
    assert disk_state(d, "jwst_0002") == "err"


def test_cat_naming_missing_files_is_a_clear_error_and_changes_nothing(root):
    settings, store = root
    _confirm(settings, store, "s1", FILES_A)
    delivery.publish(settings, store, "jwst_0001")
    d = settings.delivery
    # a known delivery whose listed file vanished from the delivery directory
    os.unlink(d / "jwst_nircam_flat_0002.fits")
    report = reconcile(settings, store)
    assert len(report.problems) == 1
    assert "jwst_nircam_flat_0002.fits" in report.problems[0]
    assert "missing from the delivery directory" in report.problems[0]
    assert reconcile(settings, store).recorded == []
    assert len(store.read_all(types=["DeliveryProblemFound"])) == 1  # not twice
    assert delivery.delivery_states(store)["jwst_0001"].state == "created"
    # a stranger's .cat naming files that do not exist: an error, no state anywhere
    (d / "jwst_0500.cat").write_text("no_such_file.fits\nother_missing.fits\n")
    head = store.head()
    report = reconcile(settings, store)
    assert any("jwst_0500.cat" in p and "no_such_file.fits" in p for p in report.problems)
    os.unlink(d / "jwst_0500.cat")
    reconcile(settings, store)
    assert store.head() == head
    assert "jwst_0500" not in delivery.delivery_states(store)


def test_handler_allocates_for_confirms_recorded_without_a_delivery(root):
    settings, store = root
    sids = confirmed_in_bulk(settings, store, 3)
    HandlerRunner(store, [DeliveryRequestHandler(settings)]).run_until_idle()
    names = [_request_of(store, sid) for sid in sids]
    assert names == ["jwst_0001", "jwst_0002", "jwst_0003"]
    assert delivery.pending_deliveries(store) == names


def test_cli_lists_deliveries_and_reconciles(root):
    settings, store = root
    _confirm(settings, store, "s1", FILES_A)
    delivery.publish(settings, store, "jwst_0001")
    os.unlink(settings.delivery / "jwst_0001.cat")
    runner = CliRunner()
    env = {"CRDS_EVENTS_ROOT": str(settings.root)}
    result = runner.invoke(cli, ["delivery", "reconcile"], env=env)
    assert result.exit_code == 0, result.output
    assert "DeliveryArchived" in result.output and "jwst_0001" in result.output
    result = runner.invoke(cli, ["deliveries", "--json"], env=env)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [(r["name"], r["state"], r["submission_id"]) for r in rows] == [
        ("jwst_0001", "archived", "s1")]
    assert set(rows[0]["times"]) == {"requested", "created", "archived"}
    result = runner.invoke(cli, ["deliveries"], env=env)
    assert result.exit_code == 0 and "jwst_0001" in result.output
    assert "archived" in result.output


def test_archive_poller_fates_follow_the_seed_and_resume_cat_proc(tmp_path):
    from fixtures.delivery import REPO, load_poller_module

    poller_module = load_poller_module()
    directory = tmp_path / "delivery"
    directory.mkdir()
    names = [f"jwst_{n:04d}" for n in range(1, 21)]
    for name in names:
        (directory / f"{name}.data").write_text(name)
        (directory / f"{name}.cat").write_text(f"{name}.data\n")
    (directory / ".jwst_0099.cat.tmp").write_text("never touched\n")
    poller = poller_module.ArchivePoller(directory, delay=0.0, error_rate=0.5, seed=11)
    poller.poll_once()
    expected = {n: "failed" if poller.fails(n) else "archived" for n in names}
    assert poller.outcomes == expected and set(expected.values()) == {"failed", "archived"}
    for name, fate in expected.items():
        assert (directory / f"{name}.cat_err").exists() == (fate == "failed")
        assert (directory / f"{name}.data").exists() == (fate == "failed")
        assert not (directory / f"{name}.cat").exists()
    assert (directory / ".jwst_0099.cat.tmp").exists()
    # the same seed under another poller gives the same fates; a .cat_proc left by a
    # stopped poller is finished by the script
    again = poller_module.ArchivePoller(directory, seed=11, error_rate=0.5)
    assert all(again.fails(n) == (f == "failed") for n, f in expected.items())
    (directory / "jwst_0050.cat_proc").write_text("")
    import subprocess

    done = subprocess.run([sys.executable, str(REPO / "ops" / "archive_poller.py"),
                           str(directory), "--delay", "0", "--once"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert not (directory / "jwst_0050.cat_proc").exists()
    bad = subprocess.run([sys.executable, str(REPO / "ops" / "archive_poller.py"),
                          str(directory), "--error-rate", "2"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "error_rate" in bad.stderr
