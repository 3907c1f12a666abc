"""The public pages through Flask's test client: empty server, a generated JWST history,
and the corpus HST context; JSON twins, 404s, 400s and escaping."""

from __future__ import annotations

import re

import pytest
from fixtures.pages import INJECTED, empty_app, hst_app, jwst_app

from crds_events.contexts import pointers as contexts
from crds_events.rules.bestrefs import load_context
from crds_events.store.eventlog import SQLiteEventStore

LIST_PAGES = ["/", "/history", "/contexts", "/catalog", "/activity", "/events", "/plots",
              "/bestrefs", "/bestrefs/explore"]
JSON_TWINS = ["/index.json", "/history.json", "/contexts.json", "/catalog.json",
              "/activity.json", "/events.json", "/plots.json", "/bestrefs.json",
              "/bestrefs/explore.json"]


@pytest.fixture(scope="module")
def jwst(tmp_path_factory):
    app, settings = jwst_app(tmp_path_factory.mktemp("jwst"))
    return app.test_client(), settings


def _get(client, url, status=200):
    response = client.get(url)
    assert response.status_code == status, (url, response.data[:2000])
    return response


@pytest.mark.parametrize("url", LIST_PAGES + JSON_TWINS + ["/asof/0", "/asof/0.json"])
def test_every_page_renders_on_an_empty_server(tmp_path, url):
    app, _ = empty_app(tmp_path)
    response = _get(app.test_client(), url)
    if url.endswith(".json"):
        assert response.is_json
    else:
        assert b"<nav" in response.data and b"Traceback" not in response.data


@pytest.mark.parametrize("url", LIST_PAGES + JSON_TWINS)
def test_every_page_renders_populated(jwst, url):
    client, _ = jwst
    response = _get(client, url)
    if url.endswith(".json"):
        assert response.is_json
    else:
        assert b"</html>" in response.data


def test_home_shows_pointers_and_latest_references(jwst):
    client, settings = jwst
    data = _get(client, "/index.json").json
    assert data["pointers"]["latest"]["context"] == "jwst_0002.pmap"
    # independent truth: the rules loaded straight from the file store
    context = load_context(settings.store / "mappings" / "jwst" / "jwst_0002.pmap")
    expected = sorted(context.reference_names())
    shown = sorted(n for r in data["latest_references"] for n in r["references"])
    assert shown == expected
    assert b"jwst_nircam_flat_0002.fits" in _get(client, "/").data


