"""Issue 17/18: the rules display of a context is an outline (instruments and types
collapsed, a filter, each rmap's rules loaded on demand from a fragment URL); the home
table is paginated.
"""

from __future__ import annotations

import re

import pytest
from fixtures.pages import hst_app


def test_pmap_page_is_collapsed_sections_with_rules_on_demand(jwst):
    client, _ = jwst
    page = client.get("/contexts/jwst_0002.pmap").data.decode()
    sections = re.findall(r'<details class="(instrument|rmap)"([^>]*)>', page)
    assert sections and not any(" open" in attrs for _, attrs in sections)  # all collapsed
    assert {kind for kind, _ in sections} == {"instrument", "rmap"}
    # the rmaps are named, their rules are not drawn: a fragment URL per rmap
    assert 'data-src="/contexts/jwst_nircam_flat_0002.rmap/rules"' in page
    assert "jwst_nircam_flat_0002.fits" not in page
    fragment = client.get("/contexts/jwst_nircam_flat_0002.rmap/rules")
    assert fragment.status_code == 200 and "<html" not in fragment.data.decode()
    assert "jwst_nircam_flat_0002.fits" in fragment.data.decode()
    assert client.get("/contexts/jwst_nosuch_flat_0001.rmap/rules").status_code == 404
    assert client.get("/contexts/..%2Fetc/rules").status_code == 404
    # an rmap's own page still shows its rules in full
    assert "jwst_nircam_flat_0002.fits" in client.get(
        "/contexts/jwst_nircam_flat_0002.rmap").data.decode()


def test_filter_narrows_the_outline_without_javascript(jwst):
    client, _ = jwst
    page = client.get("/contexts/jwst_0002.pmap?q=miri").data.decode()
    assert 'data-filter="miri' in page and 'data-filter="nircam' not in page
    assert 'value="miri"' in page  # the box keeps what was typed
    nothing = client.get("/contexts/jwst_0002.pmap?q=nosuchthing").data.decode()
    assert 'id="no-match"' in nothing and "nosuchthing" in nothing
    injected = client.get("/contexts/jwst_0002.pmap?q=<script>x").data.decode()
    assert "<script>x" not in injected


def test_imap_page_opens_its_one_instrument(jwst):
    client, _ = jwst
    page = client.get("/contexts/jwst_nircam_0002.imap").data.decode()
    assert re.search(r'<details class="instrument"[^>]* open>', page)
    assert 'data-src="/contexts/jwst_nircam_flat_0002.rmap/rules"' in page


@pytest.mark.slow
@pytest.mark.corpus
def test_corpus_hst_context_is_a_small_page_and_the_home_table_is_paged(tmp_path, corpus):
    app, _ = hst_app(tmp_path, corpus)
    client = app.test_client()
    page = client.get("/contexts/hst_0001.pmap").data.decode()
    rmaps = re.findall(r'data-src="(/contexts/[^"]+\.rmap/rules)"', page)
    assert len(rmaps) > 90  # every type of every instrument is named...
    assert len(page) < 200_000  # ...in a page of tens of KB, not megabytes
    for url in rmaps[:10]:
        assert client.get(url).status_code == 200
    home = client.get("/").data.decode()
    assert 'id="home-pager"' in home and "page 1 of" in home
    rows = home.split("Latest references", 1)[1].count("<tr>") - 1
    assert rows <= 25
    second = client.get("/?page=2").data.decode()
    assert "page 2 of" in second
    assert len(client.get("/index.json").json["latest_references"]) > 25
    assert client.get("/?page=0").status_code == 400
