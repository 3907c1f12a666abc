"""Reference diffs: FITS via FITSDiff, trees node by node, crds-diff exit statuses."""

from __future__ import annotations

import json

import asdf
import numpy as np
import pytest
import yaml
from astropy.io import fits

from crds_events.files import diff_references


def _fits(path, useafter, data):
    primary = fits.PrimaryHDU()
    primary.header["USEAFTER"] = useafter
    fits.HDUList([primary, fits.ImageHDU(data, name="SCI")]).writeto(path)
    return path


def test_fits_same_and_different(tmp_path):
    a = _fits(tmp_path / "a.fits", "Jan 01 2020", np.zeros((3, 3)))
    b = _fits(tmp_path / "b.fits", "Jan 01 2020", np.zeros((3, 3)))
    c = _fits(tmp_path / "c.fits", "Feb 01 2020", np.ones((3, 3)))
    assert diff_references(a, b).status == 0
    result = diff_references(a, c)
    assert result.status == 1
    assert "HDU 0: keyword USEAFTER: 'Jan 01 2020' -> 'Feb 01 2020'" in result.differences
    assert any(line.startswith("HDU 1: data differ (9") for line in result.differences)


def test_trees_name_the_path(tmp_path):
    old = {"meta": {"instrument": {"detector": "NRCA1"}}, "coeffs": [1, 2]}
    new = {"meta": {"instrument": {"detector": "NRCB1"}}, "coeffs": [1, 2, 3], "extra": 1}
    for ext, dump in ((".json", json.dumps), (".yaml", yaml.safe_dump)):
        (tmp_path / f"o{ext}").write_text(dump(old))
        (tmp_path / f"n{ext}").write_text(dump(new))
        result = diff_references(tmp_path / f"o{ext}", tmp_path / f"n{ext}")
        assert result.status == 1
        assert result.differences == ["coeffs: list length 2 -> 3", "extra: added 1",
                                      "meta.instrument.detector: 'NRCA1' -> 'NRCB1'"]
    asdf.AsdfFile({"data": np.arange(5.0)}).write_to(tmp_path / "o.asdf")
    asdf.AsdfFile({"data": np.arange(5.0) * 2}).write_to(tmp_path / "n.asdf")
    assert diff_references(tmp_path / "o.asdf", tmp_path / "n.asdf").differences == \
        ["data: array values differ (4 of 5 elements)"]


def test_unreadable_is_status_2(tmp_path):
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "good.json").write_text("{}")
    result = diff_references(tmp_path / "bad.json", tmp_path / "good.json")
    assert result.status == 2 and "bad.json" in result.text


@pytest.mark.corpus
def test_corpus_table_change(corpus):
    data = corpus / "crds-test-data"
    result = diff_references(data / "test-source.fits", data / "test-change-row1-valueLeft.fits")
    assert result.status == 1
    assert "HDU 1: column valueLeft row 1: 5748 -> -1" in result.differences
    same = diff_references(data / "hst" / "s7g1700gl_dead.fits", data / "hst" / "s7g1700gl_dead.fits")
    assert same.status == 0 and same.differences == []
