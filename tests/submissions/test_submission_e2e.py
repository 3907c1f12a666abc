"""Submissions end to end: a real server (handler runner, ingest observer, submission
worker, e-mail outbox) on a temp root, a real aiosmtpd server, a JWST context built here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from functools import partial
from pathlib import Path

import pytest
from fixtures.submissions import make_flat, seed_root
from helpers import wait_for

from crds_events import events as ev
from crds_events.accounts import locks, users
from crds_events.config import load_settings
from crds_events.contexts.pointers import context_pointers
from crds_events.rules.bestrefs import load_context
from crds_events.server import parts
from crds_events.server.core import Server
from crds_events.store import open_store
from crds_events.store.filestore import FileStore
from crds_events.store.root import init_root
from crds_events.submissions import review
from crds_events.submissions.dropbox import drop_submission

REPO = Path(__file__).resolve().parents[2]
REDCAT = "redcat@example.org"
FIELDS = {"deliverer": "Jane Doe", "instrument": "NIRCAM", "description": "New flats",
          "change_level": "MODERATE"}


def _make_root(tmp_path: Path, smtp_port: int, *, lock_timeout: float = 3600.0,
               database_url: str = ""):
    # Written to the root's config file, so that a `serve` subprocess sees the same settings.
    root = tmp_path / "root"
    root.mkdir()
    log = f'database_url = "{database_url}"' if database_url else ""
    (root / "crds-events.toml").write_text(textwrap.dedent(f"""
        {log}
        observatory = "jwst"
        lock_timeout = {lock_timeout}
        [smtp]
        host = "127.0.0.1"
        port = {smtp_port}
        from = "crds@example.org"
        [recipients]
        redcat = ["{REDCAT}"]
        [watcher]
        mode = "native"
    """))
    settings = load_settings(root, environ={})
    init_root(settings)
    seed_root(settings, tmp_path / "context", ["nircam", "miri"])
    store = open_store(settings)
    users.add_user(store, "jane", "jane@example.org")
    users.add_user(store, "bob", "bob@example.org")
    store.close()
    return settings


@pytest.fixture
def server_factory(tmp_path, smtp):
    servers = []

    def start(**options):
        settings = _make_root(tmp_path, smtp.port, **options)
        server = Server(settings, [partial(parts.mail, poll_interval=0.1),
                                   partial(parts.submissions, settle=0.1, scan_interval=2.0)],
                        poll_interval=0.05)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _types(store, sid: str) -> list[str]:
    return [r.type for r in store.read_stream(ev.submission_stream(sid))]


def _submit(settings, tmp_path: Path, user: str, files: dict, **fields) -> str:
    paths = []
    for name, kwargs in files.items():
        paths.append(make_flat(tmp_path / "made" / user / name, **kwargs))
    return drop_submission(settings, user, paths, {**FIELDS, **fields})


def test_good_submission_ready_confirm_and_emails(server_factory, smtp, tmp_path):
    server = server_factory()
    settings, store = server.settings, server.store
    sid = _submit(settings, tmp_path, "jane", {
        "flat_a.fits": {"filter_": "F200W", "seed": 1},
        "flat_b.fits": {"filter_": "F444W", "seed": 2},
    }, other_emails=["pi@example.org"])
    progress: list[str] = []
    outcome = review.follow(store, sid, timeout=60, on_progress=progress.append)
    assert isinstance(outcome, ev.SubmissionReady), outcome
    assert any(line.startswith(">> Certifying flat_a.fits") for line in progress)
    assert outcome.new_context == "jwst_0002.pmap"
    assert set(outcome.generated) == {"jwst_0002.pmap", "jwst_nircam_0002.imap",
                                      "jwst_nircam_flat_0002.rmap"}
    refs = sorted(n for n in outcome.files if n.endswith(".fits"))
    assert refs == ["jwst_nircam_flat_0002.fits", "jwst_nircam_flat_0003.fits"]
    # nothing in the store or the catalog before confirm
    files = FileStore.from_settings(settings)
    assert not any(files.exists(name) for name in outcome.files)
    assert not [r for r in store.read_all(types=["FileCataloged"])
                if r.data["submission_id"] == sid]

    decision = review.confirm(settings, store, sid, "jane")
    assert isinstance(decision, ev.SubmissionConfirmed)
    pointers = context_pointers(store, "jwst")
    assert pointers == {"latest": "jwst_0001.pmap", "edit": "jwst_0002.pmap"}
    cataloged = {r.data["name"]: r.event for r in store.read_all(types=["FileCataloged"])
                 if r.data["submission_id"] == sid}
    assert set(cataloged) == set(outcome.files)
    for name, event in cataloged.items():
        assert files.sha1_of(name) == event.sha1
    assert locks.current_lock(store, "nircam") is None
    assert not (settings.ingest / "jane" / sid).exists()  # its drop directory consumed

    # the confirmed edit context gives the new flats as best references (independent check)
    context = load_context(files.directory_for("mapping") / "jwst_0002.pmap")
    header = {"META.INSTRUMENT.NAME": "NIRCAM", "META.INSTRUMENT.DETECTOR": "NRCA1",
              "META.OBSERVATION.DATE": "2025-01-01", "META.OBSERVATION.TIME": "00:00:00"}
    by_filter = {f: context.best_references({**header, "META.INSTRUMENT.FILTER": f},
                                            ["flat"])["flat"] for f in ("F200W", "F444W")}
    started = store.read_stream(ev.submission_stream(sid))[0].event
    assert started.files == ("flat_a.fits", "flat_b.fits")
    certified = {r.event.original_name: r.event.name for r in store.read_all(
        types=["FileCertified"]) if r.data["submission_id"] == sid}
    assert by_filter == {"F200W": certified["flat_a.fits"], "F444W": certified["flat_b.fits"]}

    # the right e-mails arrive: STARTED, READY, CONFIRMED to jane, the PI and ReDCaT
    for kind in ("STARTED", "READY", "CONFIRMED"):
        found = wait_for(lambda kind=kind: smtp.find(sid, kind), 20)
        assert found, f"no {kind} e-mail; got {smtp.subjects()}"
        rcpts, message = found
        assert {"jane@example.org", "pi@example.org", REDCAT} <= set(rcpts)
    _, ready = smtp.find(sid, "READY")
    assert "jwst_0002.pmap" in ready.get_content()


def test_bad_file_duplicate_and_cancel(server_factory, smtp, tmp_path):
    server = server_factory()
    settings, store = server.settings, server.store
    # a flat with a 3-D SCI array: certify error, BAD FILES with the reason in the e-mail
    bad = _submit(settings, tmp_path, "jane", {"bad.fits": {"bad": True, "seed": 5}})
    outcome = review.follow(store, bad, timeout=60)
    assert isinstance(outcome, ev.SubmissionRejected), outcome
    assert "bad.fits" in outcome.reason and "SCI" in outcome.reason
    found = wait_for(lambda: smtp.find(bad, "BAD FILES"), 20)
    assert found, smtp.subjects()
    assert "SCI" in found[1].get_content()

    # a good one, cancelled: store unchanged, uploads kept, lock released
    store_before = sorted(p.name for p in Path(settings.store).rglob("*") if p.is_file())
    good = _submit(settings, tmp_path, "jane", {"good.fits": {"seed": 6}})
    assert isinstance(review.follow(store, good, timeout=60), ev.SubmissionReady)
    review.cancel(settings, store, good, "jane", reason="changed my mind")
    assert sorted(p.name for p in Path(settings.store).rglob("*") if p.is_file()) == \
        store_before
    assert (settings.ingest / "jane" / good / "good.fits").is_file()
    assert locks.current_lock(store, "nircam") is None
    assert context_pointers(store, "jwst")["edit"] == "jwst_0001.pmap"
    with pytest.raises(review.ReviewError, match="cancelled"):
        review.confirm(settings, store, good, "jane")

    # the same bytes again after a confirmed submission: rejected as a duplicate
    first = _submit(settings, tmp_path, "jane", {"dup.fits": {"seed": 7}})
    assert isinstance(review.follow(store, first, timeout=60), ev.SubmissionReady)
    review.confirm(settings, store, first, "jane")
    again = _submit(settings, tmp_path, "jane", {"dup_again.fits": {"seed": 7}})
    outcome = review.follow(store, again, timeout=60)
    assert isinstance(outcome, ev.SubmissionRejected)
    assert outcome.duplicates and "bit-identical" in outcome.reason
    assert wait_for(lambda: smtp.find(again, "BAD FILES"), 20)


def test_lock_refuses_second_user_who_can_force_after_expiry(server_factory, smtp, tmp_path):
    server = server_factory(lock_timeout=3.0)
    settings, store = server.settings, server.store
    sid = _submit(settings, tmp_path, "jane", {"j.fits": {"seed": 11}})
    assert isinstance(review.follow(store, sid, timeout=60), ev.SubmissionReady)
    lock = locks.current_lock(store, "nircam")
    assert lock.owner == "jane"

    refused = _submit(settings, tmp_path, "bob", {"b.fits": {"seed": 12}})
    outcome = review.follow(store, refused, timeout=30)
    assert isinstance(outcome, ev.SubmissionRejected)
    assert "locked by 'jane'" in outcome.reason
    assert locks.format_time(lock.expires_at) in outcome.reason
    with pytest.raises(review.ReviewError, match="still holds"):
        review.force(settings, store, sid, "bob")
    with pytest.raises(review.ReviewError, match="belongs to jane"):
        review.confirm(settings, store, sid, "bob")

    assert wait_for(lambda: locks.current_lock(store, "nircam") is None, 10)
    forced = review.force(settings, store, sid, "bob")
    assert isinstance(forced, ev.SubmissionForced) and forced.lock_owner == "jane"
    assert context_pointers(store, "jwst")["edit"] == forced.new_context
    found = wait_for(lambda: smtp.find(sid, "FORCED"), 20)
    assert found and "bob@example.org" in found[0] and "jane@example.org" in found[0]


def _serve(settings) -> subprocess.Popen:
    """`crds-events serve` itself, as an operator runs it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "CRDS_EVENTS_ROOT": str(settings.root)}
    return subprocess.Popen([sys.executable, "-m", "crds_events", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_sigkill_mid_processing_then_restart_completes_cleanly(tmp_path, smtp, database_url):
    settings = _make_root(tmp_path, smtp.port, database_url=database_url)
    paths = [make_flat(tmp_path / "made" / f"f{i}.fits", filter_=f, seed=20 + i)
             for i, f in enumerate(["F090W", "F115W", "F150W", "F200W", "F277W", "F356W"])]
    sid = drop_submission(settings, "jane", paths, FIELDS)
    store = open_store(settings)
    try:
        first = _serve(settings)
        try:
            # killed as soon as processing has visibly begun (and before its outcome)
            began = wait_for(lambda: ev.SubmissionProgress.type in _types(store, sid), 60)
            assert began, "processing never started"
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        killed_mid = not any(t in _types(store, sid) for t in ("SubmissionReady",
                                                                  "SubmissionRejected",
                                                                  "SubmissionFailed"))
        assert killed_mid, "the kill came too late to test a crash mid-processing"
        second = _serve(settings)
        try:
            outcome = review.follow(store, sid, timeout=60)
            assert isinstance(outcome, ev.SubmissionReady), outcome
            assert wait_for(lambda: smtp.find(sid, "READY"), 20), smtp.subjects()
            time.sleep(1.0)  # let anything that would duplicate happen
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0, second.stderr.read().decode()[-2000:]
        types = Counter(_types(store, sid))
        assert types["SubmissionStarted"] == 1 and types["SubmissionReady"] == 1
        assert types["FileCertified"] == len(outcome.files)
        progress = [r.event.message for r in store.read_stream(ev.submission_stream(sid))
                    if r.type == "SubmissionProgress"]
        assert len(progress) == len(set(progress)), "a progress line was recorded twice"
        queued = Counter(r.data["kind"] for r in store.read_all(types=["EmailQueued"])
                         if r.data["about"] == ev.submission_stream(sid))
        assert queued == {"STARTED": 1, "READY": 1}
        # e-mails: at least once, and any repeat carries the same Message-ID
        ids = [m["Message-ID"] for _, m in smtp.messages if sid in str(m["Subject"])]
        assert len(set(ids)) == 2
    finally:
        store.close()


def test_cli_submit_monitor_show_confirm(server_factory, tmp_path):
    from click.testing import CliRunner

    from crds_events.cli import cli

    server = server_factory()
    root = str(server.settings.root)
    flat = make_flat(tmp_path / "made" / "cli_flat.fits", filter_="F150W", seed=31)
    runner = CliRunner()
    result = runner.invoke(cli, ["submit", str(flat), "--instrument", "NIRCAM",
                                 "--description", "from the CLI", "--monitor",
                                 "--user", "jane", "--root", root, "--timeout", "60"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    sid = lines[0].split()[1].rstrip(":")
    assert any(line.startswith(">> Certifying cli_flat.fits") for line in lines)
    assert lines[-1] == f"submission {sid}: READY (new context jwst_0002.pmap)"

    shown = runner.invoke(cli, ["submission", "show", sid, "--root", root])
    assert shown.exit_code == 0, shown.output
    assert f"submission {sid}: READY (NIRCAM, by jane)" in shown.output
    assert "(cli_flat.fits): OK" in shown.output
    assert "new context: jwst_0002.pmap" in shown.output

    refused = runner.invoke(cli, ["submission", "confirm", sid, "--user", "bob", "--root", root])
    assert refused.exit_code != 0 and "belongs to jane" in refused.output
    done = runner.invoke(cli, ["submission", "confirm", sid, "--user", "jane", "--root", root])
    assert done.exit_code == 0, done.output
    assert "edit context is now jwst_0002.pmap" in done.output

    bad = make_flat(tmp_path / "made" / "cli_bad.fits", bad=True, seed=32)
    result = runner.invoke(cli, ["submit", str(bad), "--instrument", "NIRCAM",
                                 "--description", "bad", "--wait", "--user", "jane",
                                 "--root", root, "--timeout", "60"])
    assert result.exit_code == 1
    assert ": BAD FILES: " in result.output.splitlines()[-1]


def test_bad_manifest_gets_an_error_email_naming_the_field(server_factory, smtp, tmp_path):
    import yaml

    server = server_factory()
    settings, store = server.settings, server.store
    drop = settings.ingest / "jane"
    drop.mkdir(parents=True, exist_ok=True)
    make_flat(drop / "flat.fits", seed=41)
    (drop / ".submission.yaml.tmp").write_text(yaml.safe_dump(
        {"deliverer": "Jane", "instrument": "NIRCAM", "change_level": "HUGE"}))
    os.replace(drop / ".submission.yaml.tmp", drop / "submission.yaml")
    rejected = wait_for(lambda: store.read_all(types=["SubmissionRejected"]), 30)
    assert rejected, "no SubmissionRejected for the bad manifest"
    [record] = rejected
    assert record.actor == "jane"
    assert "'description': missing" in record.event.reason
    assert "'change_level'" in record.event.reason
    assert store.read_all(types=["SubmissionStarted"]) == []
    found = wait_for(lambda: smtp.find(record.event.submission_id, "BAD FILES"), 20)
    assert found, smtp.subjects()
    assert "jane@example.org" in found[0]
    assert "'description': missing" in found[1].get_content()


def test_failed_confirm_leaves_log_and_store_as_before(server_factory, tmp_path):
    server = server_factory()
    settings, store = server.settings, server.store
    sid = _submit(settings, tmp_path, "jane", {"x.fits": {"seed": 51}})
    ready = review.follow(store, sid, timeout=60)
    assert isinstance(ready, ev.SubmissionReady)
    # someone else's bytes already sit under one of the new names: the store refuses them
    files = FileStore.from_settings(settings)
    files.put(b"not the generated pmap", ready.new_context)
    before = sorted(p.name for p in Path(settings.store).rglob("*") if p.is_file())
    head = store.head()
    with pytest.raises(review.ReviewError, match="already stored with different content"):
        review.confirm(settings, store, sid, "jane")
    assert sorted(p.name for p in Path(settings.store).rglob("*") if p.is_file()) == before
    assert [r.type for r in store.read_all(head)
            if not r.type.startswith("Email")] == []
    assert review.load(store, sid).state == "ready"
    assert context_pointers(store, "jwst")["edit"] == "jwst_0001.pmap"
    assert locks.current_lock(store, "nircam").owner == "jane"
