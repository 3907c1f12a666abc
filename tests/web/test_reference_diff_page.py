"""Reference diffs on the web: ``/diff/<a>/<b>`` of FITS, ASDF, JSON and YAML references as
tables, the compare form that keeps its input, a READY submission's new reference against
the one it replaces, and names that are not there or not names (404, never a server path).

The expected differences come from the files as written here (astropy, asdf, json, yaml),
not from the code under test.
"""

from __future__ import annotations

import json

import asdf
import numpy as np
import pytest
from fixtures.submissions import make_flat
from fixtures.websites import WebSite, text_of

from crds_events import events as ev
from crds_events.store.filestore import FileStore
from crds_events.submissions import review
from crds_events.web.pages.refdiff import (
    reference_diff_url,
    reference_diffs,
    replaced_references,
)

OLD, NEW = "jwst_nircam_flat_0001.fits", "jwst_nircam_flat_0002.fits"


@pytest.fixture
def site(tmp_path):
    site = WebSite(tmp_path)
    yield site
    site.close()


def _store(site, path, name: str) -> None:
    FileStore.from_settings(site.settings).put(path, name)


def test_fits_diff_page_is_a_table_of_the_differences(site):
    client = site.client()  # public, as the file pages are
    page = client.get(f"/diff/{OLD}/{NEW}")
    assert page.status_code == 200, page.text[:500]
    text = text_of(page)
    assert "Different: 2 differences" in text
    # make_flat wrote DESCRIP "flat nircam F200W 10" and "... 20" (seeds 10 and 20)
    assert "HDU 0 keyword DESCRIP 'flat nircam F200W 10' 'flat nircam F200W 20'" in text
    assert "HDU 1 data differ (64 element(s))" in text
    assert 'id="reference-diff"' in page.text and "Full report" in text
    assert str(site.settings.root) not in page.text and "/tmp/" not in page.text
    twin = client.get(f"/diff/{OLD}/{NEW}.json").json
    assert twin["status"] == 1 and not twin["same"]
    assert {"where": "HDU 0", "what": "keyword DESCRIP", "old": "'flat nircam F200W 10'",
            "new": "'flat nircam F200W 20'"} in twin["differences"]
    same = client.get(f"/diff/{OLD}/{OLD}.json").json
    assert same["same"] and same["differences"] == [] and same["status_word"] == "identical"


def test_asdf_json_and_yaml_diffs(site, tmp_path):
    client = site.client()
    trees = [{"meta": {"instrument": {"detector": "NRCA1"}, "author": "a"},
              "data": np.zeros((3, 3))},
             {"meta": {"instrument": {"detector": "NRCB1"}}, "data": np.ones((3, 3)),
              "extra": 2}]
    for index, tree in enumerate(trees, start=1):
        asdf.AsdfFile(tree).write_to(tmp_path / f"t{index}.asdf")
        _store(site, tmp_path / f"t{index}.asdf", f"jwst_nircam_gain_000{index}.asdf")
        plain = {k: v for k, v in tree.items() if k != "data"}
        (tmp_path / f"t{index}.json").write_text(json.dumps(plain))
        _store(site, tmp_path / f"t{index}.json", f"jwst_nircam_pars_000{index}.json")
        (tmp_path / f"t{index}.yaml").write_text(
            "meta:\n  instrument:\n    detector: " + plain["meta"]["instrument"]["detector"]
            + "\n")
        _store(site, tmp_path / f"t{index}.yaml", f"jwst_nircam_step_000{index}.yaml")

    rows = client.get("/diff/jwst_nircam_gain_0001.asdf/jwst_nircam_gain_0002.asdf.json").json
    found = {(d["where"], d["what"]) for d in rows["differences"]}
    assert ("meta.instrument.detector", "changed") in found
    assert ("meta.author", "removed") in found and ("extra", "added") in found
    assert ("data", "array values differ (9 of 9 elements)") in found
    page = client.get("/diff/jwst_nircam_gain_0001.asdf/jwst_nircam_gain_0002.asdf")
    assert "'NRCA1' 'NRCB1'" in text_of(page)

    pars = client.get("/diff/jwst_nircam_pars_0001.json/jwst_nircam_pars_0002.json.json").json
    assert {"where": "meta.instrument.detector", "what": "changed", "old": "'NRCA1'",
            "new": "'NRCB1'"} in pars["differences"]
    step = client.get("/diff/jwst_nircam_step_0001.yaml/jwst_nircam_step_0002.yaml.json").json
    assert [d["where"] for d in step["differences"]] == ["meta.instrument.detector"]


