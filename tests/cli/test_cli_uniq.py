"""`crds-events uniq`: test references made unique by a header keyword (the seed's
``crds_unique CRDSUNIQ``), so a server accepts the same reference again; FITS and ASDF."""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import asdf
import numpy as np
from astropy.io import fits
from click.testing import CliRunner
from fixtures.submissions import make_flat

from crds_events.certify import certify_files
from crds_events.cli import cli
from crds_events.files.checksums import verify_checksum


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _asdf(path: Path) -> Path:
    asdf.AsdfFile({"meta": {"telescope": "JWST", "reftype": "distortion",
                            "instrument": {"name": "MIRI"}},
                   "data": np.arange(6.0)}).write_to(path)
    return path


def test_uniq_changes_each_file_by_its_keyword_and_keeps_it_valid(tmp_path):
    one = make_flat(tmp_path / "one.fits", seed=1)
    two = tmp_path / "two.fits"
    shutil.copyfile(one, two)  # bit-identical copies: what a server would refuse
    with fits.open(two, mode="update") as hdus:  # one with checksums, kept valid
        hdus[0].add_checksum()
        hdus[1].add_checksum()
    tree = _asdf(tmp_path / "three.asdf")
    (tmp_path / "list.txt").write_text(f"# the asdf\n{tree}\n")
    before = {p: _sha1(p) for p in (one, two, tree)}
    result = CliRunner().invoke(cli, ["uniq", str(one), str(two), f"@{tmp_path / 'list.txt'}"])
    assert result.exit_code == 0, result.output
    values = [line.split(" = ")[1] for line in result.output.splitlines()]
    assert len(values) == 3 and len(set(values)) == 3  # strictly increasing stamps
    assert all(_sha1(p) != sha for p, sha in before.items())
    assert fits.getheader(one)["CRDSUNIQ"] == values[0]
    assert fits.getheader(two)["CRDSUNIQ"] == values[1]
    assert verify_checksum(two) == []  # recomputed, not stale
    with asdf.open(tree) as af:
        assert af.tree["meta"]["crdsuniq"] == values[2]
        assert list(af.tree["data"]) == [0, 1, 2, 3, 4, 5]
    assert np.array_equal(fits.getdata(one, "SCI"), fits.getdata(tmp_path / "one.fits", "SCI"))
    [certified] = certify_files([one])
    assert certified.ok, certified.messages
    # again: a new value each time
    again = CliRunner().invoke(cli, ["uniq", "--keyword", "testuniq", str(one)])
    assert again.exit_code == 0 and fits.getheader(one)["TESTUNIQ"] != values[0]


def test_uniq_refuses_what_it_cannot_rewrite_and_leaves_it_unchanged(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a reference\n")
    broken = tmp_path / "broken.fits"
    broken.write_bytes(make_flat(tmp_path / "whole.fits", seed=3).read_bytes()[:4000])
    good = make_flat(tmp_path / "good.fits", seed=4)
    before = {p: _sha1(p) for p in (text, broken)}
    result = CliRunner().invoke(cli, ["uniq", str(text), str(broken), str(good),
                                      str(tmp_path / "absent.fits")])
    assert result.exit_code == 1
    assert "notes.txt" in result.output and "broken.fits" in result.output
    assert "absent.fits" in result.output and "Traceback" not in result.output
    assert {p: _sha1(p) for p in (text, broken)} == before
    assert "CRDSUNIQ" in fits.getheader(good)  # the good one is still done
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left
    bad_keyword = CliRunner().invoke(cli, ["uniq", "--keyword", "TOO_LONG_KEY", str(good)])
    assert bad_keyword.exit_code == 1 and "1-8 letters" in bad_keyword.output


def test_sigkill_during_uniq_leaves_the_old_or_the_new_file(tmp_path):
    """Killed while rewriting a large file: the file is whole (old or new), never half."""
    big = tmp_path / "big.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((4000, 4000), np.float64),
                                                   name="SCI")]).writeto(big)
    original = _sha1(big)
    process = subprocess.Popen([sys.executable, "-m", "crds_events", "uniq", str(big)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    # killed once the new copy is being written beside the original
    while not any(p.name.endswith(".uniq") and p.stat().st_size > 0
                  for p in tmp_path.iterdir()):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "the rewrite never started"
        time.sleep(0.001)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert _sha1(big) == original  # the original is untouched; the copy was not renamed
    with fits.open(big) as hdus:
        assert hdus["SCI"].data.shape == (4000, 4000) and "CRDSUNIQ" not in hdus[0].header
    # the next run succeeds (the killed run's hidden partial copy is left aside)
    result = CliRunner().invoke(cli, ["uniq", str(big)])
    assert result.exit_code == 0, result.output
    assert "CRDSUNIQ" in fits.getheader(big) and _sha1(big) != original
