"""Commands on a PostgreSQL root (``database_url``), end to end: init, users, the
timeline, rebuild, backup refused with the way to back PostgreSQL up, `serve` answering
/health from the PostgreSQL log, stopped by SIGTERM, and every command one clear line when
the database is gone. (tests/cli/test_cli_every_command.py runs each command on both
backends.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

import pytest
from click.testing import CliRunner
from helpers import free_port, wait_for

from crds_events.cli.group import cli
from crds_events.config import load_settings
from crds_events.store import open_store
from crds_events.store.folds import USERS
from crds_events.store.projections import TableProjection, read_table

pytest.importorskip("psycopg", reason="PostgreSQL tests need psycopg (pip install -e '.[test]')")


@pytest.fixture
def pg_root(tmp_path, postgres_url):
    env = {"CRDS_EVENTS_DATABASE_URL": postgres_url}
    root = tmp_path / "pg-root"
    result = CliRunner().invoke(cli, ["init", "--root", str(root)], obj={}, env=env)
    assert result.exit_code == 0, result.output
    return root, env


def _cli(root, env, *args):
    return CliRunner().invoke(cli, [*args, "--root", str(root)], obj={}, env=env)


def test_users_timeline_rebuild_and_backup_on_postgresql(pg_root, tmp_path):
    root, env = pg_root
    secret = tmp_path / "pw"
    secret.write_text("a long enough password\n")
    result = _cli(root, env, "user", "add", "olivia", "--email", "o@example.org",
                  "--role", "operator", "--password-file", str(secret))
    assert result.exit_code == 0, result.output
    result = _cli(root, env, "user", "list")
    assert result.exit_code == 0 and "olivia" in result.output
    result = _cli(root, env, "events", "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["type"] for line in lines] == ["UserAdded"]
    assert "a long enough password" not in result.output

    result = _cli(root, env, "rebuild")
    assert result.exit_code == 0, result.output
    settings = load_settings(root, environ=env)
    assert not settings.db_path.exists()  # nothing went to a SQLite file on the side
    with open_store(settings) as store:
        users = read_table(store, TableProjection(USERS))
    assert users[("olivia",)]["role"] == "operator"

    result = _cli(root, env, "backup", str(tmp_path / "backup"))
    assert result.exit_code == 1 and "pg_dump" in result.output
    assert not (tmp_path / "backup").exists()


def test_serve_answers_from_postgresql_and_stops_on_sigterm(pg_root):
    root, env = pg_root
    port = free_port()
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_EVENTS_")}
    child_env.update(env)
    server = subprocess.Popen(
        [sys.executable, "-m", "crds_events", "serve", "--root", str(root), "--port", str(port)],
        env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def health():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    return json.loads(r.read())
            except OSError:
                return None

        body = wait_for(health, timeout=60)
        assert body["ok"], body
        assert body["handler_lag"] and all(lag == 0 for lag in body["handler_lag"].values())
        # the RPC reads through the per-request PostgreSQL connection
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/json/", method="POST",
            data=json.dumps({"jsonrpc": "1.0", "method": "get_server_info", "params": [],
                             "id": 1}).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            info = json.loads(response.read())
        assert info["error"] is None and "operational_context" in info["result"]
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    assert server.returncode == 0, output


@pytest.mark.parametrize("args", [
    ("deliveries",), ("contexts",), ("bad-files",), ("events",), ("rebuild",),
    ("mail", "list"), ("mail", "send-due"), ("pipeline", "list"), ("remote-context",),
    ("lock", "list"), ("user", "list"), ("repro", "ids", "a.pmap", "b.pmap"),
    ("set-context", "latest", "jwst_0001.pmap", "--reason", "x", "--user", "otto"),
])
def test_every_command_is_one_clear_line_when_the_database_is_gone(tmp_path, args):
    root = tmp_path / "root"
    root.mkdir()
    gone = f"postgresql://crds:s3cret@127.0.0.1:{free_port()}/crds"
    (root / "crds-events.toml").write_text(f'database_url = "{gone}"\n')
    result = CliRunner().invoke(cli, [*args, "--root", str(root)], obj={},
                                env={"CRDS_EVENTS_DATABASE_URL": None})
    assert result.exit_code == 1, result.output
    assert "cannot open the event log at postgresql://crds:***@127.0.0.1" in result.output
    assert "s3cret" not in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
