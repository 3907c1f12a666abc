"""The tools commands end to end: refactor insert -> newcontext -> diff on a copy of the
corpus HST context, with the flags operators use (-F, -Q, -L, -E, -T)."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from crds_events.cli import cli

pytestmark = pytest.mark.corpus


@pytest.fixture
def workdir(corpus: Path, tmp_path: Path, monkeypatch) -> Path:
    shutil.copytree(corpus / "contexts" / "hst" / "mappings", tmp_path, dirs_exist_ok=True)
    shutil.copy(corpus / "crds-test-data" / "hst" / "s7g1700hl_dead.fits", tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CRDS_EVENTS_SUBSTITUTIONS",
                       str(corpus / "site-config" / "hst" / "substitutions.dat"))
    return tmp_path


def _oracle_rmap_diff(corpus: Path) -> tuple:
    """The one difference crds found for this insertion (oracle/refactor)."""
    text = (corpus / "oracle" / "refactor" / "hst_cos_deadtab_insert.diff.txt").read_text()
    (line,) = text.splitlines()
    return ast.literal_eval(line)


def test_insert_newcontext_diff(workdir: Path, corpus: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["refactor", "insert", "hst_cos_deadtab.rmap",
                                 "hst_cos_deadtab_0001.rmap", "s7g1700hl_dead.fits"])
    assert result.exit_code == 0, result.output
    assert (workdir / "hst_cos_deadtab_0001.rmap").read_text() == (
        corpus / "oracle" / "refactor" / "hst_cos_deadtab_insert.rmap").read_text()

    result = runner.invoke(cli, ["newcontext", "hst_0001.pmap", "hst_cos_deadtab_0001.rmap"])
    assert result.exit_code == 0, result.output
    # hst_0002.pmap exists, so the next pmap is hst_0003; hst_cos.imap starts its series
    assert result.stdout.split() == ["hst_cos_0001.imap", "hst_0003.pmap"]
    assert "Replaced 'hst_cos.imap' with 'hst_cos_0001.imap' for 'COS'" in result.stderr

    result = runner.invoke(cli, ["diff", "hst_0001.pmap", "hst_0003.pmap"])
    assert result.exit_code == 1
    rmap_pair, match_key, date, message = _oracle_rmap_diff(corpus)
    expected = [
        (("./hst_0001.pmap", "./hst_0003.pmap"), ("hst_cos.imap", "hst_cos_0001.imap"),
         ("hst_cos_deadtab.rmap", "hst_cos_deadtab_0001.rmap"), match_key, date, message),
        (("./hst_0001.pmap", "./hst_0003.pmap"), ("hst_cos.imap", "hst_cos_0001.imap"),
         ("deadtab",), "replaced hst_cos_deadtab.rmap with hst_cos_deadtab_0001.rmap"),
        (("./hst_0001.pmap", "./hst_0003.pmap"), ("cos",),
         "replaced hst_cos.imap with hst_cos_0001.imap"),
    ]
    assert [ast.literal_eval(line) for line in result.stdout.splitlines()] == expected

    # -F (lowest mapping only, no paths, header diffs without the boring ones) and -Q
    result = runner.invoke(cli, ["diff", "hst_0001.pmap", "hst_0003.pmap", "-F", "-Q"])
    assert result.exit_code == 1
    lowest = [
        "hst_cos_deadtab.rmap hst_cos_deadtab_0001.rmap -- "
        + " -- ".join([" ".join(match_key), " ".join(date), message]),
        "hst_cos.imap hst_cos_0001.imap -- deadtab -- "
        "replaced hst_cos_deadtab.rmap with hst_cos_deadtab_0001.rmap",
        "hst_0001.pmap hst_0003.pmap -- cos -- replaced hst_cos.imap with hst_cos_0001.imap",
    ]
    assert result.stdout.splitlines() == lowest

    # -T: logical differences, then one text diff per changed mapping pair
    result = runner.invoke(cli, ["diff", "hst_0001.pmap", "hst_0003.pmap", "-T"])
    banners = [line for line in result.stdout.splitlines() if "text difference" in line]
    assert [b.split("'")[1::2] for b in banners] == [
        ["./hst_0001.pmap", "./hst_0003.pmap"],
        ["hst_cos.imap", "hst_cos_0001.imap"],
        ["hst_cos_deadtab.rmap", "hst_cos_deadtab_0001.rmap"],
    ]
    assert "+         '1997-10-01 01:01:01' : 's7g1700hl_dead.fits',\n" in result.stdout

    same = runner.invoke(cli, ["diff", "hst_0001.pmap", "hst_0001.pmap"])
    assert (same.exit_code, same.stdout) == (0, "")


def test_newcontext_refusals_are_click_errors(workdir: Path) -> None:
    result = CliRunner().invoke(cli, ["newcontext", "hst_0001.pmap", "jwst_miri_ipc_0009.rmap"])
    assert result.exit_code == 1
    assert "unknown instrument 'miri'" in result.stderr


def test_refactor_set_and_del_header_roundtrip(workdir: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["refactor", "set_header", "hst_cos_deadtab.rmap", "a.rmap",
                               "new_key", "some", "value"]).exit_code == 0
    assert runner.invoke(cli, ["refactor", "del_header", "a.rmap", "b.rmap",
                               "new_key"]).exit_code == 0
    diff = runner.invoke(cli, ["diff", "hst_cos_deadtab.rmap", "a.rmap", "-i", "-B"])
    assert diff.stdout.splitlines() == [
        "(('./hst_cos_deadtab.rmap', './a.rmap'), \"header added 'new_key' = 'some value'\")"]
    # deleting the key again gives the same text as the original: canonical layout, same sum
    assert (workdir / "b.rmap").read_text() == (workdir / "hst_cos_deadtab.rmap").read_text()
