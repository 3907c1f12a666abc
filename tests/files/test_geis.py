"""GEIS pairs: the data file's name, pairing a list of names, checking and renaming a pair."""

from __future__ import annotations

import datetime
import os

import pytest
from fixtures.geis import data_bytes, new_pair

from crds_events.files.errors import ReferenceFileError
from crds_events.files.geis import (
    check_pair,
    expected_data_size,
    geis_data_name,
    geis_header_name,
    pair_names,
    rename_pair,
)
from crds_events.files.headers import read_header


def test_conjugate_names_keep_case_and_refuse_other_names():
    assert geis_data_name("dbu1405fu.r1h") == "dbu1405fu.r1d"
    assert geis_data_name("X.R9H") == "X.R9D"
    assert geis_header_name("dbu1405fu.r1d") == "dbu1405fu.r1h"
    for bad in ("x.fits", "x.r1d", "x.rah", "x.r1h.gz"):
        with pytest.raises(ValueError, match="not a GEIS header"):
            geis_data_name(bad)
    with pytest.raises(ValueError, match="not a GEIS data"):
        geis_header_name("x.r1h")


def test_pair_names_splits_pairs_and_unpaired_halves():
    found = pair_names(["a.r1h", "a.r1d", "b.r2h", "c.r3d", "d.fits", "e.r0d", "e.r0h"])
    assert found.pairs == {"a.r1h": "a.r1d", "e.r0h": "e.r0d"}
    assert found.headers_without_data == ["b.r2h"]
    assert found.data_without_header == ["c.r3d"]
    assert found.others == ["d.fits"]


def test_expected_size_of_the_corpus_header(corpus):
    header = read_header(corpus / "contexts/hst/references/dbu1405fu.r1h")
    # 4 groups of 4096 x 2 REAL*4 pixels and a 1760-bit parameter block
    assert expected_data_size(header) == 4 * (4096 * 2 * 4 + 1760 // 8)
    assert expected_data_size({"BITPIX": "16", "NAXIS": "1", "NAXIS1": "10"}) == 20
    assert expected_data_size({"BITPIX": "16"}) is None
    assert expected_data_size({"BITPIX": "x", "NAXIS": "1", "NAXIS1": "10"}) is None


def test_check_pair_accepts_a_complete_pair(corpus, tmp_path):
    header, data = new_pair(corpus, tmp_path)
    assert check_pair(header) == data
    data.write_bytes(data.read_bytes() + b"\0" * 512)  # padded copies are tolerated
    assert check_pair(header) == data


@pytest.mark.parametrize("damage, reason", [
    ("missing", "GEIS data file new_atod.r1d is missing"),
    ("empty", "is empty"),
    ("truncated", "truncated"),
    ("directory", "not a regular file"),
    ("escaping symlink", "symlink leading out"),
    ("dangling symlink", "dangling"),
])
def test_check_pair_refuses_a_bad_data_file(corpus, tmp_path, damage, reason):
    header, data = new_pair(corpus, tmp_path / "in")
    outside = tmp_path / "elsewhere.r1d"
    outside.write_bytes(data.read_bytes())
    data.unlink()
    if damage == "empty":
        data.write_bytes(b"")
    elif damage == "truncated":
        data.write_bytes(outside.read_bytes()[:-1])
    elif damage == "directory":
        data.mkdir()
    elif damage == "escaping symlink":
        data.symlink_to(outside)
    elif damage == "dangling symlink":
        data.symlink_to(tmp_path / "in" / "gone.r1d")
    with pytest.raises(ReferenceFileError, match=reason) as caught:
        check_pair(header)
    assert str(tmp_path) not in str(caught.value)  # names files, never server paths


def test_a_symlink_inside_the_directory_is_followed(corpus, tmp_path):
    header, data = new_pair(corpus, tmp_path)
    real = tmp_path / "stored.bin"
    data.rename(real)
    data.symlink_to(real.name)
    assert check_pair(header) == data


def test_rename_pair_rewrites_the_header_and_copies_the_data(corpus, tmp_path):
    header, data = new_pair(corpus, tmp_path / "in")
    when = datetime.datetime(2024, 3, 5, 12, 0, 0)
    new_header, new_data = rename_pair(header, data, "o3512000u_a2d.r1h", tmp_path / "out",
                                       now=when)
    assert (new_header.name, new_data.name) == ("o3512000u_a2d.r1h", "o3512000u_a2d.r1d")
    assert new_data.read_bytes() == data.read_bytes()
    text = new_header.read_text(encoding="ascii")
    assert all(len(line) == 80 for line in text.splitlines())
    renamed = read_header(new_header)
    assert renamed["ROOTNAME"] == "O3512000U_A2D"  # replaced in place, comment kept
    assert renamed["FILENAME"] == "o3512000u_a2d.r1h"  # added: the original had none
    assert "new_atod.r1h renamed to o3512000u_a2d.r1h on Mar 5 2024" in renamed["HISTORY"]
    assert text.splitlines()[-1].startswith("END")
    before = read_header(header)
    for key in ("MODE", "ATODGAIN", "USEAFTER", "INSTRUME", "FILETYPE", "NAXIS1"):
        assert renamed[key] == before[key]
    assert check_pair(new_header) == new_data
    # nothing is replaced: a second rename to the same name is refused, the files stay
    with pytest.raises(ReferenceFileError, match="already exists"):
        rename_pair(header, data, "o3512000u_a2d.r1h", tmp_path / "out", now=when)
    assert new_data.read_bytes() == data.read_bytes()


def test_rename_pair_refuses_names_that_are_not_plain_geis_headers(corpus, tmp_path):
    header, data = new_pair(corpus, tmp_path / "in")
    for bad in ("../up.r1h", "x.fits", "sub/x.r1h"):
        with pytest.raises(ReferenceFileError, match="not a GEIS header name"):
            rename_pair(header, data, bad, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "up.r1h").exists()


def test_a_data_file_missing_mid_rename_leaves_no_half_pair(corpus, tmp_path):
    header, data = new_pair(corpus, tmp_path / "in")
    os.unlink(data)
    with pytest.raises(ReferenceFileError, match="cannot rename"):
        rename_pair(header, data, "o3512000u_a2d.r1h", tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_data_bytes_fixture_matches_the_header(corpus):
    header = corpus / "contexts/hst/references/e1b09593u.r1h"
    assert len(data_bytes(header)) == expected_data_size(read_header(header))
