"""JWST pattern keywords (P_DETECT, META.INSTRUMENT.P_DETECTOR, P_EXP_TY, ...) are checked
as crds 14 checks them: the or-list becomes the value of the keyword it stands for, and
each item must be valid for that keyword in the site's .tpn files.

What crds prints for the corpus's files (its own test, ``test_or_bars.py``)::

    crds certify jwst_miri_ipc.bad-value.fits     (P_DETECT='MIRIFUSHORT|FOO|', P_BAND='LONG')
    ERROR - ... Checking 'META.INSTRUMENT.DETECTOR [DETECTOR]' : Value 'FOO' is not one of
            ['ANY', 'MIRIFULONG', 'MIRIFUSHORT', 'MIRIMAGE', 'N/A']        -> 1 error
    crds certify jwst_miri_ipc.bad-keyword.fits   (P_DETEC=...)
    WARNING - CRDS-pattern-like keyword 'P_DETEC' w/o CRDS translation ... -> 0 errors
"""

from __future__ import annotations

import shutil
from pathlib import Path

import asdf
import numpy as np
import pytest
from astropy.io import fits

from crds_events.certify import certify_files

pytestmark = pytest.mark.corpus


@pytest.fixture
def jwst(corpus, tmp_path):
    """(copy of a corpus JWST file by a plain name, the JWST .tpn directory)."""
    def copy(name: str) -> Path:
        # The corpus names ("jwst_miri_ipc.bad-value.fits") read as a type "ipc.bad-value".
        target = tmp_path / name.replace("jwst_miri_ipc", "miri_ipc").replace(".", "_", 1)
        shutil.copyfile(corpus / "crds-test-data/jwst" / name, target)
        return target
    return copy, corpus / "site-config/jwst/tpns"


def _problems(result) -> list[tuple[str, str | None, str]]:
    return [(m.level, m.keyword, m.reason) for m in result.messages if m.level != "info"]


def test_an_invalid_item_of_a_pattern_is_an_error_as_in_crds(jwst):
    copy, tpns = jwst
    [result] = certify_files([copy("jwst_miri_ipc.bad-value.fits")], tpn_dir=tpns)
    assert _problems(result) == [
        ("error", "META.INSTRUMENT.DETECTOR",
         "value 'FOO' is not one of [MIRIFULONG, MIRIFUSHORT, MIRIMAGE, ANY, N/A]")]
    notes = [m.reason for m in result.messages if m.level == "info"]
    assert "set to 'MIRIFUSHORT|FOO' from P_DETECT = 'MIRIFUSHORT|FOO|' (was 'MIRIMAGE')" in notes
    assert "set to 'LONG' from P_BAND = 'LONG' (was 'UNDEFINED')" in notes  # no trailing |: ok


def test_a_misspelled_pattern_keyword_is_a_warning_and_not_used(jwst):
    copy, tpns = jwst
    [result] = certify_files([copy("jwst_miri_ipc.bad-keyword.fits")], tpn_dir=tpns)
    assert result.status == "WARNINGS"
    [(level, keyword, reason)] = _problems(result)
    assert (level, keyword) == ("warning", "P_DETEC")
    assert "CRDS-pattern-like keyword 'P_DETEC' without a translation" in reason


def test_a_valid_pattern_with_blanks_passes(jwst):
    copy, tpns = jwst
    [result] = certify_files([copy("jwst_miri_ipc.bad-value.fits")], tpn_dir=tpns)
    path = Path(result.path)
    with fits.open(path, mode="update") as hdus:
        hdus[0].header["P_DETECT"] = "MIRIFUSHORT | MIRIFULONG |"
    [result] = certify_files([path], tpn_dir=tpns)
    assert result.ok, _problems(result)


def test_with_the_context_the_pattern_gives_the_rmap_parameter(jwst, corpus):
    """With the governing rmap (DETECTOR and BAND are its parameters, so required),
    P_BAND supplies BAND: the only errors are FOO's, from the .tpn and the rmap's
    ``_ld.tpn`` values."""
    copy, tpns = jwst
    context = corpus / "contexts/jwst/mappings/jwst_0001.pmap"
    [result] = certify_files([copy("jwst_miri_ipc.bad-value.fits")], tpn_dir=tpns,
                             context=context)
    problems = _problems(result)
    assert {keyword for _, keyword, _ in problems} == {"META.INSTRUMENT.DETECTOR"}
    assert all("'FOO'" in reason for _, _, reason in problems)


def _miri_flat_fits(path: Path, **cards: str) -> Path:
    primary = fits.PrimaryHDU()
    for key, value in {"TELESCOP": "JWST", "INSTRUME": "MIRI", "REFTYPE": "FLAT",
                       "DETECTOR": "MIRIMAGE", "USEAFTER": "2024-01-01T00:00:00",
                       "PEDIGREE": "GROUND", "AUTHOR": "tests", "DESCRIP": "patterns",
                       **cards}.items():
        primary.header[key] = value
    fits.HDUList([primary, fits.ImageHDU(np.ones((4, 4), np.float32), name="SCI")]
                 ).writeto(path)
    return path


def test_exposure_type_patterns_and_an_empty_pattern(tmp_path):
    """Built-in specs (no .tpn directory): an empty or-list is an error naming the pattern
    keyword; a pattern of values is accepted when no values are constrained."""
    empty = _miri_flat_fits(tmp_path / "empty.fits", P_EXP_TY="|")
    [result] = certify_files([empty])
    assert ("error", "P_EXP_TY", "pattern '|' lists no value") in _problems(result)
    listed = _miri_flat_fits(tmp_path / "listed.fits", P_EXP_TY="MIR_IMAGE|MIR_LYOT|")
    [result] = certify_files([listed])
    assert result.ok, _problems(result)


def test_exposure_type_pattern_checked_with_the_site_tpns(tmp_path, corpus):
    tpns = corpus / "site-config/jwst/tpns"
    path = _miri_flat_fits(tmp_path / "flat.fits", P_EXP_TY="MIR_IMAGE|MIR_BOGUS|")
    [result] = certify_files([path], tpn_dir=tpns)
    errors = [(m.keyword, m.reason) for m in result.errors]
    assert any(keyword == "META.EXPOSURE.TYPE" and "'MIR_BOGUS' is not one of" in reason
               for keyword, reason in errors), errors


def test_asdf_datamodel_pattern_keywords(tmp_path, corpus):
    tpns = corpus / "site-config/jwst/tpns"
    path = tmp_path / "distortion.asdf"
    asdf.AsdfFile({"meta": {
        "telescope": "JWST", "reftype": "distortion", "useafter": "2024-01-01T00:00:00",
        "pedigree": "GROUND", "author": "tests", "description": "patterns",
        "instrument": {"name": "MIRI", "detector": "MIRIMAGE",
                       "p_detector": "MIRIMAGE|NOPE|"}}}).write_to(path)
    [result] = certify_files([path], tpn_dir=tpns)
    assert any(m.keyword == "META.INSTRUMENT.DETECTOR" and "'NOPE' is not one of" in m.reason
               for m in result.errors), _problems(result)
