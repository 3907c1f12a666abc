"""`crds-events refactor` against the recorded `crds refactor` results (oracle/refactor):
byte-identical rmaps, the same exit status, log messages that say the same things; and the
changes CRDS refuses, refused here too (checked against the crds library itself)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from crds_events.cli import cli
from crds_events.refactoring.refactor import insert_references, valid_values_from_tpns
from crds_events.rules.checksum import mapping_checksum
from crds_events.rules.parse import parse_mapping
from crds_events.rules.substitutions import ENV_VAR, load_substitutions

# Corpus comparisons: the crds test mappings' `test/data/hst/...` child names are accepted.
pytestmark = [pytest.mark.corpus, pytest.mark.usefixtures("crds_test_data_names")]


def _cases(corpus: Path) -> list[dict]:
    return json.loads((corpus / "oracle" / "refactor" / "cases.json").read_text())["cases"]


def _levels_and_files(lines: list[str]) -> list[tuple[str, frozenset[str]]]:
    """(level, file names mentioned) of each message line, without the closing counts."""
    found = []
    for line in lines:
        match = re.match(r"^CRDS(?:-EVENTS)? - (INFO|WARNING|ERROR) - +(.*)$", line)
        if not match or re.fullmatch(r"\d+ (errors|warnings|infos)", match.group(2)):
            continue
        names = frozenset(re.findall(r"[\w.]+\.(?:fits|rmap)", match.group(2)))
        found.append((match.group(1), names))
    return found


def _counts(text: str) -> dict[str, int]:
    return {kind: int(n) for n, kind in re.findall(r"(\d+) (errors|warnings|infos)", text)}


@pytest.mark.parametrize("index", range(15))
def test_refactor_cases(corpus: Path, tmp_path: Path, monkeypatch, index: int) -> None:
    cases = _cases(corpus)
    assert len(cases) == 15
    case = cases[index]
    for rel in case["inputs"]:
        shutil.copy(corpus / rel, tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(ENV_VAR, str(corpus / "site-config" / case["observatory"] / "substitutions.dat"))
    args = shlex.split(case["command"])
    assert args[:2] == ["crds", "refactor"]
    result = CliRunner().invoke(cli, ["refactor", *args[2:]])
    assert result.exit_code == case["expected_exit_code"], (case["id"], result.output)

    new_rmap = tmp_path / args[4]
    if case["expected_output"] is None:
        assert not new_rmap.exists()
    else:
        expected = (corpus / "oracle" / case["expected_output"]).read_bytes()
        written = new_rmap.read_bytes()
        assert written == expected, case["id"]
        assert hashlib.sha1(written).hexdigest() == case["expected_output_sha1"]
        # and the sha1sum it carries is the checksum of its own text
        text = written.decode()
        assert parse_mapping(text).header["sha1sum"] == mapping_checksum(text)

    expected_log = (corpus / "oracle" / case["expected_log"]).read_text()
    ours = result.stderr.splitlines()
    assert _counts("\n".join(ours)) == _counts(expected_log), case["id"]
    assert _levels_and_files(ours) == _levels_and_files(expected_log.splitlines()), case["id"]


# ----------------------------------------------------------------------------- refusals


def _reference(path: Path, **cards: str) -> Path:
    from astropy.io import fits

    hdu = fits.PrimaryHDU()
    for key, value in cards.items():
        hdu.header[key.replace("_", "-") if key == "DATE_OBS" else key] = value
    hdu.writeto(path)
    return path


def _crds_refactor(tmp: Path, *args: str) -> int:
    """Run the real `crds refactor` (the crds library in this venv) offline in `tmp`."""
    env = dict(os.environ, CRDS_PATH=str(tmp / "crds_cache"), CRDS_OBSERVATORY="hst")
    env.pop("CRDS_SERVER_URL", None)
    code = ("import sys; from crds.refactoring.refactor import RefactorScript; "
            "sys.exit(RefactorScript()())")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=tmp, env=env,
                          capture_output=True, timeout=120).returncode


@pytest.mark.slow
@pytest.mark.parametrize(
    "detector, accepted",
    [
        ("FUV", False),  # no USEAFTER into the existing FUV case: CRDS refuses
        ("FUV|NUV", True),  # ... but it starts a new case with 'UNDEFINED UNDEFINED'
    ],
)
def test_undefined_useafter(corpus: Path, tmp_path: Path, detector: str, accepted: bool) -> None:
    shutil.copy(corpus / "crds-test-data" / "hst" / "hst_cos_deadtab.rmap", tmp_path)
    ref = _reference(tmp_path / "nouseafter_dead.fits", INSTRUME="COS", DETECTOR=detector,
                     FILETYPE="DEADTIME REFERENCE TABLE")
    ours = insert_references(tmp_path / "hst_cos_deadtab.rmap", tmp_path / "ours.rmap", [ref])
    assert (ours.exit_code == 0) is accepted
    assert (tmp_path / "ours.rmap").exists() is accepted
    _crds_refactor(tmp_path, "insert", "hst_cos_deadtab.rmap", "theirs.rmap", ref.name)
    assert (tmp_path / "theirs.rmap").exists() is accepted
    if accepted:
        assert (tmp_path / "ours.rmap").read_text() == (tmp_path / "theirs.rmap").read_text()
        assert "'UNDEFINED UNDEFINED' : 'nouseafter_dead.fits'" in ours.text
    else:
        (level, message), = [m for m in ours.log.messages if m[0] == "ERROR"]
        assert "FAILED" in message and "UNDEFINED" in message and "nouseafter_dead.fits" in message


def test_equal_weight_overlap_refused_for_jwst(corpus: Path, tmp_path: Path) -> None:
    """JWST: a case that the rules would merge with an existing one at equal weight is
    refused (ambiguous), while HST only notes such overlaps."""
    shutil.copy(corpus / "crds-test-data" / "jwst" / "jwst_miri_ipc_0002.rmap", tmp_path)
    ref = _reference(tmp_path / "jwst_miri_ipc_overlap.fits", INSTRUME="MIRI",
                     DETECTOR="MIRIFUSHORT", P_DETECT="MIRIFUSHORT|", P_BAND="SHORT|",
                     USEAFTER="2020-01-01T00:00:00")
    result = insert_references(tmp_path / "jwst_miri_ipc_0002.rmap", tmp_path / "new.rmap", [ref])
    assert result.exit_code == 1 and result.text is None
    assert not (tmp_path / "new.rmap").exists()
    assert "equal weight" in result.log.messages[-1][1]


def test_invalid_match_values_refused_with_site_tpns(corpus: Path, tmp_path: Path,
                                                    monkeypatch) -> None:
    """With the site's _ld.tpn values, 'XUV' is no COS detector: refused, nothing written."""
    shutil.copy(corpus / "crds-test-data" / "hst" / "hst_cos_deadtab.rmap", tmp_path)
    _reference(tmp_path / "xuv_dead.fits", INSTRUME="COS", DETECTOR="FUV|XUV",
               USEAFTER="Oct 01 1997 01:01:01")
    monkeypatch.chdir(tmp_path)
    tpns = corpus / "site-config" / "hst" / "tpns"
    assert valid_values_from_tpns("hst_cos_deadtab.rmap", tpns) == {"DETECTOR": ["FUV", "NUV"]}
    runner = CliRunner()
    refused = runner.invoke(cli, ["refactor", "insert", "hst_cos_deadtab.rmap", "a.rmap",
                                  "xuv_dead.fits", "--tpn-dir", str(tpns)])
    assert refused.exit_code == 1 and "'XUV'" in refused.stderr
    assert not (tmp_path / "a.rmap").exists()
    accepted = runner.invoke(cli, ["refactor", "insert", "hst_cos_deadtab.rmap", "b.rmap",
                                   "xuv_dead.fits"])
    assert accepted.exit_code == 0
    assert "'FUV|XUV' : UseAfter({" in (tmp_path / "b.rmap").read_text()


