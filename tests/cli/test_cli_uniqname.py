"""`crds-events uniqname --files ... [--standard] [--add-checksum] [--dry-run]`."""

from __future__ import annotations

import re
import shutil

import pytest
from astropy.io import fits
from click.testing import CliRunner

from crds_events.cli import cli
from crds_events.files.uniqname import decode_timestamp

pytestmark = pytest.mark.corpus
NAME = re.compile(r"renamed to (\S+)")


def _copy(corpus, tmp_path, name="s7g1700gl_dead.fits", source="s7g1700gl_dead.fits"):
    target = tmp_path / name
    shutil.copyfile(corpus / "crds-test-data" / "hst" / source, target)
    return target


def test_dry_run_changes_nothing(corpus, tmp_path):
    path = _copy(corpus, tmp_path)
    result = CliRunner().invoke(cli, ["uniqname", "--files", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would rename" in result.output
    new = re.search(r"would rename to (\S+)", result.output).group(1)
    assert re.fullmatch(r".*/[0-9a-z]{8}l_dead\.fits", new)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s7g1700gl_dead.fits"]


def test_standard_renames_with_keywords_and_checksum(corpus, tmp_path):
    path = _copy(corpus, tmp_path)
    result = CliRunner().invoke(cli, ["uniqname", "--files", str(path), "--standard"])
    assert result.exit_code == 0, result.output
    new = NAME.search(result.output).group(1)
    assert not path.exists()
    base = new.rsplit("/", 1)[-1]
    decode_timestamp(base[:8])  # a valid CRDS time code
    with fits.open(new, checksum=True) as hdus:
        assert hdus[0].header["FILENAME"] == base
        assert "CHECKSUM" in hdus[0].header
        assert any("s7g1700gl_dead.fits renamed to" in str(h) for h in hdus[0].header["HISTORY"])


def test_add_checksum_keeps_original(corpus, tmp_path):
    path = _copy(corpus, tmp_path)
    result = CliRunner().invoke(cli, ["uniqname", "--files", str(path), "--add-checksum"])
    assert result.exit_code == 0, result.output
    assert path.exists()
    with fits.open(NAME.search(result.output).group(1), checksum=True) as hdus:
        assert "DATASUM" in hdus[0].header


def test_bad_file_is_reported_and_others_renamed(corpus, tmp_path):
    good = _copy(corpus, tmp_path)
    bad = tmp_path / "x2i1559gl_wcp.fits"
    bad.write_bytes(b"SIMPLE  =                    T" + b"\0" * 10)
    result = CliRunner().invoke(cli, ["uniqname", "--files", str(bad), str(good)])
    assert result.exit_code == 1
    assert "x2i1559gl_wcp.fits" in result.output and "ERROR" in result.output
    assert "renamed to" in result.output
