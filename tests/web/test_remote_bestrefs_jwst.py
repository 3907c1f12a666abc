"""JWST best references computed by the server (the real client in ``CRDS_MODE=remote``) equal
what crds computes locally: the corpus oracle (``hv_best_references`` of crds 14.0.3, with
its EXP_TYPE / calibration software version type filtering), line for line, NOT FOUND texts
included; the datasets crds refuses as a whole are refused with crds's reason.

The server's root holds the corpus JWST context (``jwst_0001.pmap``) imported; the client
runs as one subprocess over the 300 oracle headers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from fixtures.rpc import running_server

from crds_events.config import load_settings
from crds_events.contexts.importcache import import_cache
from crds_events.reprocessing.datasets import import_datasets
from crds_events.store.eventlog import SQLiteEventStore
from crds_events.store.root import init_root

pytestmark = [pytest.mark.slow, pytest.mark.corpus]

STORED_ID = "jw01234001001_01101_00011_mirimage"
MIRI_HEADER = {"META.INSTRUMENT.NAME": "MIRI", "META.INSTRUMENT.DETECTOR": "MIRIMAGE",
               "META.EXPOSURE.TYPE": "MIR_IMAGE", "META.OBSERVATION.DATE": "2024-01-01",
               "META.OBSERVATION.TIME": "00:00:00"}


@pytest.fixture(scope="module")
def server(corpus, tmp_path_factory):
    work = tmp_path_factory.mktemp("remote_jwst")
    settings = load_settings(work / "root", {"observatory": "jwst"}, environ={})
    init_root(settings)
    jwst = corpus / "contexts" / "jwst"
    # one archived exposure, as the archive spells JWST ids (lower case, "_" + detector)
    datasets = work / "datasets.jsonl"
    datasets.write_text(json.dumps({"id": STORED_ID, "header": MIRI_HEADER}) + "\n")
    with SQLiteEventStore(settings.db_path) as store:
        import_cache(settings, store, jwst / "mappings", jwst / "references", "jwst_0001.pmap",
                     set_pointers=("latest", "edit"))
        import_datasets(settings, store, datasets)
    with running_server(settings) as url:
        yield url, work


def test_remote_best_references_equal_local_ones(server, corpus):
    url, work = server
    oracle = corpus / "oracle" / "bestrefs_jwst.jsonl"
    script = textwrap.dedent("""
        import json, sys
        import crds
        out = []
        for line in open(sys.argv[1], encoding="utf-8"):
            record = json.loads(line)
            try:
                # fast: the client's own bad-file warning step cannot take a list of
                # files (crds fails there in local mode too); the answer is the server's
                got = crds.getrecommendations(record["header"], context="jwst_0001.pmap",
                                              observatory="jwst", fast=True)
            except Exception as exc:
                got = {"error": str(exc)}
            out.append([record["id"], got])
        print("OUT=" + json.dumps(out))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    env.update(CRDS_SERVER_URL=url, CRDS_PATH=str(work / "cache"), CRDS_OBSERVATORY="jwst",
               CRDS_MODE="remote")
    result = subprocess.run([sys.executable, "-c", script, str(oracle)], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    answers = dict(json.loads([x for x in result.stdout.splitlines()
                               if x.startswith("OUT=")][-1][4:]))
    records = [json.loads(line) for line in oracle.read_text(encoding="utf-8").splitlines()]
    assert len(answers) == len(records) == 300
    failures, filtered = [], 0
    for record in records:
        expected, got = record["expected"], answers[record["id"]]
        if "error" in expected:
            reason = expected["error"].removeprefix("NOT FOUND ")
            same = "error" in got and reason in got["error"]
        else:
            same = got == expected
            # the MIRI lines with a version: crds keeps fewer types than the instrument has
            filtered += "calibration software version" in record["note"] and \
                record["instrument"] == "MIRI" and len(expected) < 2
        if not same:
            failures.append((record["id"], expected, got))
    assert not failures, f"{len(failures)} differ; first: {failures[:3]}"
    assert filtered > 10  # the filtering was exercised, not only all-types answers


def _client(url: str, work, script: str) -> object:
    code = "import json\nfrom crds.client import api\n" + textwrap.dedent(script) + \
        "\nprint('OUT=' + json.dumps(out))\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    env.update(CRDS_SERVER_URL=url, CRDS_PATH=str(work / "cache"), CRDS_OBSERVATORY="jwst")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads([x for x in result.stdout.splitlines() if x.startswith("OUT=")][-1][4:])


def test_jwst_ids_in_the_spellings_crds_uses_are_found(server):
    url, work = server
    spellings = ["jw01234001001_01101_00011.MIRIMAGE", "JW01234001001_01101_00011_MIRIMAGE",
                 "jw01234001001_01101_00011.mirimage", STORED_ID]
    out = _client(url, work, f"""
        ids = {spellings!r} + ["jw01234001001_01101_00012.MIRIMAGE"]
        out = {{"refs": api.get_best_references_by_ids("jwst_0001.pmap", ids),
               "headers": api.get_dataset_headers_by_id("jwst_0001.pmap", ids)}}
    """)
    refs, headers = out["refs"], out["headers"]
    # found under the catalog's own id, once, with the MIRI references
    found, answer = refs[STORED_ID]
    assert found is True and answer["ipc"].startswith("jwst_miri_ipc_")
    assert headers[STORED_ID]["META.INSTRUMENT.DETECTOR"] == "MIRIMAGE"
    assert not any(refs.get(s, [True])[0] is False for s in spellings)
    # another exposure is not found (a spelling is not a wildcard)
    assert refs["jw01234001001_01101_00012.MIRIMAGE"][0] is False
    assert "NOT FOUND" in headers["jw01234001001_01101_00012.MIRIMAGE"]
