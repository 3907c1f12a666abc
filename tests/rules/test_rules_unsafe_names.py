"""A rules file can never name a path: the parser refuses every value that is not a plain
file name, on both of its paths (the fast tokenizer and the ast converter)."""

from __future__ import annotations

import pytest

from crds_events.rules.document import load_mapping_text
from crds_events.rules.fastparse import fast_parse
from crds_events.rules.naming import plain_name_problem, rules_name_problem
from crds_events.rules.parse import (
    MappingFormatError,
    UnsafeNameError,
    crds_test_data_names,
    parse_mapping,
)

RMAP = """header = {{
    'derived_from' : 'hand made',
    'filekind' : 'FLAT',
    'instrument' : 'NIRCAM',
    'mapping' : 'REFERENCE',
    'name' : 'jwst_nircam_flat_0002.rmap',
    'observatory' : 'JWST',
    'parkey' : (('META.INSTRUMENT.DETECTOR',), ('META.OBSERVATION.DATE', 'META.OBSERVATION.TIME')),
    'sha1sum' : 'x',
}}

selector = Match({{
    ('NRCA1',) : UseAfter({{
        '2022-01-01 00:00:00' : 'jwst_nircam_flat_0001.fits',
        '2023-01-01 00:00:00' : '{name}',
    }}),
}})
"""

UNSAFE = [
    "../../../../tmp/evil.fits",
    "/etc/passwd",
    "sub/dir.fits",
    "..\\\\evil.fits",  # a backslash, as written inside the quoted mapping text
    ".hidden.fits",
    "a..b.fits",
    "..",
    "",
    "evil.fits\\x00",
    "evil fits.fits",
    "%2e%2e.fits",
    "x" * 129 + ".fits",
    "test/data/jwst/jwst_nircam_flat_0001.fits",  # the crds test-data form: only in compat
]


@pytest.mark.parametrize("name", UNSAFE)
def test_unsafe_names_are_a_parse_error_on_both_paths(name):
    text = RMAP.format(name=name)
    assert fast_parse(text, "x.rmap") is None  # the fast path gives up on it ...
    for fast in (True, False):  # ... and the ast path names the value and its line
        with pytest.raises(UnsafeNameError) as caught:
            parse_mapping(text, "jwst_nircam_flat_0002.rmap", fast=fast)
        assert caught.value.line == 15
        assert "line 15" in str(caught.value)
        assert isinstance(caught.value, MappingFormatError)
    with pytest.raises(MappingFormatError):  # what loading a stored mapping goes through
        load_mapping_text(text, "jwst_nircam_flat_0002.rmap", ignore_checksum=True)


@pytest.mark.parametrize("name", ["jwst_nircam_flat_0003.fits", "N/A", "OMIT",
                                  "s7g1700gl_dead.fits", "dbu1405fu.r1h",
                                  "jwst_miri_pars-tweakreg_0001.asdf"])
def test_plain_names_and_special_values_parse(name):
    for fast in (True, False):
        parsed = parse_mapping(RMAP.format(name=name), "x.rmap", fast=fast)
        use_after = parsed.selector.entries[0][1]
        assert use_after.entries[1][1] == name


def test_every_bad_name_is_listed_and_tuples_are_checked():
    text = RMAP.format(name="ok.fits").replace(
        "'ok.fits'", "('ok.fits', '../a.fits')").replace(
        "'jwst_nircam_flat_0001.fits'", "'/b.fits'")
    with pytest.raises(UnsafeNameError) as caught:
        parse_mapping(text, "x.rmap")
    assert [line for line, _ in caught.value.problems] == [14, 15]
    assert "'/b.fits'" in str(caught.value) and "'../a.fits'" in str(caught.value)


def test_pmap_and_imap_children_are_checked_too():
    pmap = ("header = {'mapping' : 'PIPELINE', 'observatory' : 'HST', 'name' : 'hst.pmap', "
            "'parkey' : ('INSTRUME',), 'derived_from' : 'x', 'sha1sum' : 'x'}\n"
            "selector = {'ACS' : '../../hst_acs.imap', 'COS' : 'hst_cos.imap'}\n")
    with pytest.raises(UnsafeNameError, match="hst_acs.imap"):
        parse_mapping(pmap, "hst.pmap")


def test_the_test_data_form_is_accepted_only_in_the_compatibility_mode():
    text = RMAP.format(name="test/data/jwst/jwst_nircam_flat_0001.fits")
    with crds_test_data_names():
        assert parse_mapping(text, "x.rmap") is not None
        for name in ("test/data/jwst/../../evil.fits", "/test/data/jwst/x.fits",
                     "test/data/jwst/sub/x.fits", "xtest/data/jwst/x.fits"):
            with pytest.raises(UnsafeNameError):
                parse_mapping(RMAP.format(name=name), "x.rmap")
    with pytest.raises(UnsafeNameError):  # and the mode ends with the block
        parse_mapping(text, "x.rmap")


def test_certify_naming_patterns():
    assert plain_name_problem("a.fits") is None
    assert rules_name_problem("jwst_nircam_flat_0001.fits", "jwst") is None
    assert rules_name_problem("hst_acs.imap", "hst") is None
    assert "not a jwst mapping name" in rules_name_problem("hst_acs.imap", "jwst")
    assert "reference file extension" in rules_name_problem("evil.sh", "jwst")
    assert "lower case" in rules_name_problem("EVIL.FITS", "jwst")
    assert "names a path" in rules_name_problem("../evil.fits", "jwst")
    assert rules_name_problem("N/A", "jwst") is None
