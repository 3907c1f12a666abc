"""Certify refuses rules that name anything but plain CRDS file names of the observatory:
a path (`../../../../tmp/evil.fits`) is an ERROR, so a submission with it is BAD FILES."""

from __future__ import annotations

import pytest
from fixtures.submissions import write_context

from crds_events.certify.mappings import check_mapping
from crds_events.rules.parse import crds_test_data_names


def _rmap(tmp_path, value: str):
    """jwst_nircam_flat_0002.rmap naming ``value``."""
    write_context(tmp_path, ["nircam"])
    text = (tmp_path / "jwst_nircam_flat_0001.rmap").read_text()
    text = text.replace("'jwst_nircam_flat_0001.fits'", f"'{value}'")
    text = text.replace("jwst_nircam_flat_0001.rmap", "jwst_nircam_flat_0002.rmap")
    path = tmp_path / "jwst_nircam_flat_0002.rmap"
    path.write_text(text)
    return path


@pytest.mark.parametrize("value", ["../../../../tmp/evil.fits", "/tmp/evil.fits",
                                   ".evil.fits", "refs/evil.fits"])
def test_a_path_in_an_rmap_is_an_error(tmp_path, value):
    result = check_mapping(_rmap(tmp_path, value))
    assert result.status == "ERRORS"
    errors = [m for m in result.errors if m.keyword == "name"]
    assert errors and value in errors[0].reason, result.messages


def test_the_test_data_form_is_an_error_in_certify_even_in_the_compatibility_mode(tmp_path):
    path = _rmap(tmp_path, "test/data/jwst/jwst_nircam_flat_0001.fits")
    with crds_test_data_names():
        result = check_mapping(path)
    assert result.status == "ERRORS"
    assert any("names a path" in m.reason for m in result.errors), result.messages


@pytest.mark.parametrize("value, reason", [
    ("evil.sh", "reference file extension"),
    ("jwst_nircam_flat_0001.rmap", "mapping name"),
    ("JWST_NIRCAM_FLAT_0001.FITS", "lower case"),
])
def test_names_that_do_not_follow_the_patterns_are_errors(tmp_path, value, reason):
    result = check_mapping(_rmap(tmp_path, value))
    assert any(m.keyword == "name" and reason in m.reason for m in result.errors), \
        result.messages


def test_imap_children_must_be_rmaps_of_the_observatory(tmp_path):
    write_context(tmp_path, ["nircam"])
    imap = tmp_path / "jwst_nircam_0001.imap"
    text = imap.read_text().replace("'jwst_nircam_flat_0001.rmap'", "'hst_acs_flat.rmap'")
    imap.write_text(text)
    result = check_mapping(imap)
    assert any(m.keyword == "name" and "not a jwst mapping name" in m.reason
               for m in result.errors), result.messages


def test_a_good_rmap_has_no_name_errors(tmp_path):
    result = check_mapping(_rmap(tmp_path, "jwst_nircam_flat_0003.fits"))
    assert not [m for m in result.messages if m.keyword == "name"], result.messages
