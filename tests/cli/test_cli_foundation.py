"""The foundation commands: init, events, rebuild, serve (one real process, SIGTERM)."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request

import pytest
from click.testing import CliRunner

from crds_events import events as ev
from crds_events.cli import cli
from crds_events.store import SQLiteEventStore
from crds_events.store.handler import get_checkpoint


@pytest.fixture
def run(monkeypatch):
    monkeypatch.delenv("CRDS_EVENTS_ROOT", raising=False)
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(cli, [str(a) for a in args], obj={}, catch_exceptions=False)

    return invoke


@pytest.fixture
def root(tmp_path, run):
    root = tmp_path / "srv"
    assert run("init", "--root", root, "--observatory", "hst").exit_code == 0
    return root


def seed(root):
    store = SQLiteEventStore(root / "events.db")
    try:
        store.record(ev.SubmissionStarted("1", "hst", "jdoe", "acs", "bias", ("b.fits",)),
                     meta={"actor": "jdoe"})
        store.record(ev.ContextSet("hst", "latest", "hst_0001.pmap"))
        store.record(ev.ContextSet("hst", "latest", "hst_0002.pmap", "hst_0001.pmap"))
    finally:
        store.close()


def test_init_twice_is_harmless(tmp_path, run):
    first = run("init", "--root", tmp_path / "r", "--observatory", "jwst")
    assert first.exit_code == 0 and "created" in first.output and "ready for jwst" in first.output
    second = run("init", "--root", tmp_path / "r")
    assert second.exit_code == 0 and "nothing to do" in second.output
    clash = run("init", "--root", tmp_path / "r", "--observatory", "hst")
    assert clash.exit_code == 1 and "set up for observatory 'jwst'" in clash.output
    assert "Traceback" not in clash.output


def test_events_timeline_and_json(root, run):
    seed(root)
    text = run("events", "--root", root)
    assert text.exit_code == 0
    lines = text.output.splitlines()
    assert len(lines) == 3 and "SubmissionStarted by jdoe" in lines[0]
    assert "context:hst v2" in lines[2] and "hst_0002.pmap" in lines[2]
    rows = [json.loads(line) for line in run("events", "--root", root, "--json").output.splitlines()]
    assert [r["position"] for r in rows] == [1, 2, 3]
    assert rows[2]["data"]["previous"] == "hst_0001.pmap" and rows[0]["meta"] == {"actor": "jdoe"}
    only = run("events", "--root", root, "--json", "--type", "ContextSet", "--after", 2)
    assert [json.loads(line)["position"] for line in only.output.splitlines()] == [3]
    limited = run("events", "--root", root, "--stream", "context:hst", "--limit", 1)
    assert len(limited.output.splitlines()) == 1 and "hst_0001.pmap" in limited.output
    bad = run("events", "--root", root, "--type", "Nonsense")
    assert bad.exit_code == 1 and "unknown event type(s): Nonsense" in bad.output


def test_events_never_prints_a_secret_but_keeps_personal_data(root, run):
    from fixtures.visibility import PERSONAL_MARK, SECRET_MARK, instance

    store = SQLiteEventStore(root / "events.db")
    try:
        for name, cls in ev.event_types().items():
            if not name.startswith("_"):
                store.record(instance(cls))
    finally:
        store.close()
    secret_names = {f for cls in ev.event_types().values() for f in cls.secret_fields}
    for args in ((), ("--json",)):
        result = run("events", "--root", root, *args)
        assert result.exit_code == 0
        assert SECRET_MARK not in result.output and "scrypt$" not in result.output
        assert not [n for n in secret_names if n in result.output]
    rows = [json.loads(line) for line in result.output.splitlines()]
    added = next(r for r in rows if r["type"] == "UserAdded")
    assert PERSONAL_MARK in added["data"]["email"]  # the operator's view is complete


def test_rebuild(root, run):
    seed(root)
    result = run("rebuild", "--root", root)
    assert result.exit_code == 0 and "from 3 events" in result.output
    conn = sqlite3.connect(root / "events.db")
    try:
        assert conn.execute("SELECT context, previous FROM context_pointers").fetchall() == [
            ("hst_0002.pmap", "hst_0001.pmap")]
        assert conn.execute("SELECT state FROM submissions").fetchall() == [("started",)]
    finally:
        conn.close()


def test_commands_on_a_missing_root_say_so(tmp_path, run):
    for command in ("events", "rebuild", "serve"):
        result = run(command, "--root", tmp_path / "nowhere")
        assert result.exit_code == 1
        assert "no event log" in result.output and "crds-events init" in result.output


def test_serve_runs_handlers_and_stops_on_sigterm(root):
    seed(root)
    server = subprocess.Popen(
        [sys.executable, "-m", "crds_events", "serve", "--root", str(root), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        announced = server.stdout.readline()
        assert "serving hst" in announced
        url = re.search(r"web app on (http://127\.0\.0\.1:\d+)", announced).group(1)
        with urllib.request.urlopen(f"{url}/health", timeout=10) as reply:
            assert json.load(reply)["components"]["handlers"] is True
        store = SQLiteEventStore(root / "events.db")
        try:
            # recorded while it runs (other handlers may append reactions of their own)
            position = store.record(ev.ContextSet("hst", "edit", "hst_0003.pmap")).position
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and get_checkpoint(
                    store, "projection:context_pointers") < position:
                time.sleep(0.05)
            assert get_checkpoint(store, "projection:context_pointers") >= position
        finally:
            store.close()
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=20)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == 0, err
    assert "stopped cleanly" in out and "Traceback" not in err
    conn = sqlite3.connect(root / "events.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT context FROM context_pointers WHERE kind = 'edit'"
                            ).fetchall() == [("hst_0003.pmap",)]
    finally:
        conn.close()
