"""The pages and RPC read through the web's per-request connection: on PostgreSQL that is
a read-only psycopg connection (`crds_events.store.postgres_reader.ReadConnection`), and
every page renders from it as it does from SQLite's (the same populated JWST history)."""

from __future__ import annotations

import pytest
from fixtures.pages import jwst_app

LIST_PAGES = ["/", "/history", "/contexts", "/catalog", "/activity", "/events", "/plots",
              "/bestrefs", "/bestrefs/explore", "/asof/3", "/asof/0.json",
              "/events?type=ContextSet", "/events?actor=otto", "/catalog?name=FLAT",
              "/catalog?instrument=NIRCAM&state=bad", "/activity?instrument=nircam",
              "/health", "/metrics"]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def both(request, tmp_path_factory):
    url = ""
    if request.param == "postgresql":
        cluster = request.getfixturevalue("postgres_cluster")
        url = cluster.create_schema()
    app, settings = jwst_app(tmp_path_factory.mktemp("jwst"), url)
    yield request.param, app.test_client(), settings
    if url:
        cluster.drop_schema(url)


@pytest.mark.parametrize("url", LIST_PAGES)
def test_pages_render_on_both_backends(both, url):
    backend, client, settings = both
    if backend == "postgresql":
        assert not settings.db_path.exists()  # read from PostgreSQL, nothing on the side
    response = client.get(url)
    # /health: 503 when no server runs the handlers (this app runs alone)
    expected = (200, 503) if url == "/health" else (200,)
    assert response.status_code in expected, (url, response.data[:2000])
    assert b"Traceback" not in response.data


def test_the_catalog_answers_alike(both):
    backend, client, _ = both
    lower = client.get("/catalog.json?name=flat").get_json()["files"]
    upper = client.get("/catalog.json?name=FLAT").get_json()["files"]
    assert lower and upper == lower  # case-blind on both
    assert all("flat" in row["name"] for row in lower)


def test_rpc_reads_on_both_backends(both):
    _, client, _ = both
    reply = client.post("/json/", json={"jsonrpc": "1.0", "method": "get_server_info",
                                        "params": [], "id": 1}).get_json()
    assert reply["error"] is None and reply["result"]["operational_context"] == \
        "jwst_0002.pmap"
    reply = client.post("/json/", json={"jsonrpc": "1.0", "method": "get_file_info",
                                        "params": ["jwst", "jwst_0002.pmap"], "id": 2}
                        ).get_json()
    assert reply["error"] is None, reply
