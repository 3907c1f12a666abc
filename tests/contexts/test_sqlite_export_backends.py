"""``get_sqlite_db`` (`crds_events.contexts.sqlite_export`) on both backends: the catalog
database is built from the projections through the web's read connection (SQLite's, or a
read-only psycopg one), answers alike, and is rebuilt when the projections move on."""

from __future__ import annotations

import base64
import sqlite3
import zlib

from fixtures.pages import jwst_app

from crds_events.contexts import pointers
from crds_events.contexts.sqlite_export import table_names
from crds_events.store import open_store
from crds_events.store.projections import rebuild


def _catalog(client, path) -> sqlite3.Connection:
    reply = client.post("/json/", json={"jsonrpc": "1.0", "method": "get_sqlite_db",
                                        "params": ["jwst"], "id": 1}).get_json()
    assert reply["error"] is None, reply["error"]
    path.write_bytes(zlib.decompress(base64.b64decode(reply["result"])))
    return sqlite3.connect(path)


def test_the_catalog_database_on_both_backends(tmp_path, database_url):
    app, settings = jwst_app(tmp_path, database_url)
    client = app.test_client()
    catalog, history = table_names("jwst")
    db = _catalog(client, tmp_path / "first.sqlite3")
    names = {name for (name,) in db.execute(f"SELECT name FROM {catalog}")}
    # generations 1 and 2: 5 + 3 mappings, 2 + 1 references, all archived
    assert {"jwst_0001.pmap", "jwst_0002.pmap", "jwst_nircam_flat_0002.fits"} <= names
    assert len(names) == 11
    assert db.execute(f"SELECT DISTINCT state FROM {catalog}").fetchall() == [("archived",)]
    latest = db.execute(f"SELECT context FROM {history} WHERE state = 'latest' "
                        "ORDER BY id").fetchall()
    assert latest == [("jwst_0001.pmap",), ("jwst_0002.pmap",)]
    db.close()

    # a change of the history reaches the projections, and the next answer shows it
    with open_store(settings) as store:
        pointers.set_context(settings, store, "latest", "jwst_0001.pmap", "back", "otto")
        rebuild(store)
    db = _catalog(client, tmp_path / "second.sqlite3")
    latest = db.execute(f"SELECT context FROM {history} WHERE state = 'latest' "
                        "ORDER BY id").fetchall()
    assert latest[-1] == ("jwst_0001.pmap",) and len(latest) == 3
    db.close()
