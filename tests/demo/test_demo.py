"""`crds-events demo --exit-after-script` in a subprocess, twice, then the root inspected.

The final state is read from the root the demo leaves behind (its log, its file store, its
maildir), not from the demo's output: a new latest context one serial past the previous
one, its files archived and available, a DPAS e-mail naming the context change in the
maildir, addressed to the configured DPAS recipients.

The lifecycle test runs on both backends (`database_url` of tests/conftest.py): on
PostgreSQL the demo is given ``CRDS_EVENTS_DATABASE_URL`` and the log is read back there.
"""

from __future__ import annotations

import email
import io
import os
import subprocess
import sys
from email import policy
from pathlib import Path

import pytest
from rich.console import Console

from crds_events import events as ev
from crds_events.config import load_settings
from crds_events.contexts.pointers import get_context
from crds_events.store import open_store
from crds_events.store.folds import FILES
from crds_events.store.projections import TableProjection, read_table

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "crds_events"]


def _run_demo(root: Path, *extra: str, database_url: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_EVENTS_")}
    env["COLUMNS"] = "160"
    if database_url:
        env["CRDS_EVENTS_DATABASE_URL"] = database_url
    return subprocess.run(
        [*CLI, "demo", "--root", str(root), "--port", "0", "--exit-after-script",
         "--datasets", "4000", "--instruments", "2", "--types", "6", "--step-timeout", "40",
         *extra],
        capture_output=True, text=True, timeout=150, env=env)


def _dpas_mails(settings, new_context: str) -> list:
    found = []
    for path in sorted((settings.maildir / "new").iterdir()):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        if "dpas@demo.invalid" in str(message["To"]) and new_context in str(message["Subject"]):
            found.append(message)
    return found


def _check_state(settings, previous: str, expected: str) -> None:
    store = open_store(settings)
    try:
        assert get_context(store, "latest") == expected
        sets = [r.event for r in store.iter_all() if r.type == ev.ContextSet.type
                and r.event.kind == "latest"]
        assert (sets[-1].previous, sets[-1].context) == (previous, expected)
        files = read_table(store, TableProjection(FILES))
        confirmed = [r.event for r in store.iter_all() if r.type == ev.SubmissionConfirmed.type]
        new_files = set(confirmed[-1].files)
        assert expected in new_files and any(n.endswith(".fits") for n in new_files)
        for name in new_files:
            row = files[(name,)]
            assert row["state"] == "archived" and row["available"], (name, row)
        released = [r.event for r in store.iter_all() if r.type == ev.ReprocessingReleased.type]
        assert released[-1].new_context == expected
    finally:
        store.close()
    mails = _dpas_mails(settings, expected)
    assert len(mails) == 1
    body = mails[0].get_body(preferencelist=("plain",)).get_content()
    assert expected in body and previous in body


def test_demo_runs_the_lifecycle_twice(tmp_path, database_url):
    root = tmp_path / "demo"
    first = _run_demo(root, database_url=database_url)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "lifecycle complete" in first.stdout
    settings = load_settings(root, environ={"CRDS_EVENTS_DATABASE_URL": database_url}
                             if database_url else {})
    if database_url:  # the log is in PostgreSQL, nothing under the root
        assert not settings.db_path.exists()
    _check_state(settings, "jwst_0001.pmap", "jwst_0002.pmap")

    second = _run_demo(root, database_url=database_url)  # reuses the root: the next context
    assert second.returncode == 0, second.stdout + second.stderr
    assert "reusing" in second.stdout
    _check_state(settings, "jwst_0002.pmap", "jwst_0003.pmap")


def test_demo_fails_cleanly_without_its_poller(tmp_path, monkeypatch):
    """A step that cannot happen makes --exit-after-script exit non-zero, naming the step
    (here the archive never takes the delivery: the poller is replaced by a no-op)."""
    from crds_events.demo import scripted as demo

    class IdlePoller:
        def __init__(self, *args, **kwargs):
            pass

        def start(self):
            pass

        def stop(self):
            pass

    monkeypatch.setattr(demo, "load_archive_poller", lambda: IdlePoller)
    out = io.StringIO()
    status = demo.run_demo(demo.DemoOptions(root=tmp_path / "d", port=0, exit_after_script=True,
                                            datasets=200, instruments=1, types=2,
                                            step_timeout=3),
                           Console(file=out, width=200))
    text = out.getvalue()
    assert status == 1, text
    assert "DeliveryArchiving: not recorded within 3 s" in text
    assert "stopped cleanly" in text
