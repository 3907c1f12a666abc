"""The server's file cache (CRDS layout, atomic write-once puts) and the artifact store."""

from __future__ import annotations

import hashlib
import os
import stat
import threading

import pytest

from crds_events.config import load_settings
from crds_events.store.artifacts import ArtifactError, ArtifactNotFound, ArtifactStore
from crds_events.store.filestore import FileStore, FileStoreError


@pytest.fixture
def files(tmp_path):
    return FileStore(tmp_path / "store", "hst")


def test_put_bytes_lands_in_crds_layout_read_only(files, tmp_path):
    data = b"SIMPLE  =                    T" + bytes(range(256))
    sha1, size = files.put(data, "x2i1559gl_wcp.fits", "reference")
    assert (sha1, size) == (hashlib.sha1(data).hexdigest(), len(data))
    path = tmp_path / "store" / "references" / "hst" / "x2i1559gl_wcp.fits"
    assert files.path_for("x2i1559gl_wcp.fits") == path
    assert path.read_bytes() == data
    assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert files.exists("x2i1559gl_wcp.fits") and files.sha1_of("x2i1559gl_wcp.fits") == sha1
    # nothing but the file is left in the directory (no temporary files)
    assert os.listdir(path.parent) == ["x2i1559gl_wcp.fits"]


def test_put_from_path_and_kind_from_extension(files, tmp_path):
    source = tmp_path / "hst_acs.imap"
    source.write_text("header = {}\n")
    sha1, size = files.put(source, "hst_acs.imap")
    assert files.path_for("hst_acs.imap") == tmp_path / "store" / "mappings" / "hst" / "hst_acs.imap"
    assert files.path_for("hst_acs.imap").read_text() == "header = {}\n"
    assert sha1 == hashlib.sha1(source.read_bytes()).hexdigest() and size == 12
    assert files.names("mapping") == ["hst_acs.imap"] and files.names("reference") == []


def test_same_content_again_is_harmless_different_content_refused(files):
    first = files.put(b"one", "a.fits")
    assert files.put(b"one", "a.fits") == first
    with pytest.raises(FileStoreError, match=r"a\.fits: already stored with different content"):
        files.put(b"two", "a.fits")
    assert files.path_for("a.fits").read_bytes() == b"one"
    assert os.listdir(files.path_for("a.fits").parent) == ["a.fits"]


@pytest.mark.parametrize("name", [
    "../evil.fits", "sub/evil.fits", "/etc/passwd", "..", ".", ".hidden.fits", "",
    "a\\b.fits", "bad\nname.fits", "x" * 300,
])
def test_path_tricks_are_refused(files, tmp_path, name):
    with pytest.raises(FileStoreError, match="file name"):
        files.put(b"data", name, "reference")
    with pytest.raises(FileStoreError):
        files.path_for(name)
    # nothing written anywhere under (or beside) the store
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == []


def test_non_string_name_and_bad_kind_and_missing_source(files, tmp_path):
    with pytest.raises(FileStoreError):
        files.put(b"x", None)  # type: ignore[arg-type]
    with pytest.raises(FileStoreError, match="kind"):
        files.put(b"x", "a.fits", "dataset")
    with pytest.raises(FileStoreError, match="not a file"):
        files.put(tmp_path / "absent.fits", "a.fits")
    with pytest.raises(FileStoreError, match="not a file"):
        files.put(tmp_path, "a.fits")


def test_concurrent_puts_of_different_content_one_wins(files):
    """Write-once holds under a race: exactly one content ends up stored, the rest refused."""
    barrier = threading.Barrier(6)
    outcomes: list[object] = [None] * 6

    def put(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = files.put(f"content {i}".encode() * 1000, "race.fits")
        except FileStoreError as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=put, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if isinstance(o, tuple)]
    assert len(winners) == 1
    assert files.sha1_of("race.fits") == winners[0][0]
    assert os.listdir(files.path_for("race.fits").parent) == ["race.fits"]


def test_from_settings_uses_store_and_observatory(tmp_path):
    settings = load_settings(tmp_path, {"observatory": "jwst"}, environ={})
    store = FileStore(settings)
    assert store.mappings_dir == settings.store / "mappings" / "jwst"
    assert FileStore.from_settings(settings).references_dir == settings.store / "references" / "jwst"


# --- artifacts -----------------------------------------------------------------------------------


def test_artifacts_are_content_addressed(tmp_path):
    artifacts = ArtifactStore.for_root(tmp_path)
    digest = artifacts.put_bytes(b"certify report")
    assert digest == hashlib.sha256(b"certify report").hexdigest()
    assert artifacts.put_bytes(b"certify report") == digest
    assert artifacts.get_bytes(digest) == b"certify report"
    path = tmp_path / "artifacts" / digest[:2] / digest
    assert path.is_file() and not path.stat().st_mode & stat.S_IWUSR
    value = {"files": ["a.fits", "b.fits"], "status": "OK", "n": 2}
    json_digest = artifacts.put_json(value)
    assert artifacts.get_json(json_digest) == value
    # equal values, whatever the key order, share one blob
    assert artifacts.put_json({"n": 2, "status": "OK", "files": ["a.fits", "b.fits"]}) == json_digest
    assert artifacts.put("text ü") == hashlib.sha256("text ü".encode()).hexdigest()
    assert artifacts.get(artifacts.put(b"raw")) == b"raw"


def test_artifacts_refuse_bad_digests_and_report_damage(tmp_path):
    artifacts = ArtifactStore.for_root(tmp_path)
    for bad in ("../../etc/passwd", "abc", "A" * 64, "g" * 64, "0" * 64 + "\n", None):
        with pytest.raises(ArtifactError, match="digest"):
            artifacts.get_bytes(bad)
    with pytest.raises(ArtifactNotFound, match="not stored"):
        artifacts.get_bytes("0" * 64)
    digest = artifacts.put_bytes(b"original")
    path = artifacts.path_for(digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match="does not match"):
        artifacts.get_bytes(digest)
