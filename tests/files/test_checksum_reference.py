"""checksum_reference(): what `crds-events checksum` does for FITS references."""

from __future__ import annotations

import shutil

import pytest
from astropy.io import fits

from crds_events.files.checksums import checksum_reference
from crds_events.files.errors import ReferenceFileError

pytestmark = pytest.mark.corpus


def test_add_then_verify(corpus, tmp_path):
    path = tmp_path / "s7g1700gl_dead.fits"
    shutil.copyfile(corpus / "crds-test-data" / "hst" / "s7g1700gl_dead.fits", path)
    with fits.open(path) as hdus:
        had = any("CHECKSUM" in h.header for h in hdus)
    if not had:
        with pytest.raises(ReferenceFileError, match="no CHECKSUM"):
            checksum_reference(path, verify=True)
    assert checksum_reference(path, verify=False).endswith("CHECKSUM/DATASUM added")
    assert checksum_reference(path, verify=True) == f"{path}: OK"
    with fits.open(path, checksum=True) as hdus:  # astropy agrees
        assert all("DATASUM" in h.header for h in hdus)


def test_bad_checksum_is_an_error_naming_the_file(corpus, tmp_path):
    path = tmp_path / "s7g1700gl_dead_bad_xsum.fits"
    shutil.copyfile(corpus / "crds-test-data" / "hst" / "s7g1700gl_dead_bad_xsum.fits", path)
    with pytest.raises(ReferenceFileError) as caught:
        checksum_reference(path, verify=True)
    assert "s7g1700gl_dead_bad_xsum.fits" in str(caught.value)
    assert "does not match" in str(caught.value)


def test_garbage_is_an_error(tmp_path):
    path = tmp_path / "junk.fits"
    path.write_bytes(b"not fits at all" * 10)
    for verify in (True, False):
        with pytest.raises(ReferenceFileError):
            checksum_reference(path, verify=verify)
