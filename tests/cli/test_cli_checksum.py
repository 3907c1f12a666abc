"""`crds-events checksum [--verify] FILES` on copies of corpus mappings."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest
from click.testing import CliRunner

from crds_events.cli import cli
from crds_events.rules.parse import duplicate_keys, parse_mapping

# Corpus comparisons: the crds test mappings' `test/data/hst/...` child names are accepted.
pytestmark = [pytest.mark.corpus, pytest.mark.usefixtures("crds_test_data_names")]


@pytest.fixture(scope="module")
def oracle(corpus):
    with open(corpus / "oracle" / "mappings_sha1.json", encoding="utf-8") as handle:
        return json.load(handle)


def _copy(corpus, tmp_path, rels):
    paths = []
    for rel in rels:
        target = tmp_path / rel.replace("/", "__")
        shutil.copyfile(corpus / "crds-test-data" / rel, target)  # contents only: writable
        paths.append(target)
    return paths


def _sha1(path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _has_duplicates(path) -> bool:
    parsed = parse_mapping(path.read_text(encoding="utf-8"))
    return bool(parsed.header_duplicates) or any(
        duplicate_keys(call) for call in parsed.selector.walk()
    )


def _run(*args):
    return CliRunner().invoke(cli, ["checksum", *map(str, args)], obj={})


def test_verify_reports_each_status_like_crds_load(corpus, tmp_path, oracle):
    rels = sorted(oracle)
    paths = _copy(corpus, tmp_path, rels)
    result = _run("--verify", *paths)
    assert result.exit_code == 1  # the corpus has mismatches and errors
    lines = result.output.splitlines()
    assert len(lines) == len(rels)
    for rel, path, line in zip(rels, paths, lines, strict=True):
        rec = oracle[rel]
        assert line.startswith(f"{path}: "), line
        status = line[len(f"{path}: "):].split(" ")[0]
        if rec["loads"]:
            assert status == "OK", line
        elif rec["load_error"].startswith("ChecksumError"):
            assert status == "mismatch", line
        else:
            assert status == "error", line


def test_verify_all_good_exits_zero(corpus, tmp_path, oracle):
    good = [rel for rel, rec in sorted(oracle.items()) if rec["loads"]][:10]
    result = _run("--verify", *_copy(corpus, tmp_path, good))
    assert result.exit_code == 0, result.output
    assert all(line.endswith(": OK") for line in result.output.splitlines())


def test_rewrite_gives_crds_text_and_then_verifies(corpus, tmp_path, oracle):
    rels = [
        rel for rel, rec in sorted(oracle.items())
        if rec["loads_ignoring_checksum"] and not rec["canonical_equals_file"]
    ] + ["hst/hst-bad-xsum.rmap", "hst/hst-missing-xsum.rmap", "hst/hst_acs_0491.imap"]
    # `crds checksum` refuses files with duplicate keys (tested below).
    rels = [rel for rel in rels if not _has_duplicates(corpus / "crds-test-data" / rel)]
    assert len(rels) > 10
    paths = _copy(corpus, tmp_path, rels)
    result = _run(*paths)
    assert result.exit_code == 0, result.output
    for rel, path in zip(rels, paths, strict=True):
        assert _sha1(path) == oracle[rel]["rewritten_text_sha1"], rel
    verify = _run("--verify", *paths)
    assert verify.exit_code == 0, verify.output


def test_rewrite_refuses_duplicates_and_leaves_the_file(corpus, tmp_path, oracle):
    dup, good = _copy(corpus, tmp_path, ["hst/hst_cos_dup.rmap", "hst/hst-bad-xsum.rmap"])
    before = _sha1(dup)
    result = _run(dup, good)
    assert result.exit_code == 1
    assert "duplicate keys" in result.output and "1996-10-01 00:00:00" in result.output
    assert _sha1(dup) == before
    assert _sha1(good) == oracle["hst/hst-bad-xsum.rmap"]["rewritten_text_sha1"]


def test_rewrite_reports_unloadable_and_unwritable_files(corpus, tmp_path):
    broken, readonly = _copy(
        corpus, tmp_path, ["hst/hst_missing_parkey.rmap", "hst/hst-bad-xsum.rmap"]
    )
    os.chmod(readonly, 0o444)
    before = _sha1(readonly)
    result = _run(broken, readonly)
    assert result.exit_code == 1
    assert f"{broken}: error" in result.output and "parkey" in result.output
    if os.geteuid() != 0:  # root may write any file, as `crds checksum` would
        assert f"{readonly}: error" in result.output and "not writable" in result.output
        assert _sha1(readonly) == before
    assert _sha1(broken) == hashlib.sha1(
        (corpus / "crds-test-data" / "hst/hst_missing_parkey.rmap").read_bytes()
    ).hexdigest()


def test_missing_file_is_an_error_line(tmp_path):
    result = _run("--verify", tmp_path / "nope.rmap")
    assert result.exit_code == 1
    assert "nope.rmap: error" in result.output


def test_checksum_command_adds_and_verifies_fits_checksums(tmp_path):
    from astropy.io import fits

    path = tmp_path / "ref.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data=[[1.0, 2.0]])]).writeto(path)
    runner = CliRunner()
    unverified = runner.invoke(cli, ["checksum", "--verify", str(path)])
    assert unverified.exit_code == 1 and "no CHECKSUM" in unverified.output
    added = runner.invoke(cli, ["checksum", str(path)])
    assert added.exit_code == 0, added.output
    verified = runner.invoke(cli, ["checksum", "--verify", str(path)])
    assert verified.exit_code == 0 and f"{path}: OK" in verified.output
