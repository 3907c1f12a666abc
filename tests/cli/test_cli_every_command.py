"""Every `crds-events` command that reads or writes a root's log, run through the CLI on
both backends (``database_url``: the SQLite default, then a PostgreSQL log): the operator's
commands on their own, then those that need a running server (submit and review, the
deliveries it makes, sync and list against its web app)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixtures.contexts import write_generation
from fixtures.submissions import make_flat
from helpers import wait_for

from crds_events.cli.group import cli
from crds_events.config import load_settings
from crds_events.server import parts
from crds_events.server.core import Server
from crds_events.server.wsgi import WebServer
from crds_events.store import open_store
from crds_events.web import create_app

# a NIRCAM exposure matched by the flats of generations 1 and 2 (NRCA1, F070W, after 2022)
NIRCAM = {"META.INSTRUMENT.NAME": "NIRCAM", "META.INSTRUMENT.DETECTOR": "NRCA1",
          "META.INSTRUMENT.FILTER": "F070W", "META.OBSERVATION.DATE": "2023-05-01",
          "META.OBSERVATION.TIME": "10:00:00"}


class Root:
    """A JWST root on ``database_url`` with its CLI: ``run(*args)`` asserts success."""

    def __init__(self, path: Path, database_url: str):
        self.path = path
        path.mkdir()
        # in the config file, so the in-process server and every command see the same log
        config = 'observatory = "jwst"\n[watcher]\nmode = "native"\n'
        if database_url:
            config = f'database_url = "{database_url}"\n' + config
        (path / "crds-events.toml").write_text(config)
        self.settings = load_settings(path, environ={})

    def invoke(self, *args: str, user: str | None = None, local: bool = True):
        extra = (["--user", user] if user else []) + (["--root", str(self.path)] if local else [])
        return CliRunner().invoke(cli, [*args, *extra], obj={},
                                  env={"CRDS_EVENTS_ROOT": None, "CRDS_EVENTS_USER": None,
                                       "CRDS_EVENTS_DATABASE_URL": None})

    def run(self, *args: str, user: str | None = None, local: bool = True) -> str:
        result = self.invoke(*args, user=user, local=local)
        assert result.exit_code == 0, (args, result.output)
        assert "Traceback" not in result.output
        return result.output


@pytest.fixture
def root(tmp_path, database_url) -> Root:
    """An initialised root with ada (admin), otto (operator) and jane (submitter), and
    generations 1 and 2 of a small JWST context imported (latest = edit = generation 1)."""
    made = Root(tmp_path / "root", database_url)
    made.run("init")
    assert made.settings.db_path.exists() == (not database_url)  # nothing on the side
    secret = tmp_path / "password"
    secret.write_text("a long enough password\n")
    for name, role in (("ada", "admin"), ("otto", "operator"), ("jane", "submitter")):
        made.run("user", "add", name, "--email", f"{name}@example.org", "--role", role,
                 "--password-file", str(secret))
    mappings, references = tmp_path / "mappings", tmp_path / "references"
    mappings.mkdir()
    references.mkdir()
    for serial, pointers in ((1, "latest,edit"), (2, "")):
        write_generation(mappings, references, serial)
        out = made.run("import-cache", "--mappings", str(mappings), "--references",
                       str(references), "--context", f"jwst_{serial:04d}.pmap",
                       "--set", pointers, user="ada")
        assert "cataloged" in out or "files" in out, out
    return made


def _json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_operator_commands(root, tmp_path):
    pointers = json.loads(root.run("contexts", "--json"))
    assert {row["kind"]: row["context"] for row in pointers} == {
        "latest": "jwst_0001.pmap", "edit": "jwst_0001.pmap"}

    # set-context, refused and allowed, and the history it leaves
    refused = root.invoke("set-context", "latest", "jwst_0002.pmap", "--reason", "x",
                          user="jane")
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    out = root.run("set-context", "latest", "jwst_0002.pmap", "--reason", "new flats",
                   user="otto")
    assert "jwst_0001.pmap -> jwst_0002.pmap" in out
    history = json.loads(root.run("contexts", "--history", "--json"))
    assert [row["context"] for row in history][0] == "jwst_0002.pmap"

    # bad files: not in the operational context any more, so it may be marked bad
    out = root.run("mark-bad", "jwst_nircam_flat_0001.fits", "--reason", "hot pixels",
                   user="ada")
    assert "jwst_nircam_flat_0001.fits: marked bad" in out
    bad = json.loads(root.run("bad-files", "--json"))
    assert {row["name"] for row in bad if row["rejected"]} == {"jwst_nircam_flat_0001.fits"}
    assert "marked OK" in root.run("mark-ok", "jwst_nircam_flat_0001.fits", user="ada")
    assert "0 bad file(s)" in root.run("bad-files")

    # pipelines and the contexts they push
    key = root.run("pipeline", "add", "ops-1", user="otto").strip().splitlines()[-1]
    out = root.run("remote-context", "push", key, "jwst_0002.pmap")
    assert "ops-1: jwst_0002.pmap (recorded)" in out
    assert "in sync" in root.run("remote-context")
    [listed] = json.loads(root.run("pipeline", "list", "--json"))
    assert listed["name"] == "ops-1" and listed["last_context"] == "jwst_0002.pmap"
    new_key = root.run("pipeline", "rotate", "ops-1", user="otto").strip().splitlines()[-1]
    assert root.invoke("remote-context", "push", key, "jwst_0001.pmap").exit_code == 1
    root.run("pipeline", "revoke", "ops-1", user="otto")
    assert root.invoke("remote-context", "push", new_key, "jwst_0001.pmap").exit_code == 1

    # instrument locks
    root.run("lock", "acquire", "nircam", user="jane")
    assert "jane" in root.run("lock", "list")
    assert root.invoke("lock", "acquire", "nircam", user="ada").exit_code == 1
    root.run("lock", "release", "nircam", user="jane")

    # reprocessing: the catalog (bulk import, resumable) and affected datasets
    catalog = tmp_path / "datasets.jsonl"
    rows = [{"id": f"JW{i:05d}:JW{i:05d}", "header": NIRCAM} for i in range(2500)]
    rows.append({"id": "JWMIRI:JWMIRI", "header": {**NIRCAM, "META.INSTRUMENT.NAME": "MIRI",
                                                    "META.INSTRUMENT.DETECTOR": "MIRIMAGE"}})
    catalog.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert "imported 2501 datasets" in root.run("datasets", "import", str(catalog))
    assert "already imported" in root.run("datasets", "import", str(catalog))
    out = root.run("repro", "compute", "jwst_0001.pmap", "jwst_0002.pmap")
    assert "2500 affected of" in out
    assert "2500 affected" in root.run("repro", "show", "jwst_0001.pmap", "jwst_0002.pmap")
    ids = root.run("repro", "ids", "jwst_0001.pmap", "jwst_0002.pmap").split()
    assert len(ids) == 2500 and "JW00000:JW00000" in ids and "JWMIRI:JWMIRI" not in ids

    # the e-mail outbox: empty without a server (its composer queues e-mail; see below)
    assert root.run("mail", "list", "--json") == ""
    assert "0 e-mail(s) attempted" in root.run("mail", "send-due")

    # deliveries: none yet; a reconcile of an empty directory records nothing
    assert root.run("deliveries") == ""
    assert "0 facts recorded" in root.run("delivery", "reconcile")
    unknown = root.invoke("delivery", "redeliver", "jwst_9999", user="otto")
    assert unknown.exit_code == 1 and "Traceback" not in unknown.output

    # the log: every fact above, and projections replayed from it
    types = {line["type"] for line in _json_lines(root.run("events", "--json"))}
    assert {"ContextSet", "FileMarkedBad", "PipelineRegistered", "RemoteContextPushed",
            "LockAcquired", "DatasetsImported", "AffectedDatasetsComputed"} <= types, types
    assert "rebuilt" in root.run("rebuild")
    assert "ops-1" in root.run("remote-context")  # read from the replayed projection


@pytest.mark.slow
def test_commands_beside_a_running_server(root, tmp_path):
    settings = root.settings
    server = Server(settings, [partial(parts.mail, poll_interval=0.1),
                               partial(parts.submissions, settle=0.1, scan_interval=2.0),
                               partial(parts.delivery, scan_interval=2.0)],
                    poll_interval=0.05)
    server.start()
    web = WebServer(create_app(settings, server.store), "127.0.0.1", 0)
    web.start()
    try:
        flat = make_flat(tmp_path / "made" / "cli_flat.fits", filter_="F150W", seed=31)
        out = root.run("submit", str(flat), "--instrument", "NIRCAM", "--description",
                       "from the CLI", "--wait", "--timeout", "90", user="jane")
        sid = out.splitlines()[0].split()[1].rstrip(":")
        assert out.splitlines()[-1].startswith(f"submission {sid}: READY"), out
        shown = root.run("submission", "show", sid)
        assert f"submission {sid}: READY (NIRCAM, by jane)" in shown
        out = root.run("submission", "confirm", sid, user="jane")
        assert "edit context is now jwst_0003.pmap" in out

        def delivered():
            infos = _json_lines(root.run("deliveries", "--json"))
            return infos if infos and infos[0]["state"] == "created" else None

        [info] = wait_for(delivered, timeout=60)
        assert info["submission_id"] == sid
        assert (settings.delivery / f"{info['name']}.cat").is_file()
        assert any(row["kind"] == "CONFIRMED" for row in _json_lines(
            root.run("mail", "list", "--json")))

        # the crds-protocol client commands against this server's web app
        cache = tmp_path / "cache"
        out = root.run("sync", "--no-progress", "--server", web.url, "--contexts",
                       "jwst_0001.pmap", "--fetch-references", "--cache", str(cache), local=False)
        assert (cache / "mappings" / "jwst" / "jwst_0001.pmap").is_file(), out
        out = root.run("list", "--status", "--server", web.url, local=False)
        assert "jwst_0001.pmap" in out
    finally:
        web.stop()
        server.stop()
    with open_store(settings) as store:
        started = store.read_all(types=["SubmissionStarted"])
        assert [r.data["submission_id"] for r in started] == [sid]


def test_migrate_store_refusals_are_one_line(root):
    # migrate-store copies a SQLite log; on PostgreSQL it says so instead
    result = root.invoke("migrate-store", "--to", "postgresql://x@127.0.0.1:1/none")
    if root.settings.database_url.startswith("postgresql"):
        assert result.exit_code == 1 and "already on PostgreSQL" in result.output
    else:
        assert result.exit_code == 1 and "cannot open the event log" in result.output
    assert "Traceback" not in result.output
