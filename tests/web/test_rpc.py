"""JSON-RPC at /json/ through Flask's test client: every method's shape, and errors.

The root is seeded through the domain API (import_cache of the corpus hst_0001 context, then
a small complete synthetic context made latest); expected values come from the files
themselves, the corpus oracle and the installed ``crds`` library, not from our own code.
"""

from __future__ import annotations

import json
import re
import threading

import pytest
from fixtures.rpc import aperture, make_root, sha1, synthetic_reference_name

from crds_events import events as ev
from crds_events.handlers.runner import HandlerRunner
from crds_events.store.artifacts import ArtifactStore
from crds_events.store.eventlog import SQLiteEventStore
from crds_events.store.projections import default_projections
from crds_events.web import create_app, jpoll

N_SYNTHETIC = 5


@pytest.fixture(scope="module")
def seeded(corpus, tmp_path_factory):
    work = tmp_path_factory.mktemp("rpc")
    settings = make_root(work / "root", corpus, N_SYNTHETIC, work)
    store = SQLiteEventStore(settings.db_path)
    HandlerRunner(store, default_projections()).run_until_idle()
    yield settings, store, work
    store.close()


def call(client, method, *params, raw=None, path=None, **kwargs):
    body = raw if raw is not None else json.dumps(
        {"jsonrpc": "1.0", "method": method, "params": kwargs or list(params), "id": "t-1"})
    response = client.post(path or f"/json/{method}/t-1/", data=body)
    assert response.status_code == 200, response.data[:200]
    reply = response.get_json()
    assert set(reply) == {"result", "error", "id"}, reply
    return reply


def ok(client, method, *params, **kwargs):
    reply = call(client, method, *params, **kwargs)
    assert reply["error"] is None, reply["error"]
    from crds.client.proxy import crds_decode  # the real client's decoder

    return crds_decode(reply["result"])


def err(client, method, *params, **kwargs) -> str:
    reply = call(client, method, *params, **kwargs)
    assert reply["result"] is None and isinstance(reply["error"], dict), reply
    return reply["error"]["message"]


# --- server info and contexts ----------------------------------------------------------------


@pytest.mark.slow  # the module's corpus import (~5 s) is paid by the first test
def test_server_info_has_what_the_client_needs(client, corpus, seeded):
    _, _, work = seeded
    info = ok(client, "get_server_info")
    for key in ("observatory", "latest_context", "operational_context", "edit_context",
                "versions_context", "build_context", "bad_files_list", "mappings",
                "mapping_url", "reference_url", "config_url", "pickle_url",
                "download_metadata", "force_remote_mode", "last_synced", "crds_version",
                "max_headers_per_rpc", "context_history"):
        assert key in info, key
    assert info["observatory"] == "hst"
    assert info["latest_context"] == info["operational_context"] == "hst_9000.pmap"
    assert info["reference_url"]["hst"].endswith("/unchecked_get/references/hst/")
    assert [h[1] for h in info["context_history"]] == ["hst_0001.pmap", "hst_9000.pmap"]
    from crds.client.proxy import crds_decode

    metadata = crds_decode(info["download_metadata"])
    on_disk = {p.name: p for p in (corpus / "contexts/hst/references").iterdir()
               if p.name != "hst_acs_biasfile_0002.fits"}  # only hst_0002 names it
    on_disk |= {p.name: p for p in (work / "synthetic/mappings").iterdir()}
    on_disk |= {p.name: p for p in (work / "synthetic/references").iterdir()}
    for name, path in on_disk.items():
        assert metadata[name] == {"size": str(path.stat().st_size), "sha1sum": sha1(path)}
    assert "hst_acs_biasfile_0002.fits" not in metadata
    assert set(info["mappings"]) == {n for n in metadata if n.endswith("map")}
    assert len(info["mappings"]) == 116 + 3  # README: hst_0001 has 116 mappings


