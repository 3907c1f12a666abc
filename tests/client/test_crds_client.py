"""The REAL crds client (PyPI ``crds``, run as subprocesses) against our server on 127.0.0.1.

The server root holds the corpus ``hst_0001.pmap`` context (imported: files archived) and,
made latest afterwards, a small synthetic context whose references all exist (the corpus
names 14,576 references of which 10 exist). Each client command is checked by its effect:
files in the client's cache with the server's sha1, best references equal to the corpus
oracle (computed by crds 14.0.3), events in our log.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.rpc import aperture, make_root, running_server, sha1, synthetic_reference_name

from crds_events import events as ev
from crds_events.reprocessing import results as repro_results
from crds_events.reprocessing.datasets import import_datasets
from crds_events.store.eventlog import SQLiteEventStore

pytestmark = [pytest.mark.slow, pytest.mark.corpus]

BIN = Path(sys.executable).parent
PROBE = Path(__file__).resolve().parents[3] / "shared" / "tools" / "probe_server.sh"
N_SYNTHETIC = 20


def _env(url: str, cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    env.update(CRDS_SERVER_URL=url, CRDS_PATH=str(cache), CRDS_OBSERVATORY="hst", **extra)
    return env


@pytest.fixture(scope="module")
def server(corpus, tmp_path_factory):
    work = tmp_path_factory.mktemp("crds_client")
    settings = make_root(work / "root", corpus, N_SYNTHETIC, work)
    with running_server(settings) as url:
        # The probe takes a minute of mostly client start-up: run it beside the other tests.
        probe = None
        if PROBE.is_file():
            probe_cache = work / "probe_cache"
            probe_cache.mkdir()
            probe = subprocess.Popen(
                ["bash", str(PROBE), "--fetch-all"], cwd=work, text=True,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env=_env(url, probe_cache, CRDS_PROBE_PYTHON=sys.executable,
                         PROBE_WORKDIR=str(work)))
        try:
            yield settings, url, work, probe
        finally:
            if probe is not None and probe.poll() is None:
                probe.kill()
                probe.communicate()


@pytest.fixture(scope="module")
def cache(server):
    return server[2] / "cache"


def crds(server, cache, *args, check=True, **extra) -> subprocess.CompletedProcess:
    _, url, _, _ = server
    result = subprocess.run([str(BIN / "crds"), *args], env=_env(url, cache, **extra),
                            capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


def errors_of(result: subprocess.CompletedProcess) -> int:
    counts = re.findall(r"CRDS - INFO -  (\d+) errors", result.stdout + result.stderr)
    return int(counts[-1]) if counts else -1


def test_list_status_writes_the_server_config(server, cache):
    result = crds(server, cache, "list", "--status")
    assert "Effective Context = 'hst_9000.pmap'" in result.stdout
    config = ast.literal_eval((cache / "config/hst/server_config").read_text())
    assert config["latest_context"] == "hst_9000.pmap" and config["observatory"] == "hst"


def test_sync_hst_0001_fetches_every_reference_the_server_has(server, cache, corpus):
    result = crds(server, cache, "sync", "--contexts", "hst_0001.pmap", "--fetch-references",
                  check=False)
    log = result.stdout + result.stderr
    mappings = corpus / "contexts/hst/mappings"
    for name in re.findall(r"'(\S+map)'", (mappings / "hst_0001.pmap").read_text()) + \
            ["hst_0001.pmap"]:
        assert sha1(cache / "mappings/hst" / name) == sha1(mappings / name)
    served = [p for p in (corpus / "contexts/hst/references").iterdir()
              if p.name != "hst_acs_biasfile_0002.fits"]  # hst_0002 only
    assert len(served) == 9
    for path in served:
        found = list((cache / "references/hst").rglob(path.name))
        assert len(found) == 1 and sha1(found[0]) == sha1(path), path.name
    # Every other named reference is unknown to the server, as the real server answers for
    # files it does not have: the client reports each one and nothing else fails.
    failed = re.findall(r"Failure downloading file '([^']+)' : file is not known to CRDS "
                        r"server", log)
    assert len(failed) == errors_of(result) > 14_000
    assert not set(failed) & {p.name for p in served}


def test_check_files_and_sha1sum(server, cache):
    result = crds(server, cache, "sync", "--contexts", "hst_0001.pmap", "--check-files",
                  "--check-sha1sum")
    assert errors_of(result) == 0
    victim = cache / "mappings/hst/hst_acs_ccdtab.rmap"
    data = bytearray(victim.read_bytes())
    data[-2] = ord("#") if data[-2] != ord("#") else ord(" ")  # same size, other bytes
    victim.chmod(0o644)
    original = victim.read_bytes()
    victim.write_bytes(bytes(data))
    try:
        result = crds(server, cache, "sync", "--contexts", "hst_0001.pmap", "--check-files",
                      "--check-sha1sum", check=False)
    finally:
        victim.write_bytes(original)  # the other tests share this cache
    assert "hst_acs_ccdtab.rmap" in result.stdout + result.stderr
    assert "checksum mismatch" in result.stdout + result.stderr
    assert errors_of(result) >= 1


def _oracle_acs_case(corpus) -> dict:
    for line in (corpus / "oracle/bestrefs_hst_0001.jsonl").open():
        case = json.loads(line)
        expected = case["expected"].values()
        if case["instrument"] == "ACS" and case["kind"] == "matched" and all(
                not v.startswith("NOT FOUND") or v == "NOT FOUND n/a" for v in expected):
            return case
    raise AssertionError("no ACS case in the oracle")


def test_bestrefs_on_a_fits_dataset_local_and_remote(server, cache, corpus, tmp_path):
    from astropy.io import fits

    case = _oracle_acs_case(corpus)
    header = fits.Header()
    for key, value in case["header"].items():
        header[key] = value
    dataset = tmp_path / "j_raw.fits"
    fits.PrimaryHDU(header=header).writeto(dataset)
    expected = {kind: ("n/a" if value == "NOT FOUND n/a" else value)
                for kind, value in case["expected"].items()}
    # local first: it also syncs the context's mappings, which remote mode reads to know the
    # dataset's reference types
    for extra in ([], ["--remote-bestrefs"]):
        result = crds(server, cache, "bestrefs", "--files", str(dataset), "--new-context",
                      "hst_0001.pmap", "--print-new-references", *extra)
        got = {}
        for line in result.stdout.splitlines():
            parts = line.split()
            if len(parts) == 5 and parts[0].endswith("j_raw.fits"):
                got[parts[2]] = parts[4]
        assert got == expected, extra
        assert errors_of(result) == 0


def test_getreferences_downloads_the_selected_file(server, cache):
    settings, url, work, _ = server
    header = {"INSTRUME": "ACS", "DETECTOR": "WFC", "APERTURE": aperture(7),
              "DATE-OBS": "2005-01-01", "TIME-OBS": "00:00:00"}
    script = ("import json, sys, crds; print(json.dumps(crds.getreferences("
              "json.loads(sys.argv[1]), reftypes=['bpixtab'], observatory='hst')))")
    result = subprocess.run([sys.executable, "-c", script, json.dumps(header)],
                            env=_env(url, cache), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    path = Path(json.loads(result.stdout.splitlines()[-1])["bpixtab"])
    name = synthetic_reference_name(7)
    assert path.name == name and path.is_file()
    assert sha1(path) == sha1(work / "synthetic/references" / name)


def test_push_context_is_recorded(server, cache):
    """The real client pushes with the key `pipeline add` issued; the push is recorded
    under the pipeline's name. A key the server never issued is refused, nothing recorded."""
    from crds_events.contexts.pipelines import add_pipeline

    settings = server[0]
    with SQLiteEventStore(settings.db_path) as store:
        key = add_pipeline(store, "ops-pipeline-1").key
        head = store.head()
    refused = crds(server, cache, "sync", "--last-n-contexts", "1", "--push-context",
                   "ops-pipeline-1", check=False)
    # the real client reports the refusal (without the server's reason) and fails
    assert refused.returncode != 0 and errors_of(refused) == 1
    assert "Failed pushing cached latest context" in refused.stdout + refused.stderr
    with SQLiteEventStore(settings.db_path) as store:
        assert store.read_all(head, types=[ev.RemoteContextPushed.type]) == []
    crds(server, cache, "sync", "--last-n-contexts", "1", "--push-context", key)
    assert (cache / "mappings/hst/hst_9000.pmap").is_file()
    with SQLiteEventStore(settings.db_path) as store:
        pushed = [r.event for r in store.read_all(types=[ev.RemoteContextPushed.type])]
    assert ev.RemoteContextPushed(observatory="hst", pipeline="ops-pipeline-1",
                                  context="hst_9000.pmap") in pushed


