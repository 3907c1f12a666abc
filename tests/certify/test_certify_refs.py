"""Certifying references: valid ones pass, each kind of breakage fails naming file and reason."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from astropy.io import fits

from crds_events.certify.references import check_reference
from crds_events.certify.result import exit_code


def _jwst_dark(path, data, **extra):
    primary = fits.PrimaryHDU()
    for key, value in {"TELESCOP": "JWST", "INSTRUME": "NIRCAM", "REFTYPE": "DARK",
                       "USEAFTER": "2022-01-01T00:00:00", "PEDIGREE": "GROUND", "AUTHOR": "me",
                       "DESCRIP": "a dark", "DETECTOR": "NRCA1", **extra}.items():
        if value is not None:
            primary.header[key] = value
    fits.HDUList([primary, fits.ImageHDU(data, name="SCI")]).writeto(path)
    return path


def _messages(result):
    return [(m.level, m.keyword, m.reason) for m in result.messages]


def test_valid_dark_passes(tmp_path):
    path = _jwst_dark(tmp_path / "jwst_nircam_dark_0001.fits", np.zeros((2, 4, 4), np.float32))
    result = check_reference(path)
    assert result.status == "OK", _messages(result)
    assert any("SCI" in line for line in result.constraints)


def test_dark_that_is_not_a_cube_fails(tmp_path):
    path = _jwst_dark(tmp_path / "jwst_nircam_dark_0002.fits", np.zeros((4, 4), np.float32))
    result = check_reference(path)
    assert result.status == "ERRORS"
    assert any(m.keyword == "SCI" and "SHAPE" in m.reason for m in result.errors)
    assert "jwst_nircam_dark_0002.fits: SCI" in str(result.errors[0])


def test_missing_keyword_bad_value_bad_useafter(tmp_path):
    path = _jwst_dark(tmp_path / "jwst_nircam_dark_0003.fits", np.zeros((2, 4, 4), np.float32),
                      AUTHOR=None, TELESCOP="HUBBLE", USEAFTER="someday")
    reasons = {m.keyword: m.reason for m in check_reference(path).errors}
    assert "missing required" in reasons["META.AUTHOR"]
    assert "HUBBLE" in reasons["META.TELESCOPE"]
    assert "someday" in reasons["USEAFTER"]


@pytest.mark.corpus
def test_corpus_valid_references_pass(corpus):
    refs = sorted((corpus / "contexts").glob("*/references/*"))
    results = [check_reference(path) for path in refs]
    assert [r.status for r in results if r.errors] == [], [str(m) for r in results for m in r.errors]
    assert exit_code(results) == 0


@pytest.mark.corpus
@pytest.mark.parametrize("name, keyword, reason", [
    ("hst/truncated.fits", None, "truncated"),
    ("hst/s7g1700gl_dead_bad_xsum.fits", "CHECKSUM", "does not match"),
    ("hst/missing_keyword.fits", "DETECTOR", "missing required"),
    ("jwst/invalid.json", None, "not a readable JSON"),
    ("jwst/invalid.asdf", None, "not a readable ASDF"),
])
def test_corpus_broken_references_fail(corpus, name, keyword, reason):
    result = check_reference(corpus / "crds-test-data" / name)
    assert result.status == "ERRORS"
    assert any(m.keyword == keyword and reason in m.reason for m in result.errors), _messages(result)
    assert exit_code([result]) == 1


@pytest.mark.corpus
def test_tpn_constraints_and_kernel_unity(corpus, tmp_path):
    tpns = corpus / "site-config" / "jwst" / "tpns"
    good = corpus / "contexts" / "jwst" / "references" / "jwst_miri_ipc_0004.fits"
    result = check_reference(good, tpn_dir=tpns)
    assert not [m for m in result.errors if m.keyword == "SCI"]
    bad = tmp_path / "jwst_miri_ipc_0099.fits"
    shutil.copy(good, bad)
    with fits.open(bad, mode="update") as hdus:
        hdus["SCI"].data = hdus["SCI"].data * 2
    errors = check_reference(bad, tpn_dir=tpns).errors
    assert any(m.keyword == "SCI" and "sums to" in m.reason for m in errors)


@pytest.mark.corpus
def test_parkey_hook(corpus):
    ref = corpus / "contexts" / "hst" / "references" / "s7g1700gl_dead.fits"
    assert check_reference(ref, parkey_values={"DETECTOR": ["FUV", "NUV"]}).ok
    result = check_reference(ref, parkey_values={"DETECTOR": ["NUV"]})
    assert any(m.keyword == "DETECTOR" and "'FUV'" in m.reason for m in result.errors)
    called = check_reference(ref, parkey_values=lambda key, value: "nope" if key == "DATE-OBS" else None)
    assert [m.keyword for m in called.errors] == ["DATE-OBS"]


def test_fitsverify_skips_clearly_when_absent(tmp_path):
    path = _jwst_dark(tmp_path / "jwst_nircam_dark_0004.fits", np.zeros((2, 4, 4), np.float32))
    result = check_reference(path, run_fitsverify_program=True)
    if shutil.which("fitsverify") is None:
        assert any("fitsverify skipped" in m.reason for m in result.messages)
