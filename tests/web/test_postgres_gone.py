"""The web app over a PostgreSQL log that is gone (nothing listens), or that drops its
connections (a restart, a failover): /health answers 503 naming the log (its password
hidden), /metrics says ``crds_events_up 0``, pages answer 503 and the RPC an error object,
never a psycopg traceback; once the database answers again, so does the app."""

from __future__ import annotations

import pytest
from helpers import free_port

from crds_events.config import load_settings
from crds_events.store import open_store
from crds_events.store.root import init_root
from crds_events.web import create_app

pytest.importorskip("psycopg", reason="PostgreSQL tests need psycopg (pip install -e '.[test]')")

RPC = {"jsonrpc": "1.0", "method": "get_server_info", "params": [], "id": 1}


def _app(tmp_path, url: str):
    settings = load_settings(tmp_path / "root", {"observatory": "jwst", "database_url": url},
                             environ={})
    return create_app(settings, config={"TESTING": True}).test_client()


def _answers_unavailable(client) -> None:
    health = client.get("/health")
    assert health.status_code == 503
    body = health.get_json()
    assert body["ok"] is False and "unavailable" in body["problems"][0], body
    assert "s3cret" not in health.get_data(as_text=True)
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "crds_events_up 0" in metrics.get_data(as_text=True)
    page = client.get("/history")
    assert page.status_code == 503 and page.headers["Retry-After"]
    assert b"Traceback" not in page.data and b"psycopg" not in page.data
    reply = client.post("/json/", json=RPC).get_json()
    assert reply["result"] is None and "database is unavailable" in reply["error"]["message"]


def test_a_database_that_is_gone(tmp_path):
    gone = f"postgresql://crds:s3cret@127.0.0.1:{free_port()}/crds"
    (tmp_path / "root").mkdir()  # the root's files are there; its database is not
    client = _app(tmp_path, gone)
    _answers_unavailable(client)
    assert "127.0.0.1" in client.get("/health").get_json()["problems"][0]


def test_connections_dropped_then_back(tmp_path, postgres_url):
    import psycopg

    settings = load_settings(tmp_path / "root", {"observatory": "jwst",
                                                 "database_url": postgres_url}, environ={})
    init_root(settings)
    with open_store(settings):
        pass
    client = _app(tmp_path, postgres_url)
    assert client.post("/json/", json=RPC).get_json()["error"] is None
    # every connection of the app's is killed, as a database restart does
    base = postgres_url.partition("?")[0]
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    # the request that finds its connection dead answers 503; the next ones reconnect
    first = client.get("/history")
    assert first.status_code in (200, 503) and b"Traceback" not in first.data
    assert client.get("/history").status_code == 200
    assert client.post("/json/", json=RPC).get_json()["error"] is None
    health = client.get("/health").get_json()
    assert not any("unavailable" in problem for problem in health["problems"]), health
