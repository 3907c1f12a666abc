"""`crds-events sync` against a real server (the web app over HTTP on 127.0.0.1, the
corpus HST contexts imported), then the real `crds` client using the cache off-line."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from crds_events import events as ev
from crds_events.cli import cli
from crds_events.client.rpc import RpcClient, RpcServiceError, RpcTransportError, crds_decode
from crds_events.client.sync import SyncError, sync
from crds_events.config import load_settings
from crds_events.contexts.importcache import import_cache
from crds_events.rules.bestrefs import load_context
from crds_events.server.core import Server
from crds_events.server.wsgi import WebServer
from crds_events.store.filestore import FileStore
from crds_events.store.root import init_root

CONTEXT = "hst_0001.pmap"


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket closes


class LiveServer:
    """A crds-events server root, its handler runner and the web app on a free port."""

    def __init__(self, root: Path, corpus: Path):
        root.mkdir()
        (root / "crds-events.toml").write_text('observatory = "hst"\n')
        self.settings = load_settings(root, environ={})
        init_root(self.settings)
        self.server = Server(self.settings, poll_interval=0.05)
        self.server.start()
        mappings = corpus / "contexts" / "hst" / "mappings"
        references = corpus / "contexts" / "hst" / "references"
        import_cache(self.settings, self.server.store, mappings, references, CONTEXT,
                     ("latest", "edit"))
        import_cache(self.settings, self.server.store, mappings, references, "hst_0002.pmap",
                     ())
        deadline = time.monotonic() + 30
        while any(self.server.runner.lag().values()):
            assert time.monotonic() < deadline, "projections did not catch up"
            time.sleep(0.05)
        from crds_events.web import create_app

        self.app = create_app(self.settings, self.server.store)
        self.web = WebServer(self.app, "127.0.0.1", 0)  # the production server, free port
        self.web.start()
        self.url = self.web.url

    def stop(self) -> None:
        self.web.stop()
        self.server.stop()


@pytest.fixture(scope="module")
def live(corpus, tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("sync") / "root", corpus)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def truth(corpus):
    """What the cache must hold, computed from the corpus files themselves."""
    mappings_dir = corpus / "contexts" / "hst" / "mappings"
    context = load_context(mappings_dir / CONTEXT)
    refs_dir = corpus / "contexts" / "hst" / "references"
    named = set(context.reference_names())
    references = {p.name: _sha1(p) for p in refs_dir.iterdir() if p.name in named}
    mappings = {name: _sha1(mappings_dir / name) for name in context.mapping_names()}
    return {"mappings": mappings, "references": references}


def _sync_cli(*args: str):
    return CliRunner().invoke(cli, ["sync", "--no-progress", *args], catch_exceptions=False)


def _cached(cache: Path, kind: str) -> dict[str, str]:
    directory = cache / kind / "hst"
    return {p.name: _sha1(p) for p in directory.iterdir()} if directory.is_dir() else {}


def _real_crds(cache: Path, script: str, server_url: str | None = None
               ) -> subprocess.CompletedProcess:
    """Run ``script`` with the real crds client on ``cache``, off-line unless
    ``server_url`` is given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    env.update(CRDS_PATH=str(cache), CRDS_OBSERVATORY="hst",
               CRDS_SERVER_URL=server_url or f"http://localhost:{_closed_port()}",
               CRDS_CLIENT_RETRY_COUNT="1", CRDS_CLIENT_RETRY_DELAY_SECONDS="0")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_sync_fills_a_cache_the_real_client_uses_offline(live, truth, corpus, tmp_path):
    cache = tmp_path / "cache"
    result = _sync_cli("--server", live.url, "--contexts", CONTEXT, "--fetch-references",
                       "--cache", str(cache))
    assert result.exit_code == 0, result.output
    # exactly the closure, byte for byte the corpus files; the references the server has
    assert _cached(cache, "mappings") == truth["mappings"]
    assert _cached(cache, "references") == truth["references"]
    assert len(truth["mappings"]) == 116 and len(truth["references"]) == 9
    config = cache / "config" / "hst"
    assert (config / "ref_cache_subdir_mode").read_text() == "flat"
    info = ast.literal_eval((config / "server_config").read_text())
    assert info["observatory"] == "hst" and info["latest_context"] == CONTEXT
    assert not [p for p in cache.rglob("*") if p.name.endswith((".part", ".tmp"))]
    assert f"{len(truth['mappings'])} mappings" in result.output

    # the real client, off-line: the default context comes from our server_config, the
    # rules from our mappings; its answers equal the corpus oracle (crds' own results)
    lines = (corpus / "oracle" / "bestrefs_hst_0001.jsonl").read_text().splitlines()
    usable = [json.loads(line) for line in lines]  # crds raises on the error lines
    sample = [d for d in usable if d["kind"] != "error" and "INSTRUME" in d["header"]][::15]
    with_bias = next(json.loads(line) for line in lines
                     if '"biasfile": "hst_acs_biasfile_0001.fits"' in line)
    cached_types = sorted(t for t, name in with_bias["expected"].items()
                          if name in truth["references"])
    assert "biasfile" in cached_types
    (tmp_path / "sample.json").write_text(json.dumps(
        {"headers": [s["header"] for s in sample], "bias": with_bias["header"],
         "types": cached_types}))
    run = _real_crds(cache, f"""
        import json, crds
        from crds.core import heavy_client
        data = json.load(open({str(tmp_path / "sample.json")!r}))
        info = heavy_client.get_config_info("hst")
        out = {{"connected": info.connected, "status": info.status,
                "context": heavy_client.get_context_name("hst"),
                "recs": [crds.getrecommendations(h, observatory="hst") for h in data["headers"]],
                "refs": crds.getreferences(data["bias"], reftypes=data["types"],
                                           observatory="hst")}}
        print(json.dumps(out))
    """)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["connected"] is False and out["status"] == "cache"
    assert out["context"] == CONTEXT
    assert out["recs"] == [s["expected"] for s in sample]
    refs_dir = cache / "references" / "hst"
    assert out["refs"] == {t: str(refs_dir / with_bias["expected"][t]) for t in cached_types}

    # and the real `crds sync`, on-line, finds every file where it expects it, with the
    # catalog's size and sha1 (its exit status counts the errors it logged). Not the GEIS
    # headers: crds would also fetch their .r1d data files, which the corpus lacks.
    names = sorted(truth["mappings"]) + sorted(n for n in truth["references"]
                                               if not n.endswith(".r1h"))
    def files_of(kinds=("mappings", "references")):
        return {p: _sha1(p) for kind in kinds for p in (cache / kind).rglob("*") if p.is_file()}

    before = files_of()
    check = _real_crds(cache, f"""
        import sys
        from crds.sync import SyncScript
        sys.exit(SyncScript("crds.sync --check-files --check-sha1sum --files "
                            + " ".join({names!r}))())
    """, server_url=live.url.replace("127.0.0.1", "localhost"))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "0 errors" in check.stderr, check.stderr
    assert files_of() == before  # it downloaded nothing: every file was where it looked


