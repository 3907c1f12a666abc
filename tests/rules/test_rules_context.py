"""The pmap -> imap -> rmap hierarchy: lazy loading by basename and consistency checks."""

from __future__ import annotations

import pytest

from crds_events.rules.bestrefs import load_context
from crds_events.rules.checksum import with_checksum
from crds_events.rules.context import ContextLoadError
from crds_events.rules.parse import UnsafeNameError, crds_test_data_names

PMAP = """header = {{
    'derived_from' : 'generated',
    'mapping' : 'PIPELINE',
    'name' : 'hst_9999.pmap',
    'observatory' : 'HST',
    'parkey' : ('INSTRUME',),
    'sha1sum' : 'x',
}}

selector = {{
    'ACS' : '{imap}',
}}
"""

IMAP = """header = {{
    'derived_from' : 'generated',
    'instrument' : '{instrument}',
    'mapping' : 'INSTRUMENT',
    'name' : 'hst_acs_9999.imap',
    'observatory' : '{observatory}',
    'parkey' : ('REFTYPE',),
    'sha1sum' : 'x',
}}

selector = {{
    'flshfile' : '{rmap}',
    'crrejtab' : 'N/A',
    'darkfile' : 'OMIT',
}}
"""

RMAP = """header = {{
    'derived_from' : 'generated',
    'filekind' : '{filekind}',
    'instrument' : 'ACS',
    'mapping' : 'REFERENCE',
    'name' : 'hst_acs_flshfile_9999.rmap',
    'observatory' : 'HST',
    'parkey' : (('DETECTOR',), ('DATE-OBS', 'TIME-OBS')),
    'sha1sum' : 'x',
}}

selector = Match({{
    'WFC' : UseAfter({{
        '2000-01-01 00:00:00' : 'wfc_flash.fits',
    }}),
}})
"""


def write_context(tmp_path, instrument="ACS", observatory="HST", filekind="FLSHFILE",
                  rmap="hst_acs_flshfile_9999.rmap"):
    files = {
        "hst_9999.pmap": PMAP.format(imap="hst_acs_9999.imap"),
        "hst_acs_9999.imap": IMAP.format(instrument=instrument, observatory=observatory,
                                         rmap=rmap),
        "hst_acs_flshfile_9999.rmap": RMAP.format(filekind=filekind),
    }
    for name, text in files.items():
        (tmp_path / name).write_text(with_checksum(text, name))
    return tmp_path / "hst_9999.pmap"


def test_children_resolve_by_basename_and_specials(tmp_path):
    # The imap names its rmap as the crds repository's test data does (test/data/hst/...):
    # loadable only in the corpus-compatibility mode.
    with crds_test_data_names():
        context = load_context(
            write_context(tmp_path, rmap="test/data/hst/hst_acs_flshfile_9999.rmap"))
        header = {"INSTRUME": "acs", "DETECTOR": "wfc", "DATE-OBS": "2001-01-01",
                  "TIME-OBS": "00:00"}
        assert context.best_references(header) == {
            "flshfile": "wfc_flash.fits",
            "crrejtab": "NOT FOUND n/a",
        }
        assert context.mapping_names() == [
            "hst_9999.pmap", "hst_acs_9999.imap", "hst_acs_flshfile_9999.rmap"
        ]
        assert context.reference_names() == ["wfc_flash.fits"]


@pytest.mark.parametrize("rmap", ["test/data/hst/hst_acs_flshfile_9999.rmap",
                                  "../hst_acs_flshfile_9999.rmap"])
def test_a_child_named_by_path_is_refused_outside_the_compatibility_mode(tmp_path, rmap):
    context = load_context(write_context(tmp_path, rmap=rmap))
    header = {"INSTRUME": "acs", "DETECTOR": "wfc", "DATE-OBS": "2001-01-01", "TIME-OBS": "00:00"}
    with pytest.raises(UnsafeNameError, match="names a path"):
        context.best_references(header)


def test_children_load_lazily(tmp_path):
    path = write_context(tmp_path)
    (tmp_path / "hst_acs_flshfile_9999.rmap").unlink()
    context = load_context(path)  # the pmap alone loads
    with pytest.raises(ContextLoadError, match="not found"):
        context.load_all()


@pytest.mark.parametrize(
    "changes,message",
    [({"instrument": "COS"}, "instrument"), ({"observatory": "JWST"}, "observatory"),
     ({"filekind": "DARKFILE"}, "filekind")],
)
def test_inconsistent_children_are_refused(tmp_path, changes, message):
    context = load_context(write_context(tmp_path, **changes))
    with pytest.raises(ContextLoadError, match=message):
        context.load_all()


def test_checksum_is_verified_unless_ignored(tmp_path):
    path = write_context(tmp_path)
    rmap = tmp_path / "hst_acs_flshfile_9999.rmap"
    rmap.write_text(rmap.read_text().replace("wfc_flash.fits", "other.fits"))
    from crds_events.rules.parse import ChecksumError

    with pytest.raises(ChecksumError):
        load_context(path, load_all=True)
    load_context(path, ignore_checksum=True, load_all=True)