def test_default_build_and_history(client, seeded):
    assert ok(client, "get_default_context", "hst") == "hst_9000.pmap"
    assert ok(client, "get_default_context", "hst", "edit") == "hst_9000.pmap"
    assert ok(client, "get_default_context") == "hst_9000.pmap"
    assert ok(client, "get_build_context", "hst") == "hst_9000.pmap"
    history = ok(client, "get_context_history", "hst")
    assert [h[1] for h in history] == ["hst_0001.pmap", "hst_9000.pmap"]
    assert history == sorted(history)
    assert ok(client, "get_context_by_date", "2999-01-01T00:00:00", "hst") == "hst_9000.pmap"
    sets = [r for r in seeded[1].read_all(types=[ev.ContextSet.type])
            if r.event.kind == "latest"]
    assert ok(client, "get_context_by_date", sets[0].recorded_at, "hst") == "hst_0001.pmap"
    assert ok(client, "get_context_by_date", "hst-" + sets[1].recorded_at.rstrip("Z"),
              "hst") == "hst_9000.pmap"
    # before the first recorded latest (issue 15): the earliest context, and a warning
    early = client.post("/json/get_context_by_date/t-1/", data=json.dumps(
        {"jsonrpc": "1.0", "method": "get_context_by_date", "params": ["1999-01-01", "hst"],
         "id": "t-1"})).get_json()
    assert (early["result"], early["error"]) == ("hst_0001.pmap", None)
    assert "before the first recorded latest context" in early["warnings"][0]
    assert "unknown observatory" in err(client, "get_default_context", "jwst")
    assert "state" in err(client, "get_default_context", "hst", "bogus")


@pytest.mark.slow
def test_mapping_and_reference_names_match_the_crds_library(client, corpus, monkeypatch):
    from crds.core import rmap

    monkeypatch.setenv("CRDS_MAPPATH_SINGLE", str(corpus / "contexts/hst/mappings"))

    pmap = rmap.load_mapping(str(corpus / "contexts/hst/mappings/hst_0001.pmap"))
    assert ok(client, "get_mapping_names", "hst_0001.pmap") == sorted(pmap.mapping_names())
    names = ok(client, "get_reference_names", "hst_0001.pmap")
    assert names == sorted(pmap.reference_names())
    assert len(names) == 14576  # README
    assert ok(client, "get_mapping_names", "hst_acs.imap") == sorted(
        pmap.get_imap("acs").mapping_names())
    assert ok(client, "get_reference_names", "hst_acs_bpixtab.rmap") == sorted(
        pmap.get_imap("acs").get_rmap("bpixtab").reference_names())
    assert "unknown context" in err(client, "get_mapping_names", "hst_0777.pmap")
    assert "unknown mapping" in err(client, "get_mapping_names", "hst_acs_0777.rmap")
    assert "not a path" in err(client, "get_mapping_names", "../hst_0001.pmap")


def test_large_results_are_crds_encoded(client):
    reply = call(client, "get_reference_names", "hst_0001.pmap")
    assert reply["result"]["crds_encoded"] == "1.0"  # 14,576 names: gzip + base64
    small = call(client, "get_default_context", "hst")
    assert small["result"] == "hst_9000.pmap"


def test_required_parkeys(client, corpus):
    parkeys = ok(client, "get_required_parkeys", "hst_0001.pmap")
    assert sorted(parkeys) == ["acs", "cos", "nicmos", "stis", "wfc3", "wfpc2"]
    text = (corpus / "contexts/hst/mappings/hst_acs_biasfile_0001.rmap").read_text()
    for key in ("DETECTOR", "CCDAMP", "NUMCOLS", "DATE-OBS", "TIME-OBS", "XCORNER"):
        assert key in text and key in parkeys["acs"]
    assert "INSTRUME" in parkeys["acs"]


# --- files -----------------------------------------------------------------------------------


def test_file_info_and_map(client, corpus):
    path = corpus / "contexts/hst/references/j4d1435jj_bpx.fits"
    info = ok(client, "get_file_info", "hst", path.name)
    assert info["sha1sum"] == sha1(path) and info["size"] == str(path.stat().st_size)
    assert (info["state"], info["rejected"], info["blacklisted"]) == ("archived", "false", "false")
    assert info["instrument"] == "acs" and info["filekind"] == "bpixtab"
    assert ok(client, "get_file_info", "hst_0001.pmap", path.name) == info
    assert "not known" in err(client, "get_file_info", "hst", "nope_bpx.fits")
    infos = ok(client, "get_file_info_map", "hst", [path.name, "nope.fits"],
               ["size", "sha1sum", "state"])
    assert infos == {path.name: {"size": str(path.stat().st_size), "sha1sum": sha1(path),
                                 "state": "archived"}, "nope.fits": "NOT FOUND"}
    everything = ok(client, "get_file_info_map", "hst")
    assert len(everything) == 116 + 9 + 3 + N_SYNTHETIC
    assert "unknown" in err(client, "get_file_info_map", "hst", None, ["size", "colour"])
    assert "list of strings" in err(client, "get_file_info_map", "hst", [1, 2])