def test_the_compare_form_keeps_its_input(site):
    client = site.client()
    empty = client.get("/diff")
    assert empty.status_code == 200 and 'id="diff-form"' in empty.text
    half = client.get(f"/diff?old={OLD}&new=")
    assert half.status_code == 400
    assert f'value="{OLD}"' in half.text
    assert "parameter 'new': name a file to compare" in text_of(half)
    mixed = client.get(f"/diff?old={OLD}&new=jwst_0001.pmap")
    assert mixed.status_code == 400 and 'value="jwst_0001.pmap"' in mixed.text
    assert "compare a mapping with a mapping" in text_of(mixed)
    both = client.get(f"/diff?old={OLD}&new={NEW}")
    assert both.status_code == 302 and both.headers["Location"] == f"/diff/{OLD}/{NEW}"
    # mappings still go to the rules diff
    rules = client.get("/diff/jwst_0001.pmap/jwst_0002.pmap")
    assert rules.status_code == 200 and "Logical differences" in text_of(rules)


@pytest.mark.parametrize("url, status", [
    (f"/diff/{OLD}/jwst_nircam_flat_0099.fits", 404),
    (f"/diff/jwst_nircam_flat_0099.fits/{NEW}", 404),
    (f"/diff/{OLD}/..%2F..%2Fcrds-events.toml", 404),
    (f"/diff/{OLD}/.hidden.fits", 404),
    (f"/diff/{OLD}/jwst_0001.pmap", 400),
    (f"/diff?old=..%2F..%2Fetc%2Fpasswd&new={NEW}", 400),
])
def test_names_not_there_or_not_names(site, url, status):
    response = site.client().get(url)
    assert response.status_code == status, (url, response.text[:300])
    assert "Traceback" not in response.text and str(site.settings.root) not in response.text


def test_a_ready_submissions_new_reference_against_the_one_it_replaces(site, tmp_path):
    jane = site.client("jane")
    # same DETECTOR/FILTER/USEAFTER as jwst_nircam_flat_0001.fits: it replaces it
    flat = make_flat(tmp_path / "flat.fits", "nircam", "F070W", seed=31,
                     useafter="2022-01-01T00:00:00")
    sid = jane_sid = site.submit(jane, [flat]).headers["Location"].split("/")[2]
    assert isinstance(site.process(sid), ev.SubmissionReady)
    result = review.show(site.settings, site.store, sid)["result"]
    (pair,) = replaced_references(result)
    old, new = pair
    assert old == OLD and new.startswith("jwst_nircam_flat_") and new.endswith(".fits")
    with site.app.test_request_context():
        url = reference_diff_url(old, new, jane_sid)
        links = reference_diffs(result, sid)  # what the result page links with
    assert url == f"/submissions/{sid}/diff/{old}/{new}"
    assert links == [{"old": old, "new": new, "url": url}]
    page = jane.get(url)
    assert page.status_code == 200 and "keyword DESCRIP" in text_of(page)
    assert str(site.settings.root) not in page.text
    assert site.client().get(url).status_code == 302  # anonymous: to the login page
    assert jane.get(f"/submissions/{sid}/diff/{old}/{OLD}").status_code == 404
    with site.app.test_request_context():  # a stored one: the public page
        assert reference_diff_url(OLD, NEW, sid) == f"/diff/{OLD}/{NEW}"


def test_a_stored_file_gone_from_disk_is_a_404_naming_it(site):
    path = FileStore.from_settings(site.settings).path_for(NEW)
    path.parent.chmod(0o755)
    path.chmod(0o644)
    path.unlink()
    response = site.client().get(f"/diff/{OLD}/{NEW}")
    assert response.status_code == 404 and f"reference {NEW}: not in the file store" in \
        text_of(response)
    assert str(site.settings.root) not in response.text
