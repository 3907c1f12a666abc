"""Small hostile files are contained: alias bombs and slow files are BAD FILES with the
reason while another user's submission reaches READY; no event exceeds 64 KB; an alias
manifest is refused in one short line; a submission that kills its server twice is failed;
SIGTERM stops `crds-events serve` within 10 s while a file is being certified.

Real servers on temp roots, real drop directories and watchers, `crds-events serve` as a
subprocess for the kill and signal tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
from fixtures.submissions import make_flat, seed_root
from helpers import wait_for

from crds_events import events as ev
from crds_events.accounts import users
from crds_events.config import load_settings
from crds_events.server import parts
from crds_events.server.core import Server
from crds_events.store import SQLiteEventStore
from crds_events.store.interface import MAX_EVENT_BYTES
from crds_events.store.records import dumps
from crds_events.store.root import init_root
from crds_events.submissions import review
from crds_events.submissions.contained import CertifyLimits
from crds_events.submissions.dropbox import drop_submission

REPO = Path(__file__).resolve().parents[2]
NIRCAM = {"deliverer": "Jane Doe", "instrument": "NIRCAM", "description": "hostile",
          "change_level": "MODERATE"}
MIRI = {**NIRCAM, "deliverer": "Bob", "instrument": "MIRI", "description": "honest flat"}


def _bomb_yaml(depth: int = 7) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, depth + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def yaml_bomb(path: Path) -> Path:
    """A ~500-byte YAML reference that expands to 10**7 nodes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("meta:\n  instrument: {name: NIRCAM}\n  reftype: FLAT\n" + _bomb_yaml())
    return path


def asdf_bomb(path: Path) -> Path:
    """An ASDF file written by asdf, its tree then given the alias bomb."""
    import asdf

    path.parent.mkdir(parents=True, exist_ok=True)
    asdf.AsdfFile({"meta": {"instrument": {"name": "NIRCAM"}, "reftype": "FLAT"}}).write_to(path)
    head, _, tail = path.read_text().partition("\n...\n")
    path.write_text(head + "\n" + _bomb_yaml().rstrip("\n") + "\n...\n" + tail)
    return path


