"""The REAL crds client's API functions (``crds.client.api``, crds 14.0.3) and its submission
monitor (``python -m crds.submit.monitor``) against our server on 127.0.0.1: the URL methods
(``is_known_mapping``), CRDS's shapes of the multi-dataset best references, and the jpoll
``done`` message the monitor reads.

The server root holds only the small synthetic context and a SYSTEM calver context as the
versions context (no corpus needed). The client runs
as a subprocess (its module state is global), printing what its API answered as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest
from fixtures.rpc import (
    SYSTEM_CALVER,
    aperture,
    make_root,
    running_server,
    synthetic_reference_name,
    write_system_context,
)

from crds_events import events as ev
from crds_events.contexts.importcache import import_cache
from crds_events.reprocessing.datasets import import_datasets
from crds_events.store.eventlog import SQLiteEventStore
from crds_events.web import jpoll
from crds_events.web.pages.auth import load_secret_key

PMAP = "hst_9000.pmap"
RMAP = "hst_acs_bpixtab_9000.rmap"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("crds_api")
    settings = make_root(work / "root", None, 3, work)
    source = work / "datasets.jsonl"
    source.write_text(json.dumps({"id": "J8AB01X1Q:J8AB01X1Q", "header": _header(1)}) + "\n")
    system = write_system_context(work / "system")
    with SQLiteEventStore(settings.db_path) as store:
        import_datasets(settings, store, source)
        # the versions context holds the SYSTEM calver rules (as CRDS's -versions context)
        import_cache(settings, store, work / "system/mappings", work / "system/references",
                     system, set_pointers=("versions",))
    with running_server(settings) as url:
        yield settings, url, work


def _header(i: int, **more: str) -> dict[str, str]:
    return {"INSTRUME": "ACS", "DETECTOR": "WFC", "APERTURE": aperture(i),
            "DATE-OBS": "2001-01-01", "TIME-OBS": "00:00:00", **more}


def _env(url: str, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    env.update(CRDS_SERVER_URL=url, CRDS_PATH=str(cache), CRDS_OBSERVATORY="hst")
    return env


def _client(server, script: str) -> object:
    """Run ``script`` with the real client's ``api`` imported; it assigns ``out``."""
    _settings, url, work = server
    code = "import json\nfrom crds.client import api\n" + textwrap.dedent(script) + \
        "\nprint('OUT=' + json.dumps(out))\n"
    result = subprocess.run([sys.executable, "-c", code], env=_env(url, work / "cache"),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    line = [x for x in result.stdout.splitlines() if x.startswith("OUT=")][-1]
    return json.loads(line[4:])


def test_is_known_mapping_and_the_download_urls(server):
    settings, url, _ = server
    out = _client(server, f"""
        out = {{
            "pmap": api.is_known_mapping("{PMAP}"),
            "rmap": api.is_known_mapping("{RMAP}"),
            "unknown": api.is_known_mapping("hst_0999.pmap"),
            "a_reference": api.is_known_mapping("{synthetic_reference_name(0)}"),
            "mapping_url": api.get_mapping_url("{PMAP}", "{RMAP}"),
            "reference_url": api.get_reference_url("hst", "{synthetic_reference_name(2)}"),
            "url": api.get_url("hst-latest", "{PMAP}"),
        }}
        for call in ("api.get_reference_url('{PMAP}', '{RMAP}')",
                     "api.get_mapping_url('{PMAP}', 'nope_0001.rmap')",
                     "api.get_url('jwst_0001.pmap', '{PMAP}')",
                     "api.get_url('{PMAP}', '../etc/passwd')"):
            try:
                eval(call)
                out[call] = "no error"
            except api.ServiceError as exc:
                out[call] = str(exc)
    """)
    assert out["pmap"] is True and out["rmap"] is True
    assert out["unknown"] is False and out["a_reference"] is False
    stored = settings.root
    for key, name in (("mapping_url", RMAP), ("reference_url", synthetic_reference_name(2)),
                      ("url", PMAP)):
        assert out[key].startswith(url.rstrip("/") + "/unchecked_get/"), out[key]
        assert out[key].endswith("/hst/" + name)
        with urllib.request.urlopen(out[key], timeout=30) as response:
            body = response.read()
        copies = [p for p in stored.rglob(name) if p.is_file()]
        assert copies and body == copies[0].read_bytes()
    errors = {k: v for k, v in out.items() if k.startswith("api.")}
    assert "not a reference" in errors[f"api.get_reference_url('{PMAP}', '{RMAP}')"]
    assert "not known" in errors[f"api.get_mapping_url('{PMAP}', 'nope_0001.rmap')"]
    assert "context" in errors[f"api.get_url('jwst_0001.pmap', '{PMAP}')"]
    assert "filename" in errors[f"api.get_url('{PMAP}', '../etc/passwd')"]
    assert all(str(settings.root) not in text for text in errors.values())


def test_multi_dataset_best_references_in_crds_shapes(server):
    out = _client(server, f"""
        out = {{
            "by_header_map": api.get_best_references_by_header_map(
                "{PMAP}", {{"ok": {_header(2)!r}, "no_instrument": {{"DETECTOR": "WFC"}}}},
                ["bpixtab"]),
            "by_ids": api.get_best_references_by_ids(
                "{PMAP}", ["J8AB01X1Q:J8AB01X1Q", "NOPE"], ["bpixtab"], False),
            "aui": api.get_aui_best_references("hst-latest", ["J8AB01X1Q:J8AB01X1Q"]),
        }}
    """)
    by_header_map = out["by_header_map"]
    assert by_header_map["ok"] == [True, {"bpixtab": synthetic_reference_name(2)}]
    assert by_header_map["no_instrument"][0] is False
    assert by_header_map["no_instrument"][1].startswith("NOT FOUND")
    by_ids = out["by_ids"]
    assert by_ids["J8AB01X1Q:J8AB01X1Q"] == [True, {"bpixtab": synthetic_reference_name(1)}]
    assert by_ids["NOPE"][0] is False and by_ids["NOPE"][1].startswith("NOT FOUND")
    assert out["aui"] == {"J8AB01X1Q:J8AB01X1Q": [True, [synthetic_reference_name(1)]]}


def test_system_versions(server):
    version, _reference, contents = SYSTEM_CALVER
    out = _client(server, f"""
        out = {{"default": dict(api.get_system_versions("{version}")),
                "named": dict(api.get_system_versions("{version}", "hst_9100.pmap"))}}
        for call in ("api.get_system_versions('9.9.9')",
                     "api.get_system_versions('1.2 3')",
                     "api.get_system_versions('{version}', '{PMAP}')"):
            try:
                eval(call)
                out[call] = "no error"
            except Exception as exc:
                out[call] = str(exc)
    """)
    assert out["default"] == contents and out["named"] == contents
    assert "no calver reference" in out["api.get_system_versions('9.9.9')"]
    assert "master_version" in out["api.get_system_versions('1.2 3')"]
    # the ACS-only latest context has no SYSTEM instrument: an error, not a traceback
    assert "unknown instrument 'system'" in out[
        f"api.get_system_versions('{version}', '{PMAP}')"].lower()


def _record_submission(settings, sid: str, outcome: ev.Event) -> None:
    with SQLiteEventStore(settings.db_path) as store:
        store.record(ev.SubmissionStarted(submission_id=sid, observatory="hst",
                                          deliverer="jane", instrument="acs",
                                          description="d", files=("a.fits",)))
        store.record(ev.SubmissionProgress(submission_id=sid, message="certifying a.fits"))
        store.record(outcome)


def _monitor(server, sid: str) -> subprocess.CompletedProcess:
    settings, url, work = server
    key = jpoll.key_for(load_secret_key(settings.root), sid)  # what the submitter was given
    return subprocess.run([sys.executable, "-m", "crds.submit.monitor", "--key", key,
                           "--poll-delay", "0"], env=_env(url, work / "cache"),
                          capture_output=True, text=True, timeout=120)


def test_the_crds_monitor_reads_our_done_message(server):
    settings, url, _ = server
    _record_submission(settings, "sub-mon-ready", ev.SubmissionReady(
        submission_id="sub-mon-ready", files=("x.fits",), new_context="hst_9001.pmap"))
    result = _monitor(server, "sub-mon-ready")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "certifying a.fits" in output
    assert f"COMPLETED: {url.rstrip('/')}/submissions/sub-mon-ready" in output
    assert "Traceback" not in output

    _record_submission(settings, "sub-mon-bad", ev.SubmissionRejected(
        submission_id="sub-mon-bad", reason="a.fits failed certify", bad_files=("a.fits",)))
    result = _monitor(server, "sub-mon-bad")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output  # CRDS's failed status
    assert "FAILED: BAD FILES: a.fits failed certify" in output
    assert "Traceback" not in output