def test_query_affected_lists_the_computed_ids(server, cache, corpus, tmp_path):
    """The latest change hst_0001 -> hst_9000 computed by our reprocessing over ACS datasets
    (the corpus oracle's headers), then read back by the real `crds query_affected`."""
    settings = server[0]
    datasets = tmp_path / "datasets.jsonl"
    with (corpus / "oracle" / "bestrefs_hst_0001.jsonl").open() as lines, \
            datasets.open("w") as out:
        for n, line in enumerate(lines):
            record = json.loads(line)
            if record.get("instrument") == "ACS" and record.get("kind") != "error":
                out.write(json.dumps({"id": f"JACS{n:05d}:JACS{n:05d}Q",
                                      "header": record["header"]}) + "\n")
    with SQLiteEventStore(settings.db_path) as store:
        import_datasets(settings, store, datasets)
        result, _ = repro_results.compute_and_record(
            settings, store, "hst_0001.pmap", "hst_9000.pmap")
    assert result.ids, "the change should affect some ACS datasets"
    out = crds(server, cache, "query_affected", "--hst", check=False)
    printed = [line for line in out.stdout.splitlines() if line.strip()]
    assert sorted(printed) == sorted(result.ids)
    # hst_9000 has no rules for ACS's other types: the computation's errors reach the client,
    # which exits 1 as it does for a CRDS server whose bestrefs run had errors.
    assert out.returncode == 1 and "Unknown reference type" in out.stdout + out.stderr


def test_probe_server_passes_every_step(server):
    probe = server[3]
    if probe is None:
        pytest.skip(f"{PROBE} not found (it lives in ../shared/tools beside the repository)")
    output, _ = probe.communicate(timeout=600)
    assert probe.returncode == 0, output
    assert re.search(r"^\d+ passed, 0 failed$", output, re.M), output
    assert "PASS sync_fetch_references" in output and "FAIL" not in output
