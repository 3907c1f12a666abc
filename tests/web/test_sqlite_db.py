"""``get_sqlite_db``: the catalog as a SQLite file in CRDS's schema, over a running server.

The real client (``crds sync --fetch-sqlite-db`` then ``crds sql``, subprocesses) reads it;
the RPC's answer is refreshed when the catalog changes, two concurrent requests get the same
database, the submitter's personal fields are not in it, and bad parameters are refused
with the parameter named. The root holds only the small synthetic context (no corpus).
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
import threading
import urllib.request
import zlib
from pathlib import Path

import pytest
from fixtures.rpc import make_root, running_server, write_system_context
from helpers import wait_for

from crds_events.contexts.importcache import import_cache
from crds_events.store.eventlog import SQLiteEventStore

BIN = Path(sys.executable).parent
N_SYNTHETIC = 3
# The columns crds sql documents for the server's catalog (crds/misc/sql.py epilog).
CRDS_CATALOG_COLUMNS = (
    "id, name, blob, state, blacklisted, rejected, observatory, instrument, filekind, type, "
    "derived_from, sha1sum, delivery_date, activation_date, useafter_date, change_level, "
    "pedigree, reference_file_type, size, uploaded_as, creator_name, deliverer_user, "
    "deliverer_email, description, catalog_link, replaced_by_filename, comment, aperture")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("sqlite_db")
    settings = make_root(work / "root", None, N_SYNTHETIC, work)
    with running_server(settings) as url:
        yield settings, url, work


def rpc(url: str, method: str, *params: object) -> dict:
    body = json.dumps({"jsonrpc": "1.0", "method": method, "params": list(params),
                       "id": "t"}).encode()
    with urllib.request.urlopen(f"{url}/json/{method}/t/", body, timeout=60) as response:
        reply = json.loads(response.read())
    from crds.client.proxy import crds_decode  # the real client's decoder

    if reply["error"] is None:
        reply["result"] = crds_decode(reply["result"])
    return reply


def database(url: str, path: Path) -> sqlite3.Connection:
    """The database get_sqlite_db answers, decoded as crds.client.api does, at ``path``."""
    reply = rpc(url, "get_sqlite_db", "hst")
    assert reply["error"] is None, reply["error"]
    path.write_bytes(zlib.decompress(base64.b64decode(reply["result"])))
    return sqlite3.connect(path)


def crds(url: str, cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    env.update(CRDS_SERVER_URL=url, CRDS_PATH=str(cache), CRDS_OBSERVATORY="hst")
    result = subprocess.run([str(BIN / "crds"), *args], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


def test_crds_sync_fetch_sqlite_db_then_crds_sql(server):
    settings, url, work = server
    cache = work / "client_cache"
    crds(url, cache, "sync", "--fetch-sqlite-db")
    assert (cache / "config/hst/crds_db.sqlite3").is_file()
    # 3 references + rmap + imap + pmap of the synthetic context
    counted = crds(url, cache, "sql", "select count(*) from crds_hst_catalog")
    assert counted.stdout.strip().splitlines()[-1] == f"({N_SYNTHETIC + 3},)"
    tables = crds(url, cache, "sql", "--list-tables").stdout.split()
    assert tables[-2:] == ["crds_hst_catalog", "crds_hst_context_history"]
    columns = crds(url, cache, "sql", "--list-columns", "crds_hst_catalog")
    assert columns.stdout.strip().splitlines()[-1] == CRDS_CATALOG_COLUMNS
    history = crds(url, cache, "sql", "select context, state from crds_hst_context_history "
                                      "where state = 'latest'")
    assert history.stdout.strip().splitlines()[-1] == "('hst_9000.pmap', 'latest')"


def test_rows_carry_the_catalog_and_no_personal_fields(server, tmp_path):
    _settings, url, _work = server
    db = database(url, tmp_path / "db.sqlite3")
    rows = db.execute("SELECT name, type, sha1sum, size, state, instrument, filekind, "
                      "deliverer_user, deliverer_email, description FROM crds_hst_catalog "
                      "WHERE name = 'hst_acs_bpixtab_10000.fits'").fetchall()
    assert len(rows) == 1
    name, kind, sha1, size, state, instrument, filekind, *personal = rows[0]
    info = rpc(url, "get_file_info", "hst", name)["result"]
    assert (kind, sha1, str(size), state) == ("reference", info["sha1sum"], info["size"],
                                             "archived")
    assert (instrument.lower(), filekind.lower()) == ("acs", "bpixtab")
    assert personal == ["", "", ""]


def test_refreshed_when_the_catalog_changes(server, tmp_path):
    settings, url, work = server
    before = database(url, tmp_path / "before.sqlite3").execute(
        "SELECT count(*) FROM crds_hst_catalog").fetchone()[0]
    system = write_system_context(work / "system_refresh")
    with SQLiteEventStore(settings.db_path) as store:
        import_cache(settings, store, work / "system_refresh/mappings",
                     work / "system_refresh/references", system, set_pointers=("versions",))

    def counts():
        db = database(url, tmp_path / "after.sqlite3")
        try:
            return (db.execute("SELECT count(*) FROM crds_hst_catalog").fetchone()[0],
                    db.execute("SELECT count(*) FROM crds_hst_context_history WHERE "
                               "state = 'versions'").fetchone()[0])
        finally:
            db.close()

    # pmap + imap + rmap + the calver reference, and the versions pointer
    assert wait_for(lambda: counts() == (before + 4, 1), timeout=60), counts()


def test_two_requests_at_once_get_the_same_database(server):
    _settings, url, _work = server
    answers: list = []

    def fetch():
        answers.append(rpc(url, "get_sqlite_db", "hst"))

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 2 and all(a["error"] is None for a in answers)
    assert answers[0]["result"] == answers[1]["result"]


@pytest.mark.parametrize("params,words", [
    (("jwst",), ["observatory", "jwst"]),
    ((5,), ["observatory", "5"]),
    ((), ["get_sqlite_db", "wrong parameters"]),
])
def test_bad_parameters_are_named(server, params, words):
    _settings, url, _work = server
    reply = rpc(url, "get_sqlite_db", *params)
    assert reply["result"] is None
    assert all(word in reply["error"]["message"] for word in words), reply["error"]