def test_substitutions_expand_wildcards(corpus: Path, tmp_path: Path) -> None:
    """ACS CCDAMP='ABCDALL' becomes the table's or-pattern only with the site table."""
    shutil.copy(corpus / "crds-test-data" / "hst" / "hst_acs_biasfile_0001.rmap", tmp_path)
    ref = corpus / "crds-test-data" / "hst" / "hst_acs_biasfile_0002.fits"
    table = load_substitutions(corpus / "site-config" / "hst" / "substitutions.dat")
    with_table = insert_references(tmp_path / "hst_acs_biasfile_0001.rmap", tmp_path / "a.rmap",
                                   [ref], substitutions=table)
    without = insert_references(tmp_path / "hst_acs_biasfile_0001.rmap", tmp_path / "b.rmap", [ref])
    assert "('WFC', 'A|ABCD|B|C|D', '2.0'" in with_table.text
    assert "('WFC', 'ABCDALL', '2.0', 'ANY_FULL'" in without.text


def test_bad_inputs_are_clear_errors(corpus: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    (tmp_path / "evil.rmap").write_text("import os\nheader = {}\nselector = {}\n")
    result = runner.invoke(cli, ["refactor", "delete", "evil.rmap", "out.rmap", "x.fits"])
    assert result.exit_code == 1 and "evil.rmap" in result.stderr and "FAILED" in result.stderr
    assert not (tmp_path / "out.rmap").exists()
    shutil.copy(corpus / "crds-test-data" / "hst" / "hst_cos_deadtab.rmap", tmp_path)
    result = runner.invoke(cli, ["refactor", "insert", "hst_cos_deadtab.rmap", "out.rmap",
                                 "missing.fits"])
    assert result.exit_code == 1 and "FAILED" in result.stderr and "missing.fits" in result.stderr
    (tmp_path / "garbage.fits").write_bytes(b"SIMPLE  =  T" + b"\0" * 50)
    result = runner.invoke(cli, ["refactor", "insert", "hst_cos_deadtab.rmap", "out.rmap",
                                 "garbage.fits"])
    assert result.exit_code == 1 and "FAILED" in result.stderr and "garbage.fits" in result.stderr
    result = runner.invoke(cli, ["refactor", "del_header", "hst_cos_deadtab.rmap", "out.rmap",
                                 "no_such_key"])
    assert result.exit_code == 1 and "no_such_key" in result.stderr
    assert not (tmp_path / "out.rmap").exists()
