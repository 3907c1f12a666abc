"""import-cache and GEIS: the data file beside each GEIS header is cataloged and released
with it (sha1, size, instrument, type); an absent one is counted, a bad one refused."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap

import pytest
from fixtures.contexts import make_settings
from fixtures.geis import CORPUS_HEADERS, geis_cache, write_wfpc2_context

from crds_events import events as ev
from crds_events.contexts.importcache import ImportCacheError, import_cache
from crds_events.files.geis import geis_data_name
from crds_events.handlers.runner import HandlerRunner
from crds_events.store import SQLiteEventStore
from crds_events.store.filestore import FileStore
from crds_events.store.folds import FILES
from crds_events.store.projections import TableProjection, read_table

pytestmark = pytest.mark.corpus

DATA = [geis_data_name(name) for name in CORPUS_HEADERS]


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _files(store) -> dict[str, dict]:
    projection = TableProjection(FILES)
    HandlerRunner(store, [projection]).run_until_idle()
    return {key[0]: row for key, row in read_table(store, projection).items()}


def test_the_data_file_beside_each_header_is_cataloged_and_released(corpus, tmp_path):
    mappings, references = geis_cache(corpus, tmp_path / "cache")
    settings = make_settings(tmp_path, "hst")
    with SQLiteEventStore(settings.db_path) as store:
        result = import_cache(settings, store, mappings, references, "hst_0001.pmap")
        assert result.data_files == 4 and "+ 4 GEIS data files" in result.summary()
        # the references count is unchanged by the data files: 9 present in hst_0001
        assert result.references == 9
        assert result.cataloged == result.mappings + result.references + result.data_files
        rows = _files(store)
        released = {r.event.name for r in store.read_all(types=[ev.FileReleased.type])}
        stored = FileStore.from_settings(settings)
        for header, data in zip(CORPUS_HEADERS, DATA, strict=True):
            source = (references / data).read_bytes()
            row = rows[data]
            assert (row["kind"], row["instrument"], row["filekind"]) == \
                ("reference", "wfpc2", "atodfile")
            assert (row["sha1"], row["size"]) == (_sha1(source), len(source))
            assert row["state"] == "archived" and row["available"] is True
            assert data in released and header in released
            assert stored.path_for(data).read_bytes() == source

        head = store.head()
        again = import_cache(settings, store, mappings, references, "hst_0001.pmap")
        assert (again.cataloged, again.events, store.head()) == (0, 0, head)


def test_a_header_without_its_data_file_is_imported_and_the_data_counted_absent(
        corpus, tmp_path):
    mappings, references = geis_cache(corpus, tmp_path / "cache")
    (references / DATA[0]).unlink()
    pmap = write_wfpc2_context(mappings)
    settings = make_settings(tmp_path, "hst")
    with SQLiteEventStore(settings.db_path) as store:
        result = import_cache(settings, store, mappings, references, pmap)
        assert (result.references, result.data_files, result.missing_references) == (4, 3, 1)
        rows = _files(store)
    assert CORPUS_HEADERS[0] in rows and DATA[0] not in rows
    assert all(name in rows for name in DATA[1:])


@pytest.mark.parametrize("damage, reason", [
    ("truncated", r"e1b09593u\.r1d: GEIS data file holds 10 bytes but its header "
                  r"e1b09593u\.r1h describes"),
    ("escaping symlink", r"e1b09593u\.r1d: GEIS data file is a symlink leading out"),
    ("empty", r"e1b09593u\.r1d: GEIS data file is empty"),
])
def test_a_bad_data_file_is_refused_and_nothing_is_recorded_or_stored(
        corpus, tmp_path, damage, reason):
    mappings, references = geis_cache(corpus, tmp_path / "cache")
    victim = references / "e1b09593u.r1d"
    if damage == "truncated":
        victim.write_bytes(b"0123456789")
    elif damage == "empty":
        victim.write_bytes(b"")
    else:
        outside = tmp_path / "secret.r1d"
        outside.write_bytes(victim.read_bytes())
        victim.unlink()
        victim.symlink_to(outside)
    pmap = write_wfpc2_context(mappings)
    settings = make_settings(tmp_path, "hst")
    with SQLiteEventStore(settings.db_path) as store:
        with pytest.raises(ImportCacheError, match=reason) as caught:
            import_cache(settings, store, mappings, references, pmap)
        assert str(tmp_path) not in str(caught.value)
        assert store.head() == 0
    stored = FileStore.from_settings(settings)
    assert not any(stored.names(kind) for kind in ("mapping", "reference"))


def test_a_data_file_without_its_header_is_not_cataloged(corpus, tmp_path):
    mappings, references = geis_cache(corpus, tmp_path / "cache")
    (references / "stray9999u.r1d").write_bytes(b"x" * 100)  # no header, named by no rule
    pmap = write_wfpc2_context(mappings)
    settings = make_settings(tmp_path, "hst")
    with SQLiteEventStore(settings.db_path) as store:
        import_cache(settings, store, mappings, references, pmap)
        assert "stray9999u.r1d" not in _files(store)


def test_sigkill_mid_import_then_rerun_catalogs_every_pair(corpus, tmp_path):
    """The import process is SIGKILLed halfway through storing the files; run again, it
    catalogs and releases every header with its data file, once."""
    mappings, references = geis_cache(corpus, tmp_path / "cache")
    pmap = write_wfpc2_context(mappings)
    settings = make_settings(tmp_path, "hst")
    script = textwrap.dedent(f"""
        import os, signal
        from crds_events.config import load_settings
        from crds_events.contexts.importcache import import_cache
        from crds_events.store import SQLiteEventStore
        settings = load_settings({str(settings.root)!r}, {{"observatory": "hst"}}, environ={{}})
        def progress(stage, done, total):
            if stage == "storing" and done == total // 2:
                os.kill(os.getpid(), signal.SIGKILL)
        with SQLiteEventStore(settings.db_path) as store:
            import_cache(settings, store, {str(mappings)!r}, {str(references)!r}, {pmap!r},
                         progress=progress)
    """)
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    with SQLiteEventStore(settings.db_path) as store:
        assert store.head() == 0  # killed before recording anything
        result = import_cache(settings, store, mappings, references, pmap)
        assert (result.references, result.data_files) == (4, 4)
        rows = _files(store)
        released = [r.event.name for r in store.read_all(types=[ev.FileReleased.type])]
    for header, data in zip(CORPUS_HEADERS, DATA, strict=True):
        assert rows[data]["available"] and rows[header]["available"]
        assert rows[data]["sha1"] == _sha1((references / data).read_bytes())
    assert len(released) == len(set(released))
