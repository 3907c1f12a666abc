"""The REAL crds client (subprocesses) against a server whose root `import-cache` filled from
the corpus HST cache plus GEIS data files: ``crds sync --fetch-references`` fetches every
``.r1d`` beside its ``.r1h``, and ``crds.getreferences`` leaves a complete WFPC2 cache.

The latest context is a WFPC2 context whose only rmap (the corpus atodfile rules) names the
four corpus GEIS headers, so every file it names exists and the sync can end with 0 errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fixtures.geis import CORPUS_HEADERS, geis_cache, write_wfpc2_context
from fixtures.rpc import running_server, sha1

from crds_events.client.rpc import RpcClient, crds_decode
from crds_events.config import load_settings
from crds_events.contexts.importcache import import_cache
from crds_events.files.geis import geis_data_name
from crds_events.store.eventlog import SQLiteEventStore
from crds_events.store.root import init_root

pytestmark = [pytest.mark.slow, pytest.mark.corpus]

BIN = Path(sys.executable).parent


def _env(url: str, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    env.update(CRDS_SERVER_URL=url, CRDS_PATH=str(cache), CRDS_OBSERVATORY="hst")
    return env


def _cached(cache: Path, name: str) -> Path:
    """Where the client put reference ``name`` (a new cache files them by instrument)."""
    found = list((cache / "references" / "hst").rglob(name))
    assert len(found) == 1, (name, found)
    return found[0]


@pytest.fixture(scope="module")
def server(corpus, tmp_path_factory):
    work = tmp_path_factory.mktemp("geis_sync")
    mappings, references = geis_cache(corpus, work / "cache_source")
    pmap = write_wfpc2_context(mappings)
    settings = load_settings(work / "root", {"observatory": "hst"}, environ={})
    init_root(settings)
    with SQLiteEventStore(settings.db_path) as store:
        import_cache(settings, store, mappings, references, "hst_0001.pmap", ("latest",))
        import_cache(settings, store, mappings, references, pmap, ("latest", "edit"))
    with running_server(settings) as url:
        yield url, references, work, pmap


def test_crds_sync_latest_fetches_every_geis_data_file(server):
    url, references, work, pmap = server
    cache = work / "sync_cache"
    result = subprocess.run(
        [str(BIN / "crds"), "sync", "--contexts", "hst-latest", "--fetch-references"],
        env=_env(url, cache), capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert "0 errors" in log and "not known" not in log
    for header in CORPUS_HEADERS:
        for name in (header, geis_data_name(header)):
            assert sha1(_cached(cache, name)) == sha1(references / name), name
    assert (cache / "mappings" / "hst" / pmap).is_file()
    assert (cache / "config" / "hst" / "server_config").is_file()  # the sync completed


def test_getreferences_for_a_wfpc2_header_leaves_a_complete_cache(server):
    url, references, work, pmap = server
    cache = work / "getreferences_cache"
    script = textwrap.dedent("""
        import json, crds
        header = {"INSTRUME": "WFPC2", "MODE": "AREA", "ATODGAIN": "7.0",
                  "DATE-OBS": "1994-02-02", "TIME-OBS": "16:53:00"}
        print(json.dumps(crds.getreferences(header, reftypes=["atodfile"],
                                            observatory="hst")))
    """)
    result = subprocess.run([sys.executable, "-c", script], env=_env(url, cache),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    # the corpus oracle's answer for this header, where the client put it
    assert got == {"atodfile": str(_cached(cache, "e1b09594u.r1h"))}
    for name in ("e1b09594u.r1h", "e1b09594u.r1d"):
        assert sha1(_cached(cache, name)) == sha1(references / name), name


def test_data_files_are_known_to_the_rpcs_as_the_client_asks(server):
    url, references, _, pmap = server
    rpc = RpcClient(url)
    data = references / "dbu1405fu.r1d"
    info = rpc.call("get_file_info", pmap, data.name)
    assert (info["sha1sum"], info["size"]) == (sha1(data), str(data.stat().st_size))
    assert (info["instrument"], info["filekind"], info["state"]) == \
        ("wfpc2", "atodfile", "archived")
    names = [n for h in CORPUS_HEADERS for n in (h, geis_data_name(h))]
    infos = rpc.call("get_file_info_map", "hst", names, ["size", "sha1sum"])
    assert infos == {n: {"size": str((references / n).stat().st_size),
                         "sha1sum": sha1(references / n)} for n in names}
    assert rpc.call("get_url", pmap, data.name).endswith(
        "/unchecked_get/references/hst/dbu1405fu.r1d")
    metadata = crds_decode(rpc.call("get_server_info")["download_metadata"])
    assert all(name in metadata for name in names)


def test_data_files_are_served_and_escaping_names_are_not(server):
    url, references, _, _ = server
    base = f"{url.rstrip('/')}/unchecked_get/references/hst/"
    with urllib.request.urlopen(base + "dbu1405fu.r1d") as response:
        assert response.read() == (references / "dbu1405fu.r1d").read_bytes()
    for name in ("..%2fdbu1405fu.r1d", "%2e%2e/crds-events.toml", "nothere0u.r1d"):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(base + name)
        assert caught.value.code == 404, name


def test_the_probe_passes_on_a_root_with_geis_data_files(server):
    """The workplace's probe (../shared/tools/probe_server.sh --obs hst --fetch-all), every
    step with the real client, against this root."""
    url, _references, work, _pmap = server
    probe = Path(__file__).resolve().parents[3] / "shared" / "tools" / "probe_server.sh"
    if not probe.is_file():
        pytest.skip(f"{probe} not found (it lives in ../shared/tools beside the repository)")
    cache = work / "probe_cache"
    cache.mkdir()
    env = _env(url, cache) | {"CRDS_PROBE_PYTHON": sys.executable, "PROBE_WORKDIR": str(work)}
    result = subprocess.run(["bash", str(probe), "--obs", "hst", "--fetch-all"], cwd=work,
                            env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "PASS sync_fetch_references" in output and "FAIL" not in output
