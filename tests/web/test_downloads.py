"""/unchecked_get/: only archived files, never anything outside the file store, with the
sha1 and size that download_metadata announces, conditional and range requests."""

from __future__ import annotations

import ast
import hashlib
import os

import pytest
from fixtures.rpc import fits_bytes, make_root, synthetic_reference_name

from crds_events import events as ev
from crds_events.handlers.runner import HandlerRunner
from crds_events.store.eventlog import SQLiteEventStore
from crds_events.store.filestore import FileStore
from crds_events.store.projections import default_projections
from crds_events.web.rpc import crds_decode

REF = synthetic_reference_name(1)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """A root with a small synthetic context (archived), plus traps: a delivered but not
    archived file in the store, a released name that is a symlink to a file outside, and a
    secret file next to the store."""
    work = tmp_path_factory.mktemp("downloads")
    settings = make_root(work / "root", None, 3, work)
    files = FileStore.from_settings(settings)
    store = SQLiteEventStore(settings.db_path)
    unarchived = fits_bytes({"INSTRUME": "ACS", "NOTE": "not archived yet"})
    sha1, size = files.put(unarchived, "hst_acs_bpixtab_20001.fits")
    store.record(ev.FileCataloged(name="hst_acs_bpixtab_20001.fits", delivery="hst_1",
                                  observatory="hst", sha1=sha1, size=size, kind="reference",
                                  instrument="acs", filekind="bpixtab"))
    secret = work / "secret.fits"
    secret.write_bytes(b"top secret" * 10)
    link = files.references_dir / "hst_acs_bpixtab_20002.fits"
    os.symlink(secret, link)
    digest = hashlib.sha1(secret.read_bytes()).hexdigest()
    for event in (ev.FileCataloged(name=link.name, delivery="hst_2", observatory="hst",
                                   sha1=digest, size=secret.stat().st_size, kind="reference",
                                   instrument="acs", filekind="bpixtab"),
                  ev.FileReleased(name=link.name, delivery="hst_2")):
        store.record(event)
    HandlerRunner(store, default_projections()).run_until_idle()
    yield settings, store, work
    store.close()


def _metadata(client) -> dict:
    reply = client.post("/json/", data='{"method": "get_server_info", "params": [], "id": 1}')
    return crds_decode(reply.get_json()["result"]["download_metadata"])


def _get(client, url, **headers):
    response = client.get(url, headers=headers)
    data = response.data
    response.close()
    return response, data


def test_archived_files_are_served_as_announced(client, seeded):
    _, _, work = seeded
    metadata = _metadata(client)
    for kind, name in (("references", REF), ("mappings", "hst_9000.pmap"),
                       ("mappings", "hst_acs_bpixtab_9000.rmap")):
        response, data = _get(client, f"/unchecked_get/{kind}/hst/{name}")
        assert response.status_code == 200, name
        source = work / "synthetic" / kind / name
        assert data == source.read_bytes()
        assert metadata[name] == {"size": str(len(data)),
                                  "sha1sum": hashlib.sha1(data).hexdigest()}
        assert response.headers["ETag"] == f'"{metadata[name]["sha1sum"]}"'
        assert response.headers["Content-Length"] == str(len(data))
        assert "Last-Modified" in response.headers


def test_conditional_and_range_requests(client, seeded):
    _, _, work = seeded
    url = f"/unchecked_get/references/hst/{REF}"
    full, data = _get(client, url)
    etag, modified = full.headers["ETag"], full.headers["Last-Modified"]
    assert _get(client, url, **{"If-None-Match": etag})[0].status_code == 304
    assert _get(client, url, **{"If-Modified-Since": modified})[0].status_code == 304
    assert _get(client, url, **{"If-None-Match": '"0000"'})[0].status_code == 200
    part, body = _get(client, url, Range="bytes=80-159")
    assert part.status_code == 206 and body == data[80:160]
    assert part.headers["Content-Range"] == f"bytes 80-159/{len(data)}"
    tail, body = _get(client, url, Range="bytes=-10")
    assert tail.status_code == 206 and body == data[-10:]
    assert _get(client, url, Range=f"bytes={len(data) + 5}-")[0].status_code == 416
    stale, body = _get(client, url, Range="bytes=0-9", **{"If-Range": '"other"'})
    assert stale.status_code == 200 and body == data  # If-Range mismatch: the whole file
    head = client.head(url)
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data))
    head.close()


@pytest.mark.parametrize("url", [
    "/unchecked_get/references/hst/hst_acs_bpixtab_20001.fits",  # delivered, not archived
    "/unchecked_get/references/hst/hst_acs_bpixtab_20002.fits",  # symlink out of the store
    "/unchecked_get/references/hst/nope_bpx.fits",  # unknown
    "/unchecked_get/references/hst/hst_9000.pmap",  # a mapping under references
    "/unchecked_get/mappings/hst/" + REF,  # a reference under mappings
    "/unchecked_get/references/jwst/" + REF,  # another observatory
    "/unchecked_get/references/hst/../../events.db",
    "/unchecked_get/references/hst/..%2F..%2Fevents.db",
    "/unchecked_get/references/hst/%2e%2e/%2e%2e/events.db",
    "/unchecked_get/references/hst/%252e%252e%252fevents.db",
    "/unchecked_get/references/hst//etc/passwd",
    "/unchecked_get/references/hst/%2Fetc%2Fpasswd",
    "/unchecked_get/mappings/hst/..",
    "/unchecked_get/mappings/hst/.incoming-x",
    "/unchecked_get/references/hst/" + REF + "%00.txt",
])
def test_refused_names_are_never_served(client, url):
    response, data = _get(client, url)
    assert response.status_code == 404, url
    assert b"top secret" not in data and b"SQLite" not in data


def test_refusal_happens_before_the_filesystem(seeded, client, monkeypatch):
    """A name failing the basename check never reaches os.open/os.stat."""
    touched = []
    real_open = os.open

    def spy(path, *args, **kwargs):
        touched.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    _get(client, "/unchecked_get/references/hst/..%2Fsecret.fits")
    _get(client, "/unchecked_get/references/hst/a%5Cb.fits")
    assert not [p for p in touched if "secret" in p or "a\\b" in p]


def test_server_config_is_the_client_cache_form(client):
    response, data = _get(client, "/unchecked_get/config/hst/server_config")
    assert response.status_code == 200
    info = ast.literal_eval(data.decode())
    assert info["latest_context"] == "hst_9000.pmap" and info["observatory"] == "hst"
    assert _get(client, "/unchecked_get/config/jwst/server_config")[0].status_code == 404