def test_second_sync_downloads_nothing_and_check_files_repairs(live, truth, tmp_path):
    cache = tmp_path / "cache"
    first = sync(live.url, [CONTEXT], cache)
    assert sorted(first.downloaded) == sorted(truth["mappings"])
    again = sync(live.url, [CONTEXT], cache)
    assert again.downloaded == [] and again.already_cached == len(truth["mappings"])

    # same size, one byte different: only --check-files (sha1) notices, and repairs it
    victim = cache / "mappings" / "hst" / "hst_acs_biasfile_0001.rmap"
    data = bytearray(victim.read_bytes())
    data[-2] = ord("#") if data[-2] != ord("#") else ord("!")
    victim.write_bytes(bytes(data))
    assert sync(live.url, [CONTEXT], cache).downloaded == []
    assert _sha1(victim) != truth["mappings"][victim.name]
    result = _sync_cli("--server", live.url, "--contexts", CONTEXT, "--check-files",
                       "--cache", str(cache))
    assert result.exit_code == 0, result.output
    assert f"replaced {victim.name}" in result.output
    assert _sha1(victim) == truth["mappings"][victim.name]


@pytest.mark.parametrize("damage", ["tamper", "truncate"])
def test_a_corrupt_download_is_refused_and_config_not_written(live, tmp_path, damage):
    """The server's copy no longer matches its catalog (a byte changed in place, the file
    cut short): the client must not accept it, nor advertise the context."""
    victim = FileStore.from_settings(live.settings).directory_for("reference") / \
        "v8q14451j_idc.fits"
    original = victim.read_bytes()
    flipped = original[:-1] + bytes([original[-1] ^ 0xFF])
    bad = flipped if damage == "tamper" else original[:-100]
    mode = victim.stat().st_mode
    os.chmod(victim, 0o644)
    try:
        victim.write_bytes(bad)
        cache = tmp_path / "cache"
        result = _sync_cli("--server", live.url, "--contexts", CONTEXT, "--fetch-references",
                           "--cache", str(cache))
    finally:
        victim.write_bytes(original)
        os.chmod(victim, mode)
    assert result.exit_code == 1, result.output
    assert victim.name in result.output
    if damage == "tamper":  # same size: only the client's sha1 check can tell
        assert "does not match the server's sha1sum" in result.output, result.output
    assert "cache config was not updated" in result.output
    assert not (cache / "references" / "hst" / victim.name).exists()
    assert (cache / "mappings" / "hst" / CONTEXT).exists()  # the good files are kept
    assert not (cache / "config" / "hst" / "server_config").exists()
    assert not [p for p in cache.rglob("*") if p.name.endswith(".part")]