def slow_yaml(path: Path, items: int) -> Path:
    """A legal YAML reference that takes the pure-Python YAML parser a long time (about
    a minute for 900,000 items): no alias, within every size limit; only time stops it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("meta:\n  instrument: {name: NIRCAM}\n  reftype: FLAT\nbig: ["
                    + ",".join(["1"] * items) + "]\n")
    return path


def _root(tmp_path: Path):
    root = tmp_path / "root"
    root.mkdir()
    # In the root's config file, so that a `serve` subprocess sees the same settings.
    (root / "crds-events.toml").write_text('observatory = "jwst"\n[watcher]\nmode = "native"\n')
    settings = load_settings(root, environ={})
    init_root(settings)
    seed_root(settings, tmp_path / "context", ["nircam", "miri"])
    with SQLiteEventStore(settings.db_path) as store:
        users.add_user(store, "jane", "jane@example.org")
        users.add_user(store, "bob", "bob@example.org")
    return settings


def _largest_event(store) -> int:
    return max(len(dumps(record.data).encode("utf-8")) for record in store.iter_all())


@pytest.fixture
def running(tmp_path):
    settings = _root(tmp_path)
    server = Server(settings, [partial(parts.submissions, settle=0.1, scan_interval=2.0,
                                       certify_limits=CertifyLimits(seconds=4))],
                    poll_interval=0.05)
    server.start()
    try:
        yield settings, server.store
    finally:
        server.stop()


def test_bombs_are_bad_files_while_another_user_gets_ready(running, tmp_path):
    settings, store = running
    made = tmp_path / "made"
    started = time.monotonic()
    hostile = drop_submission(settings, "jane", [
        asdf_bomb(made / "bomb.asdf"), yaml_bomb(made / "bomb.yaml"),
        slow_yaml(made / "slow.yaml", 400_000)], NIRCAM)
    honest = drop_submission(settings, "bob", [
        make_flat(made / "bob" / "flat.fits", "miri", seed=3)], MIRI)

    ready = review.follow(store, honest, timeout=60)
    assert isinstance(ready, ev.SubmissionReady), ready
    rejected = review.follow(store, hostile, timeout=60)
    assert isinstance(rejected, ev.SubmissionRejected), rejected
    assert time.monotonic() - started < 60
    # bob's READY did not wait for jane's slow file (a worker per instrument)
    positions = {r.type: r.position for r in store.read_all(
        types=[ev.SubmissionReady.type, ev.SubmissionRejected.type])}
    assert positions[ev.SubmissionReady.type] < positions[ev.SubmissionRejected.type]

    assert set(rejected.bad_files) == {"bomb.asdf", "bomb.yaml", "slow.yaml"}
    summaries = {r.event.original_name: r.event.summary for r in store.read_all(
        types=[ev.FileCertified.type]) if r.data["submission_id"] == hostile}
    assert "expands to more than" in summaries["bomb.asdf"]
    assert "expands to more than" in summaries["bomb.yaml"]
    assert "certify of slow.yaml exceeded 4 s" in summaries["slow.yaml"]
    assert _largest_event(store) <= MAX_EVENT_BYTES


def test_an_alias_manifest_is_rejected_in_a_short_message(running):
    settings, store = running
    drop = settings.ingest / "jane" / ".staging-by-hand"
    drop.mkdir(parents=True)
    make_flat(drop / "flat.fits", seed=9)
    text = ("deliverer: Jane Doe\ninstrument: NIRCAM\nchange_level: MODERATE\n"
            + _bomb_yaml(7) + "description: *a7\n")
    assert len(text) < 600
    (drop / "submission.yaml").write_text(text)
    os.rename(drop, settings.ingest / "jane" / "by-hand")
    found = wait_for(lambda: store.read_all(types=[ev.SubmissionRejected.type]), 30)
    assert found, "the manifest was never judged"
    reason = found[0].event.reason
    assert "YAML aliases are not allowed here" in reason and len(reason) < 400
    assert _largest_event(store) < 4096


# --- `crds-events serve`: killed twice, and SIGTERM ---------------------------------------


def _serve(settings) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CRDS_EVENTS_ROOT": str(settings.root)}
    # port 0: a free port (engineers' servers share this machine)
    return subprocess.Popen([sys.executable, "-m", "crds_events", "serve", "--port", "0"],
                            env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _steps(store, sid: str) -> list[str]:
    return [r.data.get("step", "") for r in store.read_stream(ev.submission_stream(sid))
            if r.type == ev.SubmissionProgress.type]


def _certifying(store, sid: str) -> bool:
    return any(str(r.data.get("message", "")).startswith(">> Certifying slow.yaml")
               for r in store.read_stream(ev.submission_stream(sid)))


def _outcome(store, sid: str):
    for record in store.read_stream(ev.submission_stream(sid)):
        if record.type in ("SubmissionReady", "SubmissionRejected", "SubmissionFailed"):
            return record.event
    return None


def _slow_submission(tmp_path):
    settings = _root(tmp_path)
    # about a minute of parsing: far longer than any wait below; killed each time
    path = slow_yaml(tmp_path / "made" / "slow.yaml", 900_000)
    return settings, drop_submission(settings, "jane", [path], NIRCAM)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.mark.slow
def test_a_submission_that_kills_its_server_twice_is_failed(tmp_path):
    settings, sid = _slow_submission(tmp_path)
    with SQLiteEventStore(settings.db_path) as store:
        for run in (1, 2):
            server = _serve(settings)
            try:
                # killed while certify is running (the run is recorded before any work)
                assert wait_for(lambda run=run: _steps(store, sid).count("attempt") == run
                                and _certifying(store, sid), 60)
                time.sleep(0.5)
                server.send_signal(signal.SIGKILL)
                server.wait(10)
            finally:
                _stop(server)
            assert _outcome(store, sid) is None, "the kill came too late"
        server = _serve(settings)
        try:
            outcome = wait_for(lambda: _outcome(store, sid), 60)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
            _stop(server)
        assert isinstance(outcome, ev.SubmissionFailed), outcome
        assert "crashed its worker twice" in outcome.error
        assert _steps(store, sid).count("attempt") == 2  # the third start did not run it


@pytest.mark.slow
def test_sigterm_stops_serve_within_10_s_while_a_file_is_certified(tmp_path):
    settings, sid = _slow_submission(tmp_path)
    with SQLiteEventStore(settings.db_path) as store:
        server = _serve(settings)
        try:
            assert wait_for(lambda: _certifying(store, sid), 60), "certify never started"
            time.sleep(1.0)  # well inside the parse
            sent = time.monotonic()
            server.send_signal(signal.SIGTERM)
            code = server.wait(30)
            took = time.monotonic() - sent
        finally:
            _stop(server)
        assert took < 10, f"SIGTERM took {took:.1f} s"
        assert code == 0, server.stderr.read().decode()[-2000:]
        # interrupted, not judged and not counted as a crash: pending for the next start
        assert _outcome(store, sid) is None
        assert [step for step in _steps(store, sid) if step] == ["attempt", "interrupted"]
