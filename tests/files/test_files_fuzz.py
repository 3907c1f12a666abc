"""Truncated and garbage files: every reader gives a clear ReferenceFileError, never a crash."""

from __future__ import annotations

import asdf
import numpy as np
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crds_events.certify.references import check_reference
from crds_events.files import ReferenceFileError, diff_references, read_header

EXTENSIONS = [".fits", ".r1h", ".asdf", ".json", ".yaml", ".tmp"]


def _samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz-src")
    fits_path = root / "a.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((4, 4), np.float32), name="SCI")]).writeto(fits_path)
    asdf_path = root / "a.asdf"
    asdf.AsdfFile({"meta": {"instrument": {"name": "MIRI"}}, "data": np.ones(8)}).write_to(asdf_path)
    return {".fits": fits_path.read_bytes(), ".asdf": asdf_path.read_bytes(),
            ".json": b'{"meta": {"instrument": {"name": "MIRI"}}}',
            ".yaml": b"meta:\n  instrument:\n    name: MIRI\n",
            ".r1h": b"".join(line.ljust(80).encode() + b"\n" for line in
                             ["SIMPLE  =                    F /", "INSTRUME= 'WFPC2   '", "END"]),
            ".tmp": b"SIMPLE  =                    T"}


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return _samples(tmp_path_factory)


def _read_or_clear_error(path):
    try:
        read_header(path)
    except ReferenceFileError as exc:
        assert exc.reason and exc.path == str(path)


@settings(max_examples=40, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ext=st.sampled_from(EXTENSIONS), cut=st.floats(0, 1))
def test_truncated_files(tmp_path, samples, ext, cut):
    data = samples[ext]
    path = tmp_path / f"t{ext}"
    path.write_bytes(data[: int(len(data) * cut)])
    _read_or_clear_error(path)
    result = check_reference(path, observatory="jwst")
    assert result.status in ("OK", "WARNINGS", "ERRORS")


@settings(max_examples=40, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ext=st.sampled_from(EXTENSIONS), junk=st.binary(max_size=4000), prefix=st.sampled_from([b"", b"SIMPLE  =", b"#ASDF 1.0.0\n", b"{", b"meta:"]))
def test_garbage_files(tmp_path, ext, junk, prefix):
    path = tmp_path / f"g{ext}"
    path.write_bytes(prefix + junk)
    _read_or_clear_error(path)
    assert check_reference(path, observatory="hst").status in ("OK", "WARNINGS", "ERRORS")
    assert diff_references(path, path).status in (0, 1, 2)


@pytest.mark.corpus
def test_corpus_files_cut_everywhere_in_steps(corpus, tmp_path):
    source = (corpus / "crds-test-data" / "hst" / "s7g1700gl_dead.fits").read_bytes()
    for cut in range(0, len(source), 480):
        path = tmp_path / "cut.fits"
        path.write_bytes(source[:cut])
        _read_or_clear_error(path)
        result = check_reference(path)
        if cut < len(source) - 2880:
            assert result.status == "ERRORS", cut
