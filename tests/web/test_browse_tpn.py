"""The file page says where certify takes constraints from: the site's .tpn directory
(setting tpn_dir) when configured, else the built-in specs; its constraint table follows."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
from fixtures.pages import hst_app

from crds_events.web import create_app

pytestmark = pytest.mark.corpus
BIAS = "/browse/hst_acs_biasfile_0001.fits"


def test_the_file_page_names_the_sites_tpn_files(tmp_path, corpus):
    builtin_app, settings = hst_app(tmp_path, corpus)
    client = builtin_app.test_client()
    data = client.get(BIAS + ".json").json
    assert data["constraints_from"]["kind"] == "builtin"
    assert {c["source"].split(":")[0] for c in data["constraints"]} == {"specs/hst.yaml"}

    tpns = tmp_path / "site" / "tpns"
    shutil.copytree(corpus / "site-config/hst/tpns", tpns)
    app = create_app(dataclasses.replace(settings, tpn_dir=tpns), config={"TESTING": True})
    client = app.test_client()
    data = client.get(BIAS + ".json").json
    assert data["constraints_from"] == {
        "kind": "tpn", "shown": "the site's .tpn files (setting tpn_dir: …/site/tpns)"}
    sources = {c["source"].split(":")[0] for c in data["constraints"]}
    assert sources == {"acs_bia.tpn"}
    assert "CCDAMP" in {c["name"] for c in data["constraints"]}  # not in the built-in specs
    page = client.get(BIAS)
    assert page.status_code == 200
    text = page.data.decode()
    assert "Certify checks references with the site&#39;s .tpn files (setting tpn_dir: …/site/tpns)" \
        in text
    assert str(tmp_path) not in text  # never the whole server path

    # A broken site file: the page still renders, saying so.
    (tpns / "acs_bia.tpn").write_text("DETECTOR H C\n")
    page = client.get(BIAS)
    assert page.status_code == 200 and b"cannot be read" in page.data
