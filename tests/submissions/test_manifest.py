"""submission.yaml: every bad manifest is refused with the field and the reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from crds_events.submissions.manifest import (
    MANIFEST_NAME,
    ManifestError,
    load_manifest,
    write_manifest,
)

GOOD = {
    "deliverer": "Jane Doe",
    "instrument": "MIRI",
    "description": "new IPC kernels",
    "change_level": "MODERATE",
    "derive_from": "edit",
    "other_emails": ["a@example.org"],
    "calpipe_version": "1.15.0",
    "modes_affected": "MIRIFULONG",
}


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "ingest" / "jane"
    directory.mkdir(parents=True)
    (directory / "ipc_a.fits").write_bytes(b"x" * 2880)
    (directory / "ipc_b.fits").write_bytes(b"y" * 5760)
    return directory


def _write(directory: Path, data) -> None:
    text = data if isinstance(data, str) else yaml.safe_dump(data)
    (directory / MANIFEST_NAME).write_text(text)


def _problems(directory: Path, data, **kwargs) -> dict[str, str]:
    _write(directory, data)
    with pytest.raises(ManifestError) as info:
        load_manifest(directory, observatory="jwst", **kwargs)
    message = str(info.value)
    for field, reason in info.value.problems:
        assert field in message and reason in message
    return dict(info.value.problems)


def test_good_manifest_defaults_to_every_other_file(user_dir: Path):
    (user_dir / ".upload.part").write_bytes(b"partial")  # hidden temp files are not taken
    _write(user_dir, GOOD)
    manifest = load_manifest(user_dir, observatory="jwst")
    assert manifest.files == ("ipc_a.fits", "ipc_b.fits")
    assert manifest.sizes == {"ipc_a.fits": 2880, "ipc_b.fits": 5760}
    assert manifest.instrument == "miri"
    assert manifest.change_level == "MODERATE"
    assert manifest.kind == "batch" and manifest.auto_rename is True
    assert manifest.redcat == {"calpipe_version": "1.15.0", "modes_affected": "MIRIFULONG"}
    assert len(manifest.sha1) == 40


def test_explicit_file_list_and_atomic_writer(user_dir: Path):
    path = write_manifest(user_dir, {**GOOD, "files": ["ipc_b.fits"], "kind": "references",
                                     "derive_from": "jwst_0042.pmap"})
    assert path.name == MANIFEST_NAME
    assert not [p for p in user_dir.iterdir() if p.name.endswith(".tmp")]
    manifest = load_manifest(user_dir, observatory="jwst")
    assert manifest.files == ("ipc_b.fits",)
    assert manifest.derive_from == "jwst_0042.pmap"


@pytest.mark.parametrize("field", ["deliverer", "instrument", "description"])
def test_missing_required_field(user_dir: Path, field: str):
    data = {k: v for k, v in GOOD.items() if k != field}
    assert _problems(user_dir, data)[field] == "missing (required)"


def test_wrong_types(user_dir: Path):
    data = {**GOOD, "description": ["a", "list"], "auto_rename": "maybe",
            "other_emails": {"x": 1}, "files": 42, "change_level": "HUGE",
            "derive_from": "yesterday", "kind": "everything"}
    problems = _problems(user_dir, data)
    assert "expected text" in problems["description"]
    assert "true or false" in problems["auto_rename"]
    assert "list of addresses" in problems["other_emails"]
    assert "list of file names" in problems["files"]
    assert "SEVERE" in problems["change_level"]
    assert "edit, latest" in problems["derive_from"]
    assert "batch" in problems["kind"]


def test_unknown_instrument_and_fields(user_dir: Path):
    problems = _problems(user_dir, {**GOOD, "instrument": "WFC3", "colour": "blue",
                                    "other_emails": ["not-an-address"]})
    assert "unknown JWST instrument 'WFC3'" in problems["instrument"]
    assert problems["colour"] == "unknown field"
    assert "not an e-mail address" in problems["other_emails[0]"]


def test_not_yaml_and_not_a_mapping(user_dir: Path):
    assert "not valid YAML" in _problems(user_dir, "deliverer: [unclosed\n")["manifest"]
    assert "mapping of fields" in _problems(user_dir, "- just\n- a list\n")["manifest"]
    assert _problems(user_dir, "")["manifest"] == "empty manifest"


@pytest.mark.parametrize("name, reason", [
    ("../outside.fits", "plain file name"),
    ("sub/inner.fits", "plain file name"),
    ("/etc/passwd", "absolute paths"),
    (".hidden.fits", "hidden files"),
    ("missing.fits", "no such file"),
    (MANIFEST_NAME, "the manifest itself"),
])
def test_path_tricks_refused(user_dir: Path, name: str, reason: str):
    (user_dir.parent / "outside.fits").write_bytes(b"z" * 10)
    (user_dir / ".hidden.fits").write_bytes(b"z" * 10)
    problems = _problems(user_dir, {**GOOD, "files": ["ipc_a.fits", name]})
    assert reason in problems["files[1]"]
    assert "files[0]" not in problems


def test_symlink_out_of_ingest_dir_refused(user_dir: Path, tmp_path: Path):
    secret = tmp_path / "secret.fits"
    secret.write_bytes(b"s" * 100)
    os.symlink(secret, user_dir / "link.fits")
    problems = _problems(user_dir, GOOD)  # default listing includes the link
    assert "symlink leads out of the ingest directory" in problems["files"]
    # a link that stays inside the directory is just another name for a file there
    (user_dir / "link.fits").unlink()
    os.symlink(user_dir / "ipc_a.fits", user_dir / "link.fits")
    _write(user_dir, GOOD)
    assert "link.fits" in load_manifest(user_dir, observatory="jwst").files


def test_manifest_symlink_refused(user_dir: Path, tmp_path: Path):
    elsewhere = tmp_path / "m.yaml"
    elsewhere.write_text(yaml.safe_dump(GOOD))
    os.symlink(elsewhere, user_dir / MANIFEST_NAME)
    with pytest.raises(ManifestError) as info:
        load_manifest(user_dir, observatory="jwst")
    assert info.value.fields == ["manifest"]


def test_empty_and_huge_files(user_dir: Path):
    (user_dir / "empty.fits").write_bytes(b"")
    problems = _problems(user_dir, {**GOOD, "files": ["empty.fits", "ipc_b.fits"]},
                         max_file_size=4000)
    assert "empty (0 bytes)" in problems["files[0]"]
    assert "5760 bytes is over the limit of 4000" in problems["files[1]"]


def test_directory_entry_and_no_files(user_dir: Path, tmp_path: Path):
    (user_dir / "adir").mkdir()
    assert "not a regular file" in _problems(user_dir, {**GOOD, "files": ["adir"]})["files[0]"]
    empty = tmp_path / "ingest" / "bob"
    empty.mkdir()
    assert "no files to submit" in _problems(empty, GOOD)["files"]


def _alias_bomb(depth: int = 7) -> str:
    """A 461-byte-class manifest whose description is 10**depth strings via aliases."""
    lines = ["deliverer: Jane Doe", "instrument: MIRI", "change_level: MODERATE",
             "x0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, depth + 1):
        lines.append(f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 10) + "]")
    lines.append(f"description: *x{depth}")
    return "\n".join(lines) + "\n"


def test_yaml_aliases_in_a_manifest_are_refused_with_a_short_message(user_dir: Path):
    text = _alias_bomb()
    assert len(text) < 600
    _write(user_dir, text)
    with pytest.raises(ManifestError) as info:
        load_manifest(user_dir, observatory="jwst")
    assert info.value.problems == [("manifest", "YAML aliases are not allowed here")]
    assert len(str(info.value)) < 300
    # even one harmless alias: a manifest has no use for them
    one = "deliverer: &d Jane Doe\nother: *d\ninstrument: MIRI\n"
    assert "aliases" in _problems(user_dir, one)["manifest"]


def test_manifest_problems_quoting_huge_values_stay_short(user_dir: Path):
    problems = _problems(user_dir, {**GOOD, "instrument": "X" * 100_000})
    assert len(problems["instrument"]) <= 500 and "characters cut" in problems["instrument"]