def test_history_matches_the_library_and_escapes_descriptions(jwst):
    client, settings = jwst
    data = _get(client, "/history.json").json
    with SQLiteEventStore(settings.db_path) as store:
        truth = contexts.context_history(store)
    assert [h["position"] for h in data["history"]] == [h["position"] for h in reversed(truth)]
    assert data["history"][0]["description"] == INJECTED  # JSON keeps the text as is
    page = _get(client, "/history").data.decode()
    assert "<script>alert" not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(" in page
    assert _get(client, "/history?kind=latest").status_code == 200
    _get(client, "/history?kind=nonsense", 400)


def test_injected_html_is_text_on_every_page_showing_it(jwst):
    client, _ = jwst
    for url in ("/activity", "/events", "/history", "/", "/asof/31", "/streams/context:jwst"):
        page = _get(client, url).data.decode()
        assert "<script>alert" not in page, url


def test_context_display_and_diff(jwst):
    client, _ = jwst
    page = _get(client, "/contexts/jwst_0002.pmap").data.decode()
    for name in ("jwst_nircam_0002.imap", "jwst_nircam_flat_0002.rmap"):
        assert name in page
    # the references are in the rules, loaded on demand (issue 18): one fragment per rmap
    rules = _get(client, "/contexts/jwst_nircam_flat_0002.rmap/rules").data.decode()
    assert "jwst_nircam_flat_0002.fits" in rules
    assert "jwst_miri_flat_0001.fits" in _get(
        client, "/contexts/jwst_miri_flat_0001.rmap/rules").data.decode()
    table = _get(client, "/contexts/jwst_nircam_flat_0002.rmap.json").json
    assert table["kind"] == "reference"
    assert table["rows"][0]["files"] == ["jwst_nircam_flat_0002.fits"]
    assert table["columns"][-1] == "useafter"
    diff = _get(client, "/diff/jwst_0001.pmap/jwst_0002.pmap.json").json
    replaced = [d["text"] for d in diff["logical"]]
    assert any("replaced jwst_nircam_flat_0001.fits with jwst_nircam_flat_0002.fits" in t
               for t in replaced)
    assert "/tmp" not in " ".join(replaced) and "jwst_0002.pmap" in diff["text"]
    assert _get(client, "/diff?old=jwst_0001.pmap&new=jwst_0002.pmap", 302)
    _get(client, "/diff/jwst_0001.pmap/jwst_nircam_flat_0002.rmap", 400)
    _get(client, "/diff/jwst_0001.pmap/jwst_0099.pmap", 404)
    _get(client, "/contexts/jwst_0099.pmap", 404)
    _get(client, "/diff?old=jwst_0001.pmap", 400)


def test_browse_file(jwst):
    client, _ = jwst
    data = _get(client, "/browse/jwst_nircam_flat_0002.fits.json").json
    assert data["catalog"]["state"] == "archived"
    assert data["contents"]["header"]["INSTRUME"] == "NIRCAM"
    assert "jwst_nircam_flat_0002.rmap" in data["used_by"]
    assert "jwst_0002.pmap" in data["used_by"] and "jwst_0001.pmap" not in data["used_by"]
    assert {e["type"] for e in data["past_actions"]} >= {"FileCataloged", "FileReleased"}
    assert all("jwst_nircam_flat_0002.fits" in str(e) for e in data["past_actions"])
    assert data["constraints"], "JWST flats have constraints in the built-in specs"
    pmap = _get(client, "/browse/jwst_0002.pmap.json").json
    assert "selector" in pmap["contents"]["text"]
    assert "ContextSet" in {e["type"] for e in pmap["past_actions"]}
    page = _get(client, "/browse/jwst_0002.pmap").data.decode()
    assert "<script>alert" not in page


@pytest.mark.parametrize("url", ["/browse/nothing_here.fits", "/browse/..%2Fetc%2Fpasswd",
                                 "/events/999999", "/asof/999999", "/streams/file:none.fits",
                                 "/plots/nope.svg", "/browse/nothing.json"])
def test_unknown_things_are_404_pages(jwst, url):
    client, _ = jwst
    response = _get(client, url, 404)
    assert b"root:" not in response.data


@pytest.mark.parametrize("url", ["/events?before=x", "/events?limit=0", "/events?since=yesterday",
                                 "/catalog?state=lost", "/catalog?limit=-1",
                                 "/activity?what=x", "/history?before=a",
                                 "/bestrefs?context=nope.imap&X=1", "/bestrefs?header=junk",
                                 "/events.json?before=x"])
def test_bad_parameters_are_400_with_a_message(jwst, url):
    client, _ = jwst
    response = _get(client, url, 400)
    name = re.search(r"[?&](\w+)=", url).group(1)
    assert name.encode() in response.data


def test_catalog_filters_and_paging(jwst):
    client, settings = jwst
    everything = _get(client, "/catalog.json?limit=1000").json["files"]
    with SQLiteEventStore(settings.db_path) as store:
        names = sorted(r[0] for r in store.db.conn.execute("SELECT name FROM files"))
    assert [f["name"] for f in everything] == names
    paged, url = [], "/catalog.json?limit=3"
    while url:
        data = _get(client, url).json
        paged += [f["name"] for f in data["files"]]
        url = f"/catalog.json?limit=3&after={data['next_after']}" if data["next_after"] else None
    assert paged == names
    nircam = _get(client, "/catalog.json?instrument=nircam&kind=reference").json["files"]
    assert {f["name"] for f in nircam} == {n for n in names if "nircam" in n and n.endswith(".fits")}
    assert _get(client, "/catalog.json?name=miri_flat").json["files"]


def test_best_references_form_and_explorer(jwst, tmp_path):
    client, settings = jwst
    menus = _get(client, "/bestrefs/explore.json?instrument=nircam").json["parameters"]
    detector = menus["META.INSTRUMENT.DETECTOR"][0]
    filter_ = menus["META.INSTRUMENT.FILTER"][0]
    header = {"META.INSTRUMENT.NAME": "NIRCAM", "META.INSTRUMENT.DETECTOR": detector,
              "META.INSTRUMENT.FILTER": filter_, "META.OBSERVATION.DATE": "2030-01-01",
              "META.OBSERVATION.TIME": "00:00:00"}
    context = load_context(settings.store / "mappings" / "jwst" / "jwst_0002.pmap")
    expected = context.best_references(header)
    got = client.get("/bestrefs.json", query_string=header).json
    assert got["bestrefs"] == dict(sorted(expected.items()))
    text = "\n".join(f"{k} = {v}" for k, v in header.items())
    form = _get(client, "/bestrefs").data.decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    fields = {"header": text, "context": "jwst_0001.pmap"}
    if token:  # the authenticated pages add CSRF protection to every POST
        fields["csrf_token"] = token.group(1)
    posted = client.post("/bestrefs.json", data=fields)
    assert posted.status_code == 200
    old = load_context(settings.store / "mappings" / "jwst" / "jwst_0001.pmap")
    assert posted.json["bestrefs"] == dict(sorted(old.best_references(header).items()))
    _get(client, "/bestrefs/explore?instrument=wfc3", 400)


@pytest.mark.slow
@pytest.mark.corpus
def test_corpus_hst_context_pages(tmp_path, corpus):
    app, settings = hst_app(tmp_path, corpus)
    client = app.test_client()
    assert _get(client, "/index.json").json["pointers"]["latest"]["context"] == "hst_0001.pmap"
    page = _get(client, "/contexts/hst_0001.pmap").data.decode()
    assert "hst_acs.imap" in page or "hst_acs_" in page
    refs = _get(client, "/index.json").json["latest_references"]
    context = load_context(settings.store / "mappings" / "hst" / "hst_0001.pmap",
                           ignore_checksum=True)
    assert {r["instrument"] for r in refs} == set(context.pipeline.instruments)
    for url in LIST_PAGES + JSON_TWINS:
        _get(client, url)
    one = _get(client, "/catalog.json?kind=reference&limit=1").json["files"][0]["name"]
    assert _get(client, f"/browse/{one}.json").json["catalog"]["name"] == one


def test_history_pages_by_position(jwst):
    client, settings = jwst
    with SQLiteEventStore(settings.db_path) as store:
        truth = [h["position"] for h in reversed(contexts.context_history(store))]
    seen, url = [], "/history.json?limit=2"
    while url:
        data = _get(client, url).json
        seen += [h["position"] for h in data["history"]]
        url = f"/history.json?limit=2&before={data['next_before']}" if data["next_before"] else None
    assert seen == truth
    latest = _get(client, "/history.json?kind=latest").json["history"]
    with SQLiteEventStore(settings.db_path) as store:
        assert [h["context"] for h in latest] == [
            h["context"] for h in reversed(contexts.context_history(store, kind="latest"))]


def test_pages_over_a_real_threaded_server(jwst):
    import json
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from crds_events.server.wsgi import WebServer

    client, _ = jwst
    server = WebServer(client.application, "127.0.0.1", 0)
    server.start()
    try:
        def fetch(path):
            with urllib.request.urlopen(server.url.rstrip("/") + path, timeout=30) as reply:
                return reply.status, reply.read()
        paths = ["/", "/history", "/events.json", "/contexts/jwst_0002.pmap", "/plots"] * 4
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(fetch, paths))
        assert all(status == 200 for status, _ in results)
        assert json.loads(results[2][1])["events"]
    finally:
        server.stop()