def test_list_mappings_and_references(client, corpus):
    assert ok(client, "list_mappings", "hst", "*.pmap") == ["hst_0001.pmap", "hst_9000.pmap"]
    refs = ok(client, "list_references", "hst", "*")
    expected = {p.name for p in (corpus / "contexts/hst/references").iterdir()}
    expected -= {"hst_acs_biasfile_0002.fits"}
    expected |= {synthetic_reference_name(i) for i in range(N_SYNTHETIC)}
    assert refs == sorted(expected)
    assert ok(client, "list_references", "hst", "*.r1h") == sorted(
        n for n in expected if n.endswith(".r1h"))


# --- best references -------------------------------------------------------------------------


def _oracle(corpus, n=60):
    lines = (corpus / "oracle/bestrefs_hst_0001.jsonl").read_text().splitlines()
    cases = [json.loads(line) for line in lines]
    return cases[::len(cases) // n] + cases[-3:]  # the error lines are the last 1%


def _same(got: object, expected: object) -> bool:
    """The oracle rule of test_bestrefs_oracle: lookup failures other than n/a agree as
    failures (crds' message wording is not part of the contract), everything else exactly."""
    def failure(value):
        return isinstance(value, str) and value.startswith("NOT FOUND") and \
            value != "NOT FOUND n/a"
    if isinstance(expected, dict) and isinstance(got, dict):
        return set(got) == set(expected) and all(_same(got[k], expected[k]) for k in got)
    return failure(got) if failure(expected) else got == expected


def test_best_references_equal_the_crds_oracle(client, corpus):
    cases = _oracle(corpus)
    for case in cases:
        if "error" in case["expected"]:
            message = err(client, "get_best_references", "hst_0001.pmap", case["header"])
            assert _same("NOT FOUND " + message, case["expected"]["error"])
        else:
            got = ok(client, "get_best_references", "hst_0001.pmap", case["header"])
            assert _same(got, case["expected"]), case["id"]
    assert any("error" in case["expected"] for case in cases)
    header_map = {case["id"]: case["header"] for case in cases}
    got = ok(client, "get_best_references_by_header_map", "hst_0001.pmap", header_map)
    for case in cases:  # CRDS's shape: [True, refs] or [False, "NOT FOUND ..."]
        expected = case["expected"]
        found, answer = got[case["id"]]
        assert found is ("error" not in expected), case["id"]
        assert _same(answer, expected.get("error", expected)), case["id"]
    one = cases[0]
    types = sorted(one["expected"])[:2]
    assert ok(client, "get_best_references", "hst_0001.pmap", one["header"], types) == {
        t: one["expected"][t] for t in types}


def test_best_references_of_the_synthetic_latest(client):
    header = {"INSTRUME": "ACS", "DETECTOR": "WFC", "APERTURE": aperture(3),
              "DATE-OBS": "2001-01-01", "TIME-OBS": "00:00:00"}
    for context in ("hst_9000.pmap", "hst-latest", "hst-edit", "2999-01-01T00:00:00"):
        assert ok(client, "get_best_references", context, header, ["bpixtab"]) == {
            "bpixtab": synthetic_reference_name(3)}


def test_best_references_parameter_errors(client):
    assert "header" in err(client, "get_best_references", "hst_0001.pmap", ["INSTRUME"])
    assert "reftypes" in err(client, "get_best_references", "hst_0001.pmap", {}, "biasfile")
    assert "header" in err(client, "get_best_references", "hst_0001.pmap",
                           {"INSTRUME": {"nested": 1}})
    assert "unknown context" in err(client, "get_best_references", "hst_0099.pmap", {})
    assert "expected a non-empty string" in err(client, "get_best_references", 7, {})
    assert "header_map" in err(client, "get_best_references_by_header_map", "hst_0001.pmap",
                               [1, 2])
    assert "wrong parameters" in err(client, "get_best_references")
    assert "wrong parameters" in err(client, "get_best_references", "a", {}, None, 4)


# --- datasets and reprocessing ---------------------------------------------------------------


def test_datasets_by_id(client, seeded, corpus, tmp_path):
    from crds_events.reprocessing.datasets import import_datasets

    settings, store, _ = seeded
    cases = [c for c in _oracle(corpus, 30) if "error" not in c["expected"]][:6]
    source = tmp_path / "datasets.jsonl"
    source.write_text("".join(json.dumps({"id": f"P{i:03d}:P{i:03d}X", "header": c["header"]})
                              + "\n" for i, c in enumerate(cases)))
    import_datasets(settings, store, source)
    instrument = cases[0]["header"]["INSTRUME"]
    expected_ids = sorted(f"P{i:03d}:P{i:03d}X" for i, c in enumerate(cases)
                          if c["header"]["INSTRUME"] == instrument)
    assert ok(client, "get_dataset_ids", "hst_0001.pmap", instrument.lower()) == expected_ids
    headers = ok(client, "get_dataset_headers_by_id", "hst_0001.pmap", ["P000:P000X", "P001",
                                                                         "NOPE"])
    assert headers["P000:P000X"] == cases[0]["header"]
    assert headers["P001:P001X"] == cases[1]["header"]
    assert headers["NOPE"].startswith("NOT FOUND")
    refs = ok(client, "get_best_references_by_ids", "hst_0001.pmap", ["P002:P002X", "NOPE"])
    assert sorted(refs) == ["NOPE", "P002:P002X"]  # CRDS's shape: (found, refs or reason)
    assert refs["P002:P002X"][0] is True and _same(refs["P002:P002X"][1], cases[2]["expected"])
    assert refs["NOPE"][0] is False and refs["NOPE"][1].startswith("NOT FOUND")
    with_headers = ok(client, "get_best_references_by_ids", "hst_0001.pmap", ["P002:P002X"],
                      None, True)
    assert with_headers["headers"] == {"P002:P002X": cases[2]["header"]}
    assert with_headers["P002:P002X"] == refs["P002:P002X"]
    aui = ok(client, "get_aui_best_references", "hst_0001.pmap", ["P002:P002X", "NOPE"])
    assert aui["NOPE"] == refs["NOPE"]
    found = [v for v in cases[2]["expected"].values() if not v.startswith("NOT FOUND")]
    assert found and aui["P002:P002X"][0] is True
    assert sorted(aui["P002:P002X"][1]) == sorted(found)  # the files only, no NOT FOUND
    assert "date" in err(client, "get_aui_best_references", "hst_0099.pmap", ["P002"])
    assert "dataset_ids" in err(client, "get_aui_best_references", "hst_0001.pmap", "P002")
    assert "dataset_ids" in err(client, "get_dataset_headers_by_id", "hst_0001.pmap", "P000")


def test_affected_datasets(client, seeded):
    settings, store, _ = seeded
    assert "No precomputed affected datasets results exist" in err(
        client, "get_affected_datasets", "hst")
    ids = ["J8CB01U2Q:J8CB01U2Q", "O8K401010:O8K401AAQ"]
    result = {"old_context": "hst_0001.pmap", "new_context": "hst_9000.pmap", "count": 2,
              "candidates": 5, "distinct": 2, "by_instrument": {"ACS": 1, "STIS": 1},
              "by_type": {}, "errors": {}, "changed": {},
              "groups": [{"instrument": "ACS", "changes": [["bpixtab", "a", "b"]],
                          "ids": [ids[0]]},
                         {"instrument": "STIS", "changes": [["bpixtab", "c", "d"]],
                          "ids": [ids[1]]}]}
    digest = ArtifactStore.for_root(settings.root).put_json(result)
    store.record(ev.AffectedDatasetsComputed(
        observatory="hst", old_context="hst_0001.pmap", new_context="hst_9000.pmap", count=2,
        digest=digest, by_instrument={"ACS": 1, "STIS": 1}))
    affected = ok(client, "get_affected_datasets", "hst")  # the last change of latest
    assert affected["affected_ids"] == ids and affected["bestrefs_status"] == 0
    assert affected["old_context"] == "hst_0001.pmap"
    assert ok(client, "get_affected_datasets", "hst", "hst_0001.pmap",
              "hst_9000.pmap")["affected_ids"] == ids
    assert "give both" in err(client, "get_affected_datasets", "hst", "hst_0001.pmap")
    # held until the pipeline runs the new context: not served meanwhile (the CRDS race)
    store.record(ev.ReprocessingHeld(observatory="hst", new_context="hst_9000.pmap",
                                     pipeline="pipeline"))
    assert "held until the pipeline runs hst_9000.pmap" in err(
        client, "get_affected_datasets", "hst")
    store.record(ev.ReprocessingReleased(observatory="hst", new_context="hst_9000.pmap",
                                         pipeline="pipeline", pushed_context="hst_9000.pmap"))
    assert ok(client, "get_affected_datasets", "hst")["affected_ids"] == ids


# --- remote contexts and jpoll ---------------------------------------------------------------


def test_push_and_get_remote_context(client, seeded):
    from crds_events.contexts.pipelines import add_pipeline

    _, store, _ = seeded
    key = add_pipeline(store, "ops-pipe").key
    assert "has not pushed" in err(client, "get_remote_context", "hst", "ops-pipe")
    assert ok(client, "push_remote_context", "hst", "latest", key,
              "hst_0001.pmap") == "hst_0001.pmap"
    pushed = [r.event for r in store.read_all(types=[ev.RemoteContextPushed.type])]
    assert pushed[-1] == ev.RemoteContextPushed(observatory="hst", pipeline="ops-pipe",
                                                context="hst_0001.pmap")
    assert ok(client, "get_remote_context", "hst", "ops-pipe") == "hst_0001.pmap"
    assert "key" in err(client, "push_remote_context", "hst", "latest", "bad key!",
                        "hst_0001.pmap")
    assert "kind" in err(client, "push_remote_context", "hst", "edit", key, "hst_0001.pmap")
    assert "not the key of a registered pipeline" in err(
        client, "push_remote_context", "hst", "latest", "ops-pipe", "hst_0001.pmap")
    assert "hst_0777.pmap: unknown" in err(client, "push_remote_context", "hst", "latest", key,
                                           "hst_0777.pmap")


def test_jpoll_messages_follow_a_submission(client, seeded):
    _, store, _ = seeded
    with client.application.app_context():  # the unguessable key handed to the submitter
        key = jpoll.channel_key("sub-x")
    assert "Channel 'sub-x' not found" in err(client, "jpoll_pull_messages", "sub-x")
    assert ok(client, "jpoll_pull_messages", key) == []  # a channel open before its start
    store.record(ev.SubmissionStarted(submission_id="sub-x", observatory="hst",
                                      deliverer="jane", instrument="acs", description="d",
                                      files=("a.fits",)))
    store.record(ev.SubmissionProgress(submission_id="sub-x", message="certifying a.fits"))
    # knowing the submission id (shown on pages) is not enough to read its progress
    assert "Channel 'sub-x' not found" in err(client, "jpoll_pull_messages", "sub-x")
    assert "not found" in err(client, "jpoll_pull_messages", "sub-x." + "0" * 32)
    first = ok(client, "jpoll_pull_messages", key)
    assert [m["type"] for m in first] == ["log_message", "log_message"]
    assert first[1]["data"] == "certifying a.fits"
    store.record(ev.SubmissionReady(submission_id="sub-x", files=("x.fits",),
                                    new_context="hst_9001.pmap"))
    later = ok(client, "jpoll_pull_messages", key, str(first[-1]["id"]))
    assert len(later) == 1 and later[0]["type"] == "done"
    assert later[0]["data"]["status"] == 0
    # CRDS's shape: the result is the ready URL (crds submit takes the id from its end)
    assert later[0]["data"]["result"] == "http://localhost/submissions/sub-x"
    assert later[0]["data"]["new_context"] == "hst_9001.pmap"
    assert "since_id" in err(client, "jpoll_pull_messages", key, "abc")
    assert "cannot be aborted" in err(client, "jpoll_abort", key)


# --- protocol errors -------------------------------------------------------------------------


def test_malformed_requests_get_json_rpc_errors(client):
    assert "malformed" in call(client, None, raw="{not json")["error"]["message"]
    assert "JSON object" in call(client, None, raw="[1, 2]")["error"]["message"]
    assert "empty" in call(client, None, raw="")["error"]["message"]
    assert "'method'" in call(client, None, raw='{"params": [], "id": 3}')["error"]["message"]
    reply = call(client, None, raw='{"method": "get_server_info", "params": 5, "id": 9}')
    assert "'params'" in reply["error"]["message"] and reply["id"] == 9
    assert "unknown method" in err(client, "no_such_method")
    assert "unknown method" in err(client, "__init__")
    reply = call(client, None, raw=b'\xff\xfe{"method"', path="/json/")
    assert reply["error"]["message"].startswith("malformed")


def test_keyword_params_and_any_path_below_json(client):
    assert ok(client, "get_default_context", observatory="hst", state="edit") == "hst_9000.pmap"
    body = json.dumps({"method": "get_default_context", "params": ["hst"], "id": 1})
    for path in ("/json/", "/json", "/json/x/y/z/"):
        response = client.post(path, data=body, content_type="text/plain")
        if response.status_code in (301, 308):  # /json -> /json/
            continue
        assert response.get_json()["result"] == "hst_9000.pmap"


def test_http_errors_below_json_are_json_rpc_errors(client, seeded):
    settings, store, _ = seeded
    response = client.get("/json/get_server_info/1/")
    assert response.status_code == 200 and response.get_json()["error"]["message"]
    response = client.put("/json/x/")  # 405 (or the pages' CSRF 400 that runs first)
    assert response.status_code == 200
    assert re.match(r"40[05] ", response.get_json()["error"]["message"])
    small = create_app(settings, store, {"RPC_MAX_BODY": 100, "MAX_CONTENT_LENGTH": 1000})
    tiny = small.test_client()
    body = json.dumps({"method": "get_best_references", "params": ["hst_0001.pmap",
                                                                   {"X": "y" * 200}], "id": 1})
    reply = tiny.post("/json/", data=body)
    assert reply.status_code == 200 and "exceeds the limit" in reply.get_json()["error"]["message"]
    reply = tiny.post("/json/", data="x" * 5000)
    assert reply.status_code == 200
    assert reply.get_json()["error"]["message"]
    assert client.get("/not-json").status_code == 404  # elsewhere: ordinary HTTP errors


def test_the_wsgi_server_serves_the_client_protocol_and_stops_cleanly(seeded):
    """waitress as `serve` runs it: a real socket, the client's URL shape, a clean stop
    (the autouse no_leaked_threads fixture fails the test if a thread survives)."""
    import urllib.request
    from functools import partial

    from crds_events.server import parts
    from crds_events.server.core import Server
    from crds_events.server.wsgi import WebServer

    settings, _, _ = seeded
    server = Server(settings, [partial(parts.web, threads=2)], host="127.0.0.1", port=0)
    web = server.component("web", WebServer)
    server.start()
    try:
        body = json.dumps({"jsonrpc": "1.0", "method": "get_default_context",
                           "params": ["hst"], "id": "x"}).encode()
        with urllib.request.urlopen(web.url + "/json/get_default_context/x/", body,
                                    timeout=30) as reply:
            assert json.loads(reply.read()) == {"result": "hst_9000.pmap", "error": None,
                                                "id": "x"}
        name = synthetic_reference_name(0)
        with urllib.request.urlopen(f"{web.url}/unchecked_get/references/hst/{name}",
                                    timeout=30) as reply:
            data = reply.read()
        assert data == (seeded[2] / "synthetic/references" / name).read_bytes()
    finally:
        server.stop()
    assert not any(t.name == "crds-events-web" for t in threading.enumerate())


def test_new_crds_methods_refuse_bad_parameters_by_name(client, seeded):
    """The URL, AUI and system-versions methods: junk is a named error, never internal."""
    settings = seeded[0]
    cases = [
        ("get_mapping_url", ["hst_9000.pmap", 7], "mapping"),
        ("get_mapping_url", [None, "hst_9000.pmap"], "context"),
        ("get_mapping_url", ["hst_9000.pmap", "hst_acs_bpixtab_10000.fits"], "not a mapping"),
        ("get_reference_url", ["hst", "../../db.sqlite"], "reference"),
        ("get_reference_url", ["nope.imap", "hst_acs_bpixtab_10000.fits"], "unknown mapping"),
        ("get_url", ["hst_9000.pmap", ""], "filename"),
        ("get_url", ["hst-bogus", "hst_9000.pmap"], "context"),
        ("get_aui_best_references", [["hst_9000.pmap"], []], "date"),
        ("get_aui_best_references", ["hst_9000.pmap", [1, 2]], "dataset_ids"),
        ("get_system_versions", [{"v": 1}], "master_version"),
        ("get_system_versions", ["x" * 200], "master_version"),
        ("get_system_versions", ["1.0", 5], "context"),
        ("get_best_references_by_ids", ["hst_9000.pmap", ["A"], None, "yes"],
         "include_headers"),
    ]
    for method, params, named in cases:
        message = err(client, method, *params)
        assert named in message and "internal error" not in message, (method, message)
        assert str(settings.root) not in message
    url = ok(client, "get_reference_url", "hst_acs_bpixtab_9000.rmap",
             "hst_acs_bpixtab_10000.fits")
    assert url == "http://localhost/unchecked_get/references/hst/hst_acs_bpixtab_10000.fits"
    assert client.get(url).status_code == 200
