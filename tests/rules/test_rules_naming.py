"""Mapping names: parts, kind, serial and the next name of a series."""

from __future__ import annotations

import pytest
from crds.core import naming as crds_naming

from crds_events.rules.naming import (
    MappingName,
    NamingError,
    mapping_kind,
    mapping_serial,
    next_mapping_name,
    parse_mapping_name,
)


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("hst_0001.pmap", ("hst", None, None, 1, ".pmap")),
        ("hst.pmap", ("hst", None, None, None, ".pmap")),
        ("jwst_miri_0001.imap", ("jwst", "miri", None, 1, ".imap")),
        ("hst_acs.imap", ("hst", "acs", None, None, ".imap")),
        ("jwst_miri_dark_0018.rmap", ("jwst", "miri", "dark", 18, ".rmap")),
        ("hst_acs_biasfile.rmap", ("hst", "acs", "biasfile", None, ".rmap")),
        ("roman_wfi_flat_0004.rmap", ("roman", "wfi", "flat", 4, ".rmap")),
        ("/some/dir/hst_cos_deadtab_12345.rmap", ("hst", "cos", "deadtab", 12345, ".rmap")),
    ],
)
def test_parse_mapping_name(name, parts):
    parsed = parse_mapping_name(name)
    assert parsed == MappingName(*parts)
    assert str(parsed) == name.rsplit("/", 1)[-1]


@pytest.mark.parametrize(
    "name",
    ["hst_acs.fits", "HST_0001.pmap", "hst-bad-xsum.rmap", "hst_acs.rmap", "hst_acs_dark.imap",
     "hst_acs_dark.pmap", "_0001.pmap", "hst__acs.imap", ""],
)
def test_bad_names_are_refused(name):
    with pytest.raises(NamingError):
        parse_mapping_name(name)


@pytest.mark.parametrize(
    ("name", "kind"),
    [("hst.pmap", "pipeline"), ("x_y.imap", "instrument"), ("hst-bad-xsum.rmap", "reference")],
)
def test_mapping_kind_from_extension(name, kind):
    assert mapping_kind(name) == kind
    if "-" not in name:  # an ad hoc name has a kind but no parts
        assert parse_mapping_name(name).kind == kind


def test_mapping_kind_refuses_other_files():
    with pytest.raises(NamingError, match="not a mapping"):
        mapping_kind("x.fits")


@pytest.mark.parametrize(
    "name",
    ["hst_0042.pmap", "hst_0990999.pmap", "hst_cos_0999.imap", "hst.pmap",
     "jwst_miri_dark_0018.rmap", "hst_acs_biasfile.rmap"],
)
def test_serial_agrees_with_crds(name):
    assert mapping_serial(name) == crds_naming.newstyle_serial(name)


@pytest.mark.parametrize(
    ("name", "existing", "expected"),
    [
        ("jwst_miri_dark_0018.rmap", (), "jwst_miri_dark_0019.rmap"),
        ("hst_acs_biasfile.rmap", (), "hst_acs_biasfile_0001.rmap"),
        ("hst.pmap", (), "hst_0001.pmap"),
        ("hst_0999.pmap", (), "hst_1000.pmap"),
        ("hst_9999.pmap", (), "hst_10000.pmap"),
        ("hst_acs_0002.imap", ("hst_acs_0007.imap", "hst_cos_0100.imap", "hst_acs_0100.rmap",
                               "junk.txt"), "hst_acs_0008.imap"),
        ("hst_acs_biasfile.rmap", ("hst_acs_biasfile_0001.rmap",), "hst_acs_biasfile_0002.rmap"),
        ("jwst_miri_dark_0018.rmap", ("jwst_miri_dark_0003.rmap",), "jwst_miri_dark_0019.rmap"),
    ],
)
def test_next_mapping_name(name, existing, expected):
    assert next_mapping_name(name, existing) == expected
    # The next name is newer than every name it was computed from, by CRDS's own rule.
    for older in (name, *[e for e in existing if e.endswith(name[-5:]) and
                          e.rsplit("_", 1)[0] == expected.rsplit("_", 1)[0]]):
        assert crds_naming.newer(expected, older)
