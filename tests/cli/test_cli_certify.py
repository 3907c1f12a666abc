"""`crds-events certify` through click's CliRunner on corpus files."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from crds_events.cli import cli

pytestmark = pytest.mark.corpus


def _run(*args):
    return CliRunner().invoke(cli, ["certify", *map(str, args)])


def test_ok_files_exit_zero_and_say_ok(corpus):
    context = corpus / "contexts" / "hst" / "mappings" / "hst_0001.pmap"
    reference = corpus / "contexts" / "hst" / "references" / "s7g1700gl_dead.fits"
    result = _run(context, reference, "--context", context)
    assert result.exit_code == 0, result.output
    assert f"{context}: OK" in result.output
    assert f"{reference}: OK" in result.output
    assert "\x1b[" not in result.output  # piped: no colour codes
    assert "2 file(s) certified: 2 without errors, 0 with errors" in result.output


def test_errors_exit_one_naming_file_and_reason(corpus):
    bad = corpus / "crds-test-data" / "hst" / "hst_cos_dup.rmap"
    good = corpus / "contexts" / "hst" / "mappings" / "hst_cos_deadtab.rmap"
    result = _run(bad, good)
    assert result.exit_code == 1
    assert f"{bad}: ERRORS" in result.output
    assert "sha1sum mismatch in 'hst_cos_dup.rmap'" in result.output
    assert "duplicate entry at selector" in result.output
    assert f"{good}: OK" in result.output


def test_warnings_do_not_fail(corpus):
    directory = corpus / "contexts" / "hst" / "mappings"
    result = _run(directory / "hst_0002.pmap", "--comparison-context", directory / "hst_0001.pmap")
    assert result.exit_code == 0, result.output
    assert "WARNINGS" in result.output and "Rule change at" in result.output


def test_verbose_lists_constraints_and_info(corpus):
    path = corpus / "contexts" / "hst" / "mappings" / "hst_acs_pfltfile.rmap"
    quiet = _run(path)
    loud = _run(path, "--verbose", "--tpn-dir", corpus / "site-config" / "hst" / "tpns")
    assert "constraints applied" not in quiet.output and "equal weight" not in quiet.output
    assert "constraints applied" in loud.output
    assert "sha1sum: matches the text" in loud.output
    assert "DETECTOR [match value] one of" in loud.output
    assert "equal weight special case" in loud.output  # a warning in verbose mode, as crds


def test_colour_forced(corpus):
    path = corpus / "crds-test-data" / "hst" / "hst-bad-xsum.rmap"
    result = _run(path, "--color")
    assert result.exit_code == 1
    assert "\x1b[" in result.output


def test_missing_file_is_a_usage_error(tmp_path):
    result = _run(tmp_path / "nope.rmap")
    assert result.exit_code == 2
    assert "nope.rmap" in result.output


def test_fitsverify_flag_reports_skip_or_runs(corpus):
    import shutil

    reference = corpus / "contexts" / "hst" / "references" / "v8q14451j_idc.fits"
    result = _run(reference, "--run-fitsverify", "--verbose")
    assert result.exit_code == 0, result.output
    if shutil.which("fitsverify") is None:
        assert "fitsverify skipped" in result.output
    else:
        assert "fitsverify" in result.output
