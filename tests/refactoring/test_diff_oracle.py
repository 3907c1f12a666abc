"""`crds-events diff` against the recorded `crds diff` results (oracle/diff and the diff part
of oracle/refactor): same stdout, same exit status. Inputs are copied into a tmp dir."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from crds_events.cli import cli
from crds_events.refactoring.diff import DiffOptions, context_diff, difference, text_difference
from crds_events.rules.diff import DiffTuple, mapping_diffs

# Corpus comparisons: the crds test mappings' `test/data/hst/...` child names are accepted.
pytestmark = [pytest.mark.corpus, pytest.mark.usefixtures("crds_test_data_names")]


def _cases(corpus: Path, name: str) -> list[dict]:
    return json.loads((corpus / "oracle" / name / "cases.json").read_text())["cases"]


def _copy_inputs(corpus: Path, tmp: Path, case: dict) -> None:
    """Copy the case's inputs under their corpus-relative paths (whole context directories
    for pmaps/imaps, whose children are found by name beside them)."""
    for rel in case["inputs"]:
        src = corpus / rel
        dst = tmp / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith((".pmap", ".imap")):
            shutil.copytree(src.parent, dst.parent, dirs_exist_ok=True)
        else:
            shutil.copy(src, dst)


def _normalise_text_diff_headers(output: str, top_files: list[str], observatory: str) -> str:
    """As the oracle records it: mtimes -> <MTIME>, child mappings -> mappings/<obs>/<name>."""

    def repl(match: re.Match) -> str:
        path = match.group(2)
        if path not in top_files:
            path = f"mappings/{observatory}/{os.path.basename(path)}"
        return f"{match.group(1)} {path}\t<MTIME>"

    return re.sub(r"^(\*\*\*|---) (\S+)\t.*$", repl, output, flags=re.M)


@pytest.mark.parametrize("index", range(9))
def test_diff_cases(corpus: Path, tmp_path: Path, monkeypatch, index: int) -> None:
    cases = _cases(corpus, "diff")
    assert len(cases) == 9
    case = cases[index]
    _copy_inputs(corpus, tmp_path, case)
    monkeypatch.chdir(tmp_path)
    args = shlex.split(case["command"])
    assert args[:2] == ["crds", "diff"]
    result = CliRunner().invoke(cli, ["diff", *args[2:]])
    expected = (corpus / "oracle" / case["expected_stdout"]).read_text()
    files = [a for a in args[2:] if not a.startswith("-")]
    got = _normalise_text_diff_headers(result.output, files, case["observatory"])
    assert got == expected, case["id"]
    assert result.exit_code == case["expected_exit_code"], case["id"]


@pytest.mark.parametrize("index", range(15))
def test_refactor_diff_cases(corpus: Path, tmp_path: Path, monkeypatch, index: int) -> None:
    """The `crds diff` of each old rmap and the rmap crds wrote for it."""
    cases = _cases(corpus, "refactor")
    case = cases[index]
    if not case.get("diff_command"):
        assert case["expected_output"] is None  # only the failed delete has no diff
        return
    for rel in case["inputs"]:
        shutil.copy(corpus / rel, tmp_path)
    new_name = shlex.split(case["command"])[4]
    shutil.copy(corpus / "oracle" / case["expected_output"], tmp_path / new_name)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["diff", *shlex.split(case["diff_command"])[2:]])
    expected = (corpus / "oracle" / case["diff_expected_stdout"]).read_text()
    assert result.output == expected, case["id"]
    assert result.exit_code == case["diff_expected_exit_code"], case["id"]


def test_library_matches_cli_and_sorts_longest_first(corpus: Path) -> None:
    mappings = corpus / "contexts" / "hst" / "mappings"
    diffs = mapping_diffs(mappings / "hst_0001.pmap", mappings / "hst_0002.pmap")
    assert [len(d) for d in diffs] == sorted((len(d) for d in diffs), reverse=True)
    # the deepest differences name the pmap, imap and rmap pairs they pass through
    assert diffs[0][1] == ("hst_acs.imap", "hst_acs_0002.imap")
    assert diffs[-1][-1] == "replaced 'hst_acs.imap' with 'hst_acs_0002.imap'"
    assert all(isinstance(d, DiffTuple) for d in diffs)


def test_hide_boring_can_make_equal(corpus: Path, tmp_path: Path) -> None:
    """Only a sha1sum differs: a difference with -i, none once boring ones are hidden."""
    src = corpus / "crds-test-data" / "jwst" / "jwst_miri_ipc_0002.rmap"
    other = corpus / "contexts" / "jwst" / "mappings" / "jwst_miri_ipc_0002.rmap"
    assert difference(src, other, DiffOptions(include_header_diffs=True)) == 1
    assert difference(src, other, DiffOptions(include_header_diffs=True,
                                              hide_boring_diffs=True)) == 0
    assert difference(src, other) == 0


def test_recurse_added_deleted_lists_nested_files(tmp_path: Path, corpus: Path) -> None:
    """A type removed from an imap (set to N/A) with -U lists each reference it held."""
    mappings = corpus / "contexts" / "hst" / "mappings"
    for name in ("hst_cos.imap", "hst_cos_deadtab.rmap"):
        shutil.copy(mappings / name, tmp_path)
    text = (tmp_path / "hst_cos.imap").read_text()
    (tmp_path / "hst_cos_na.imap").write_text(
        text.replace("'deadtab' : 'hst_cos_deadtab.rmap'", "'deadtab' : 'N/A'"))
    plain = mapping_diffs(tmp_path / "hst_cos.imap", tmp_path / "hst_cos_na.imap")
    assert [d[-1] for d in plain] == ["replaced 'hst_cos_deadtab.rmap' with 'N/A'"]
    nested = mapping_diffs(tmp_path / "hst_cos.imap", tmp_path / "hst_cos_na.imap",
                           recurse_added_deleted=True)
    deleted = sorted(d[-1] for d in nested if "terminal" in d[-1])
    rmap_text = (tmp_path / "hst_cos_deadtab.rmap").read_text()
    references = sorted(set(re.findall(r"'(\w+\.fits)'", rmap_text)))
    assert deleted == [f"deleted terminal {ref!r}" for ref in references]


def test_text_diff_ignores_whitespace_amounts_and_labels_mtime(tmp_path: Path) -> None:
    old = tmp_path / "a.rmap"
    new = tmp_path / "b.rmap"
    old.write_text("one\ntwo  three\nfour\n")
    new.write_text("one\ntwo three   \nfive\n")
    out = text_difference(old, new)
    assert re.match(rf"\*\*\* {re.escape(str(old))}\t\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{{9}} [+-]\d{{4}}\n", out)
    assert "! four\n" in out and "! five\n" in out
    # only the changed line is marked; the white-space-only change is context
    assert "  two  three\n" in out and "! two" not in out
    assert text_difference(old, old) == ""


def test_context_diff_matches_difflib_without_whitespace_changes() -> None:
    import difflib

    a = [f"line {i}\n" for i in range(40)]
    b = list(a)
    b[5] = "changed\n"
    del b[20]
    b.insert(30, "inserted\n")
    ours = context_diff(a, b, "a", "b")
    theirs = "".join(difflib.context_diff(a, b, "a", "b"))
    assert ours == theirs


def test_errors_are_exit_status_2(tmp_path: Path, corpus: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    rmap = corpus / "crds-test-data" / "hst" / "hst_cos_deadtab.rmap"
    assert runner.invoke(cli, ["diff", str(rmap), "missing.rmap"]).exit_code == 2
    (tmp_path / "bad.rmap").write_text("header = {}\nselector = __import__('os')\n")
    result = runner.invoke(cli, ["diff", str(rmap), "bad.rmap"])
    assert result.exit_code == 2
    assert "bad.rmap" in result.output
    pmap = corpus / "contexts" / "hst" / "mappings" / "hst_0001.pmap"
    assert runner.invoke(cli, ["diff", str(pmap), str(rmap)]).exit_code == 2
    # a pmap whose children are not beside it
    shutil.copy(pmap, tmp_path / "lonely.pmap")
    shutil.copy(corpus / "contexts" / "hst" / "mappings" / "hst_0002.pmap", tmp_path / "other.pmap")
    result = runner.invoke(cli, ["diff", "lonely.pmap", "other.pmap"])
    assert result.exit_code == 2 and "not found" in result.output


def test_colour_only_when_asked(corpus: Path, monkeypatch) -> None:
    monkeypatch.chdir(corpus)
    args = ["diff", "crds-test-data/hst/hst_cos_deadtab.rmap",
            "crds-test-data/hst/hst_cos_deadtab_9998.rmap"]
    plain = CliRunner().invoke(cli, args)
    assert "\x1b[" not in plain.output
    coloured = CliRunner().invoke(cli, [*args, "--color"], color=True)
    assert "\x1b[" in coloured.output
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured.output) == plain.output
