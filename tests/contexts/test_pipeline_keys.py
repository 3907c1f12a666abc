"""Registered pipelines: keys issued once, rotated and revoked; only a registered key's push
is recorded (by the pipeline's name) and releases held reprocessing, over real HTTP."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixtures.contexts import add_people, seed_generations
from fixtures.rpc import running_server
from helpers import wait_for

from crds_events import events as ev
from crds_events.cli import cli
from crds_events.config import load_settings
from crds_events.contexts.pipelines import (
    PipelineError,
    add_pipeline,
    key_owner,
    list_pipelines,
    revoke_pipeline,
    rotate_pipeline,
)
from crds_events.contexts.pointers import set_context
from crds_events.contexts.remote import remote_contexts
from crds_events.server import parts
from crds_events.store import SQLiteEventStore
from crds_events.store.folds import PIPELINE_KEYS, PIPELINES, replay
from crds_events.store.projections import current_rows, rebuild
from crds_events.store.root import init_root

PIPELINE = "ops"  # the pipeline whose push releases held reprocessing (repro_pipeline)


@pytest.fixture
def root(tmp_path):
    settings = load_settings(tmp_path / "root", {"observatory": "jwst",
                                                 "repro_pipeline": PIPELINE}, environ={})
    init_root(settings)
    store = SQLiteEventStore(settings.db_path)
    add_people(store)
    seed_generations(settings, store, tmp_path, archived=2)  # latest: jwst_0001
    yield settings, store
    store.close()


class Rpc:
    """JSON-RPC over one HTTP connection, the way the crds client calls (POST /json/)."""

    def __init__(self, url: str):
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def __call__(self, method: str, *params) -> dict:
        body = json.dumps({"jsonrpc": "1.0", "method": method, "params": list(params),
                           "id": 1})
        self.conn.request("POST", f"/json/{method}/1/", body)
        response = self.conn.getresponse()
        reply = json.loads(response.read())
        assert response.status == 200 and set(reply) == {"result", "error", "id"}, reply
        return reply

    def push(self, key: object, context: str = "jwst_0002.pmap") -> dict:
        return self("push_remote_context", "jwst", "latest", key, context)

    def close(self) -> None:
        self.conn.close()


def _refused(reply: dict) -> str:
    assert reply["result"] is None and reply["error"], reply
    return reply["error"]["message"]


def test_anonymous_unknown_rotated_and_revoked_keys_are_refused_over_http(root):
    settings, store = root
    old = add_pipeline(store, PIPELINE, actor="otto").key
    new = rotate_pipeline(store, PIPELINE, actor="otto").key
    gone = add_pipeline(store, "retired").key
    revoke_pipeline(store, "retired", actor="otto")
    head = store.head()
    with running_server(settings, threads=2) as url:
        rpc = Rpc(url)
        try:
            for key in ("pipeline", PIPELINE, f"{PIPELINE}-{'x' * 32}", old, gone):
                message = _refused(rpc.push(key))
                assert "key: not the key of a registered pipeline" in message
            for key in (old, gone):  # an issued key, even a dead one, is never echoed
                assert key not in _refused(rpc.push(key))
            assert "1-128 characters" in _refused(rpc.push(""))
            assert "1-128 characters" in _refused(rpc.push(None))
            assert store.head() == head  # nothing appended by any of them
            assert remote_contexts(store, "jwst") == []
            assert rpc.push(new)["result"] == "jwst_0002.pmap"
        finally:
            rpc.close()
    [pushed] = store.read_all(head)
    assert pushed.event == ev.RemoteContextPushed(observatory="jwst", pipeline=PIPELINE,
                                                  context="jwst_0002.pmap")
    assert pushed.actor == PIPELINE and new not in json.dumps(pushed.to_json())


def test_400_anonymous_pushes_append_nothing(root):
    settings, store = root
    head = store.head()
    with running_server(settings, threads=2) as url:
        rpc = Rpc(url)
        try:
            for n in range(400):
                _refused(rpc.push(f"fake-pipeline-{n}", "jwst_0001.pmap"))
        finally:
            rpc.close()
    assert store.head() == head
    assert list_pipelines(store, "jwst") == [] and remote_contexts(store, "jwst") == []


def test_a_registered_push_is_recorded_by_name_and_releases_held_reprocessing(root):
    settings, store = root
    key = add_pipeline(store, PIPELINE, actor="otto").key
    with running_server(settings, threads=2, before=[parts.reprocessing]) as url:
        rpc = Rpc(url)
        try:
            set_context(settings, store, "latest", "jwst_0002.pmap", "forward", "otto")
            assert wait_for(lambda: store.read_all(types=[ev.ReprocessingHeld.type]), 30)
            head = store.head()
            # the pipeline's name is not its key: refused, and nothing is released
            _refused(rpc.push(PIPELINE))
            assert store.head() == head
            assert rpc.push(key)["result"] == "jwst_0002.pmap"
            released = wait_for(lambda: store.read_all(types=[ev.ReprocessingReleased.type]),
                                30)
            assert released and released[0].event.pipeline == PIPELINE
            assert released[0].event.new_context == "jwst_0002.pmap"
            # pipelines push after every sync: a repeat appends nothing
            pushes = store.read_all(types=[ev.RemoteContextPushed.type])
            assert rpc.push(key)["result"] == "jwst_0002.pmap"
            assert store.read_all(types=[ev.RemoteContextPushed.type]) == pushes
        finally:
            rpc.close()
    [pushed] = [r.event for r in store.read_all(types=[ev.RemoteContextPushed.type])]
    assert pushed.pipeline == PIPELINE
    assert list_pipelines(store, "jwst")[0]["last_context"] == "jwst_0002.pmap"


def test_cli_add_rotate_revoke_list(root):
    settings, store = root
    runner = CliRunner()
    base = ["--root", str(settings.root)]

    def run(*args: str):
        return runner.invoke(cli, ["pipeline", *args, *base])

    added = run("add", PIPELINE, "--user", "otto")
    assert added.exit_code == 0, added.output
    key = added.stdout.strip()  # the key alone on stdout; the explanation on stderr
    assert key.startswith(f"{PIPELINE}-") and len(key) == len(PIPELINE) + 33
    assert key_owner(store, key) == PIPELINE and "shown this once" in added.stderr
    assert store.read_all(types=[ev.PipelineRegistered.type])[-1].actor == "otto"
    again = run("add", PIPELINE)
    assert again.exit_code == 1 and "already registered" in again.output

    rotated = run("rotate", PIPELINE)
    assert rotated.exit_code == 0, rotated.output
    new = rotated.stdout.strip()
    assert new != key and key_owner(store, key) is None and key_owner(store, new) == PIPELINE

    listing = run("list")
    assert listing.exit_code == 0 and listing.output.split()[:4] == [
        PIPELINE, "active", "never", "pushed"]
    as_json = run("list", "--json")
    [row] = json.loads(as_json.output)
    assert (row["name"], row["state"], row["last_context"]) == (PIPELINE, "active", None)
    for output in (listing.output, as_json.output):
        assert key not in output and new not in output and "sha256" not in output

    revoked = run("revoke", PIPELINE)
    assert revoked.exit_code == 0 and key_owner(store, new) is None
    assert "revoked" in run("list").output
    twice = run("revoke", PIPELINE)
    assert twice.exit_code == 1 and "revoked" in twice.output
    readded = run("add", PIPELINE)  # a revoked name may be registered again, with a new key
    assert readded.exit_code == 0 and key_owner(store, readded.stdout.strip()) == PIPELINE

    head = store.head()
    for args, message in ((("add", "bad name"), "name 'bad name'"),
                          (("add", "-x"), "No such option"),
                          (("add", "../up"), "name '../up'"),
                          (("rotate", "nobody"), "'nobody': not registered"),
                          (("revoke", "nobody"), "'nobody': not registered")):
        refused = run(*args)
        assert refused.exit_code != 0 and message in refused.output, (args, refused.output)
    assert store.head() == head


def test_cli_on_a_missing_root_is_one_clear_error(tmp_path):
    result = CliRunner().invoke(cli, ["pipeline", "add", PIPELINE, "--root",
                                      str(tmp_path / "gone")])
    assert result.exit_code == 1 and "no event log" in result.output
    assert "Traceback" not in result.output


def test_two_operators_at_once(root):
    """The check and the append are one write transaction: of two adds of one name exactly
    one registers; of two rotations each refuses the key before it, so one key is left."""
    settings, store = root
    for n in range(10):
        name = f"race-{n}"
        outcomes: list = []
        barrier = threading.Barrier(2)

        def add(outcomes=outcomes, name=name, barrier=barrier) -> None:
            with SQLiteEventStore(settings.db_path) as mine:
                barrier.wait()
                try:
                    outcomes.append(add_pipeline(mine, name).key)
                except PipelineError as exc:
                    outcomes.append(exc)

        threads = [threading.Thread(target=add) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        keys = [o for o in outcomes if isinstance(o, str)]
        assert len(keys) == 1 and "already registered" in str(
            next(o for o in outcomes if isinstance(o, PipelineError)))
        assert len(store.read_stream(f"pipeline:{name}")) == 1

        rotated: list[str] = []

        def rotate(name=name, rotated=rotated, barrier=barrier) -> None:
            with SQLiteEventStore(settings.db_path) as mine:
                barrier.wait()
                rotated.append(rotate_pipeline(mine, name).key)

        barrier.reset()
        threads = [threading.Thread(target=rotate) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        valid = [k for k in [*keys, *rotated] if key_owner(store, k) == name]
        assert valid == [rotated[-1]]


_REGISTER_FOREVER = """
import sys
from crds_events.contexts.pipelines import add_pipeline
from crds_events.store import SQLiteEventStore
store = SQLiteEventStore(sys.argv[1])
n = 0
while True:
    issued = add_pipeline(store, f"p{n}")
    print(issued.key, flush=True)
    n += 1
"""


def test_sigkill_while_registering_loses_no_issued_key(root, tmp_path):
    """A key printed was committed; killed mid-way, the log holds at most one more
    registration than were printed, and the projections rebuilt from it agree."""
    settings, store = root
    script = tmp_path / "register.py"
    script.write_text(_REGISTER_FOREVER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.Popen([sys.executable, str(script), str(settings.db_path)],
                             stdout=subprocess.PIPE, text=True, env=env)
    printed = [child.stdout.readline().strip() for _ in range(40)]
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    printed += [line.strip() for line in child.stdout.read().splitlines() if line.strip()]
    child.stdout.close()
    assert all(key_owner(store, key) is not None for key in printed)
    registered = store.read_all(types=[ev.PipelineRegistered.type])
    assert len(printed) <= len(registered) <= len(printed) + 1
    from_log = {fold.table: replay(fold, store.read_all(types=fold.consumes))
                for fold in (PIPELINES, PIPELINE_KEYS)}
    rebuild(store)
    assert {fold.table: current_rows(store, fold)
            for fold in (PIPELINES, PIPELINE_KEYS)} == from_log
    assert len(from_log["pipeline_keys"]) == len(registered)
