"""HST uniqnames: CRDS's time code, instrument character and suffix; keyword updates."""

from __future__ import annotations

import datetime
import shutil

import pytest
from astropy.io import fits

from crds_events.files import generate_unique_name, rename_reference
from crds_events.files.uniqname import decode_timestamp, timestamp_code

MOMENTS = [datetime.datetime(2015, 12, 31, 23, 59, 59), datetime.datetime(2016, 1, 1),
           datetime.datetime(2026, 5, 17, 3, 4, 21), datetime.datetime(2030, 10, 29, 13, 0, 58)]


@pytest.mark.parametrize("now", MOMENTS)
def test_timestamp_code_matches_crds(now):
    from crds.hst.locate import generate_timestamp

    assert timestamp_code(now) == generate_timestamp(now)
    start = 1990 if now.year < 2026 else 2026
    assert decode_timestamp(timestamp_code(now), start) == now.replace(second=now.second // 2 * 2)


@pytest.mark.corpus
def test_rename_updates_keywords_and_keeps_checksum(corpus, tmp_path):
    source = tmp_path / "s7g1700gl_dead.fits"
    shutil.copy(corpus / "crds-test-data" / "hst" / "s7g1700gl_dead_good_xsum.fits", source)
    now = datetime.datetime(2017, 2, 5, 14, 14, 10)
    name = generate_unique_name(source, now)
    assert name == "12514145l_dead.fits"
    dry = rename_reference(source, now=now, dry_run=True)
    assert dry.dry_run and not (tmp_path / name).exists()
    done = rename_reference(source, now=now, remove_original=True)
    assert done.checksum_added and not source.exists()
    with fits.open(done.new_path, checksum=True) as hdus:
        header = hdus[0].header
        assert header["FILENAME"] == name
        assert header["ROOTNAME"] == "12514145L_DEAD"
        assert "s7g1700gl_dead.fits renamed to 12514145l_dead.fits on Feb 5 2017" in str(header["HISTORY"])
        assert "CHECKSUM" in header


@pytest.mark.corpus
def test_refuses_bad_checksum_and_non_hst(corpus, tmp_path):
    from crds_events.files import ReferenceFileError

    bad = tmp_path / "s7g1700gl_dead.fits"
    shutil.copy(corpus / "crds-test-data" / "hst" / "s7g1700gl_dead_bad_xsum.fits", bad)
    with pytest.raises(ReferenceFileError, match="CHECKSUM"):
        rename_reference(bad, now=MOMENTS[0])
    with pytest.raises(ReferenceFileError, match="HST"):
        generate_unique_name(corpus / "contexts" / "jwst" / "references" / "jwst_miri_ipc_0004.fits")
