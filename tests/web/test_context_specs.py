"""Contexts as CRDS accepts them in the RPC: imap and rmap names, instrument (and type) date
and pointer specifiers, dates before the first recorded pointer; and bad specifiers refused
with the part named.

The root (`fixtures.rpc.make_root`): the corpus ``hst_0001.pmap`` imported (latest, edit),
then a synthetic context made latest and edit, then the corpus ``hst_0002.pmap`` made edit
(its ACS goes through ``hst_acs_0002.imap`` and ``hst_acs_biasfile_0002.rmap``). Expected
best references are the corpus oracle's (crds 14.0.3); through Flask's test client, and one
call with the real client.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from fixtures.rpc import make_root

from crds_events import events as ev
from crds_events.contexts.importcache import import_cache
from crds_events.handlers.runner import HandlerRunner
from crds_events.store.eventlog import SQLiteEventStore
from crds_events.store.projections import default_projections
from crds_events.web import create_app

pytestmark = [pytest.mark.corpus]


@pytest.fixture(scope="module")
def seeded(corpus, tmp_path_factory):
    work = tmp_path_factory.mktemp("specs")
    settings = make_root(work / "root", corpus, 3, work)
    store = SQLiteEventStore(settings.db_path)
    hst = corpus / "contexts" / "hst"
    import_cache(settings, store, hst / "mappings", hst / "references", "hst_0002.pmap",
                 set_pointers=("edit",))
    HandlerRunner(store, default_projections()).run_until_idle()
    yield settings, store, work
    store.close()


def call(client, method, *params):
    body = json.dumps({"jsonrpc": "1.0", "method": method, "params": list(params), "id": "s"})
    response = client.post(f"/json/{method}/s/", data=body)
    assert response.status_code == 200
    reply = response.get_json()
    from crds.client.proxy import crds_decode

    if reply["error"] is None:
        reply["result"] = crds_decode(reply["result"])
    return reply


def ok(client, method, *params):
    reply = call(client, method, *params)
    assert reply["error"] is None, reply["error"]
    return reply["result"]


def err(client, method, *params) -> str:
    reply = call(client, method, *params)
    assert reply["result"] is None and reply["error"], reply
    return reply["error"]["message"]


def oracle(corpus, name: str, instrument: str, n: int) -> list[dict]:
    lines = (corpus / "oracle" / name).read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    return [r for r in records if r["instrument"] == instrument
            and "error" not in r["expected"]][:n]


def first_latest_time(store) -> str:
    sets = [r for r in store.read_all(types=[ev.ContextSet.type]) if r.event.kind == "latest"]
    return sets[0].recorded_at.rstrip("Z")


def test_instrument_and_type_specifiers_name_the_mappings(client, seeded):
    assert ok(client, "get_context_by_date", "hst-edit", "hst") == "hst_0002.pmap"
    assert ok(client, "get_context_by_date", "hst-acs-edit", "hst") == "hst_acs_0002.imap"
    assert ok(client, "get_context_by_date", "hst-acs-biasfile-edit", "hst") == \
        "hst_acs_biasfile_0002.rmap"
    assert ok(client, "get_context_by_date", "hst-cos-deadtab-edit", "hst") == \
        "hst_cos_deadtab.rmap"
    # latest was hst_0001 at its first setting: its ACS imap
    when = first_latest_time(seeded[1])
    assert ok(client, "get_context_by_date", f"hst-acs-{when}", "hst") == "hst_acs.imap"
    assert ok(client, "get_context_by_date", "HST-ACS-2999-01-01T00:00:00", "hst") == \
        "hst_acs_9000.imap"


def test_a_date_before_the_first_pointer_answers_the_earliest_and_says_so(client):
    response = client.post("/json/get_context_by_date/s/", data=json.dumps(
        {"jsonrpc": "1.0", "method": "get_context_by_date",
         "params": ["hst-acs-1990-01-01T00:00:00", "hst"], "id": "s"})).get_json()
    assert (response["result"], response["error"]) == ("hst_acs.imap", None)
    assert "earliest known context hst_0001.pmap" in response["warnings"][0]
    assert ok(client, "get_context_by_date", "1990-01-01", "hst") == "hst_0001.pmap"


def test_best_references_with_an_imap_equal_crds(client, corpus):
    for record in oracle(corpus, "bestrefs_hst_0001.jsonl", "ACS", 25):
        assert ok(client, "get_best_references", "hst_acs.imap", record["header"]) == \
            record["expected"], record["id"]
    headers = {r["id"]: r["header"] for r in oracle(corpus, "bestrefs_hst_0001.jsonl", "ACS", 5)}
    answers = ok(client, "get_best_references_by_header_map", "hst_acs.imap", headers)
    assert all(answers[i][0] is True for i in headers)


def test_best_references_with_an_rmap_or_a_type_specifier(client, corpus):
    for record in oracle(corpus, "bestrefs_hst_0002.jsonl", "ACS", 25):
        want = {k: v for k, v in record["expected"].items() if k == "biasfile"}
        assert ok(client, "get_best_references", "hst-acs-biasfile-edit",
                  record["header"]) == want, record["id"]
        assert ok(client, "get_best_references", "hst_acs_biasfile_0002.rmap",
                  record["header"], ["biasfile"]) == want
    header = oracle(corpus, "bestrefs_hst_0002.jsonl", "ACS", 1)[0]["header"]
    assert "can only compute bestrefs for type 'biasfile'" in err(
        client, "get_best_references", "hst_acs_biasfile_0002.rmap", header, ["darkfile"])


@pytest.mark.parametrize("context,words", [
    ("hst-foo-edit", ["instrument 'foo'", "hst_0002.pmap"]),
    ("hst-acs-nokind-edit", ["reference type 'nokind'", "hst_acs_0002.imap"]),
    ("jwst-latest", ["observatory 'jwst'"]),
    ("hst_acs_0777.imap", ["unknown mapping"]),
    ("hst-acs-2024-13-45", ["date"]),
    ("../hst_acs.imap", ["context"]),
    ("hst_acs.fits", ["expected a mapping name"]),
])
def test_bad_specifiers_are_refused_with_the_part_named(client, context, words):
    message = err(client, "get_best_references", context, {"INSTRUME": "ACS"})
    assert all(w in message for w in words), message
    assert "Traceback" not in message and "/" not in message.replace("../", "")


def test_a_pmap_only_method_refuses_an_instrument_specifier(client):
    assert "expected a .pmap" in err(client, "get_required_parkeys", "hst-acs-edit")


def test_the_real_client_resolves_an_instrument_date_spec(seeded, corpus):
    """``crds.client.api`` against the app served by werkzeug's own server (one thread)."""
    from werkzeug.serving import make_server

    settings, store, work = seeded
    app = create_app(settings, store, {"TESTING": True})
    httpd = make_server("127.0.0.1", 0, app)
    import threading

    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        record = oracle(corpus, "bestrefs_hst_0001.jsonl", "ACS", 1)[0]
        code = "import json\nfrom crds.client import api\n" + textwrap.dedent(f"""
            name = api.get_context_by_date("hst-acs-1990-01-01T00:00:00")
            refs = api.get_best_references(name, {record['header']!r})
            print("OUT=" + json.dumps([name, refs]))
        """)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
        env.update(CRDS_SERVER_URL=f"http://127.0.0.1:{httpd.server_port}",
                   CRDS_PATH=str(work / "cache"), CRDS_OBSERVATORY="hst")
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                text=True, timeout=120)
    finally:
        httpd.shutdown()
        thread.join(10)
    assert result.returncode == 0, result.stderr[-2000:]
    name, refs = json.loads([x for x in result.stdout.splitlines()
                             if x.startswith("OUT=")][-1][4:])
    assert name == "hst_acs.imap"
    assert refs == {k: v for k, v in record["expected"].items()}


def test_url_methods_take_a_specifier_as_the_context(client):
    url = ok(client, "get_mapping_url", "hst-acs-edit", "hst_acs_0002.imap")
    assert url.endswith("/unchecked_get/mappings/hst/hst_acs_0002.imap")
    assert "instrument 'foo'" in err(client, "get_mapping_url", "hst-foo-edit", "hst_acs.imap")