def test_push_context_is_recorded(live, tmp_path):
    from crds_events.contexts.pipelines import add_pipeline

    head = live.server.store.head()
    refused = CliRunner().invoke(cli, [
        "sync", "--server", live.url, "--contexts", "latest", "--push-context",
        "pipeline-a", "--cache", str(tmp_path / "cache")], catch_exceptions=False)
    assert refused.exit_code == 1 and "not the key of a registered pipeline" in refused.output
    assert live.server.store.read_all(head, types=[ev.RemoteContextPushed.type]) == []
    key = add_pipeline(live.server.store, "pipeline-a").key
    result = CliRunner().invoke(cli, [  # with the progress bar, too
        "sync", "--progress", "--server", live.url, "--contexts", "latest", "--push-context",
        key, "--cache", str(tmp_path / "cache")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "pushed context hst_0001.pmap" in result.output and key not in result.output
    pushed = [r.event for r in live.server.store.read_all(types=[ev.RemoteContextPushed.type])
              if r.event.pipeline == "pipeline-a"]
    assert [(p.observatory, p.context) for p in pushed] == [("hst", CONTEXT)]


def test_rpc_client_decodes_and_reports_errors(live, truth):
    client = RpcClient(live.url)
    info = client.call("get_server_info")
    assert info["observatory"] == "hst"
    # 14,000+ names: the server sends them crds_encoded; the client decodes them
    names = client.call("get_reference_names", CONTEXT)
    assert isinstance(names, list) and len(names) > 14_000
    assert set(truth["references"]) <= set(names)
    with pytest.raises(RpcServiceError) as caught:
        client.call("no_such_method")
    assert "no_such_method" in caught.value.message
    with pytest.raises(RpcTransportError, match="cannot reach"):
        RpcClient(f"http://127.0.0.1:{_closed_port()}", timeout=5).call("get_server_info")


def test_sync_errors_are_clear(live, tmp_path):
    with pytest.raises(SyncError, match="hst_9999.pmap"):
        sync(live.url, ["hst_9999.pmap"], tmp_path / "c1")
    with pytest.raises(SyncError, match="expected a .pmap"):
        sync(live.url, ["../etc/passwd"], tmp_path / "c2")
    result = _sync_cli("--server", f"http://127.0.0.1:{_closed_port()}", "--contexts",
                       CONTEXT, "--cache", str(tmp_path / "c3"))
    assert result.exit_code == 1 and "cannot reach" in result.output
    assert "Traceback" not in result.output
    # a cache organised by instrument is not silently mixed with the flat layout
    config = tmp_path / "c4" / "config" / "hst"
    config.mkdir(parents=True)
    (config / "ref_cache_subdir_mode").write_text("instrument")
    with pytest.raises(SyncError, match="flat"):
        sync(live.url, [CONTEXT], tmp_path / "c4")


def test_list_status_from_the_server(live):
    result = CliRunner().invoke(cli, ["list", "--status", "--server", live.url])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(" : ", 1) for line in result.output.splitlines())
    assert {k.strip(): v for k, v in lines.items()}["Latest Context"] == CONTEXT
    contexts = CliRunner().invoke(cli, ["list", "--contexts", "--server", live.url])
    assert contexts.output.split() == ["hst_0001.pmap", "hst_0002.pmap"]


def test_crds_decode_reads_what_the_crds_library_encodes():
    from crds.client.proxy import crds_encode  # the real client's encoder: the reference

    value = {"names": [f"x{i}.fits" for i in range(1000)], "nested": {"a": None, "b": 1.5}}
    assert crds_decode(crds_encode(value)) == value
    assert crds_decode(["plain"]) == ["plain"]
    with pytest.raises(RpcTransportError, match="crds_encoded"):
        crds_decode({"crds_encoded": "1.0", "crds_payload": "not base64 gzip"})
