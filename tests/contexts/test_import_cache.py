"""import-cache: a CRDS cache becomes archived history (file store + FileCataloged/FileReleased
+ ContextSet), idempotently; checked on the corpus and on a tiny context made here."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from crds_events.cli import cli
from crds_events.config import load_settings
from crds_events.contexts.importcache import ImportCacheError, import_cache
from crds_events.handlers.runner import HandlerRunner
from crds_events.rules.checksum import with_checksum
from crds_events.store import SQLiteEventStore
from crds_events.store.filestore import FileStore
from crds_events.store.folds import CONTEXT_HISTORY, CONTEXT_POINTERS, FILES
from crds_events.store.projections import TableProjection, read_table
from crds_events.store.root import init_root


def _settings(tmp_path: Path, observatory: str):
    settings = load_settings(tmp_path / "root", {"observatory": observatory}, environ={})
    init_root(settings)
    return settings


def _tables(store) -> dict[str, dict]:
    projections = [TableProjection(f) for f in (FILES, CONTEXT_POINTERS, CONTEXT_HISTORY)]
    HandlerRunner(store, projections).run_until_idle()
    return {p.fold.table: read_table(store, p) for p in projections}


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


# --- the corpus ------------------------------------------------------------------------------

# hst_0002 differs from hst_0001 by these files only (corpus README)
ONLY_0002 = {"hst_0002.pmap", "hst_acs_0002.imap", "hst_acs_biasfile_0002.rmap",
             "hst_acs_biasfile_0002.fits"}
ONLY_0001 = {"hst_acs_biasfile_0001.fits"}


def _rmap_header(text: str, key: str) -> str:
    return re.search(rf"'{key}' : '([^']*)'", text).group(1).lower()


def _who_names(mappings: Path) -> dict[str, tuple[str, str]]:
    """reference name -> (instrument, filekind), from the rmap texts themselves."""
    owners = {}
    for rmap in sorted(mappings.glob("*.rmap")):
        text = rmap.read_text()
        for name in re.findall(r"'([^']+\.(?:fits|r\dh))'", text):
            owners.setdefault(name, (_rmap_header(text, "instrument"),
                                     _rmap_header(text, "filekind")))
    return owners


@pytest.mark.corpus
def test_import_corpus_hst_contexts(corpus, tmp_path):
    mappings = corpus / "contexts" / "hst" / "mappings"
    references = corpus / "contexts" / "hst" / "references"
    settings = _settings(tmp_path, "hst")
    all_mappings = {p.name for p in mappings.iterdir()}
    all_references = {p.name for p in references.iterdir()}
    assert len(all_mappings) == 119
    with SQLiteEventStore(settings.db_path) as store:
        result = import_cache(settings, store, mappings, references, "hst_0001.pmap")
        assert result.mappings == 116 and result.references == len(all_references - ONLY_0002)
        assert result.cataloged == result.mappings + result.references
        assert sorted(result.pointers_set) == ["edit=hst_0001.pmap", "latest=hst_0001.pmap"]
        head = store.head()
        assert head == result.events == 2 * result.cataloged + 2

        again = import_cache(settings, store, mappings, references, "hst_0001.pmap")
        assert (again.cataloged, again.events, again.pointers_set) == (0, 0, [])
        assert store.head() == head  # nothing added

        second = import_cache(settings, store, mappings, references, "hst_0002.pmap",
                              set_pointers=("edit",))
        assert second.cataloged == len(ONLY_0002)
        tables = _tables(store)

    files = tables["files"]
    expected = (all_mappings | all_references)
    assert {key[0] for key in files} == expected
    owners = _who_names(mappings)
    store_files = FileStore(settings)
    for (name,), row in files.items():
        source = (mappings if name in all_mappings else references) / name
        assert row["state"] == "archived" and row["available"] is True
        assert row["sha1"] == _sha1(source) and row["size"] == source.stat().st_size
        assert row["observatory"] == "hst"
        assert store_files.path_for(name).read_bytes() == source.read_bytes()
        if name in all_references:
            assert row["kind"] == "reference"
            assert (row["instrument"], row["filekind"]) == owners[name]
        else:
            assert row["kind"] == "mapping"
            if name.endswith(".rmap"):
                text = source.read_text()
                assert row["instrument"] == _rmap_header(text, "instrument")
                assert row["filekind"] == _rmap_header(text, "filekind")
    pointers = tables["context_pointers"]
    assert pointers[("hst", "latest")]["context"] == "hst_0001.pmap"
    assert pointers[("hst", "edit")]["context"] == "hst_0002.pmap"
    history = sorted(tables["context_history"].values(), key=lambda row: row["position"])
    assert [(h["kind"], h["context"], h["previous"]) for h in history] == [
        ("latest", "hst_0001.pmap", None), ("edit", "hst_0001.pmap", None),
        ("edit", "hst_0002.pmap", "hst_0001.pmap"),
    ]


@pytest.mark.corpus
def test_corpus_jwst_context_and_the_wrong_observatory(corpus, tmp_path):
    jwst = corpus / "contexts" / "jwst"
    settings = _settings(tmp_path, "jwst")
    with SQLiteEventStore(settings.db_path) as store:  # the right observatory: imported
        result = import_cache(settings, store, jwst / "mappings", jwst / "references",
                              "jwst_0001.pmap")
        # every mapping of the directory is in the context; FGS maps flat to N/A
        assert result.mappings == len(list((jwst / "mappings").iterdir())) == 5
        assert result.references == 1 and store.head() == 2 * 6 + 2
    settings = _settings(tmp_path / "h", "hst")
    with SQLiteEventStore(settings.db_path) as store:
        with pytest.raises(ImportCacheError, match="this server manages 'hst'"):
            import_cache(settings, store, corpus / "contexts" / "jwst" / "mappings", None,
                         "jwst_0001.pmap")
        assert store.head() == 0


# --- a tiny context made here ------------------------------------------------------------------

PMAP = """header = {
    'derived_from' : 'made in the test',
    'mapping' : 'PIPELINE',
    'name' : 'jwst_0100.pmap',
    'observatory' : 'JWST',
    'parkey' : ('META.INSTRUMENT.NAME',),
    'sha1sum' : 'x',
}

selector = {
    'FGS' : 'N/A',
    'MIRI' : 'jwst_miri_0100.imap',
}
"""

IMAP = """header = {
    'derived_from' : 'made in the test',
    'instrument' : 'MIRI',
    'mapping' : 'INSTRUMENT',
    'name' : 'jwst_miri_0100.imap',
    'observatory' : 'JWST',
    'parkey' : ('REFTYPE',),
    'sha1sum' : 'x',
}

selector = {
    'dark' : 'jwst_miri_dark_0100.rmap',
    'flat' : 'N/A',
}
"""

RMAP = """header = {
    'classes' : ('Match', 'UseAfter'),
    'derived_from' : 'made in the test',
    'filekind' : 'DARK',
    'instrument' : 'MIRI',
    'mapping' : 'REFERENCE',
    'name' : 'jwst_miri_dark_0100.rmap',
    'observatory' : 'JWST',
    'parkey' : (('META.INSTRUMENT.DETECTOR',), ('META.OBSERVATION.DATE', 'META.OBSERVATION.TIME')),
    'sha1sum' : 'x',
}

selector = Match({
    ('MIRIMAGE',) : UseAfter({
        '2020-01-01 00:00:00' : 'jwst_miri_dark_0001.fits',
        '2022-01-01 00:00:00' : 'jwst_miri_dark_0002.fits',
    }),
})
"""


@pytest.fixture
def tiny(tmp_path) -> tuple[Path, Path]:
    mappings, references = tmp_path / "cache" / "mappings", tmp_path / "cache" / "references"
    mappings.mkdir(parents=True)
    references.mkdir(parents=True)
    for name, text in (("jwst_0100.pmap", PMAP), ("jwst_miri_0100.imap", IMAP),
                       ("jwst_miri_dark_0100.rmap", RMAP)):
        (mappings / name).write_text(with_checksum(text, name))
    (references / "jwst_miri_dark_0001.fits").write_bytes(b"dark one" * 100)
    return mappings, references  # jwst_miri_dark_0002.fits is absent


def test_import_tiny_context(tiny, tmp_path):
    mappings, references = tiny
    settings = _settings(tmp_path, "jwst")
    stages = []
    with SQLiteEventStore(settings.db_path) as store:
        result = import_cache(settings, store, mappings, references, "jwst_0100.pmap",
                              set_pointers=("latest", "edit", "latest"), actor="ada",
                              progress=lambda stage, done, total: stages.append(stage))
        assert (result.mappings, result.references, result.missing_references) == (3, 1, 1)
        assert "1 named but absent" in result.summary()
        assert {"loading", "storing", "recording"} <= set(stages)
        records = store.read_all()
        assert {r.actor for r in records} == {"ada"}
        assert [r.type for r in records].count("ContextSet") == 2
        tables = _tables(store)
    files = tables["files"]
    assert set(files) == {("jwst_0100.pmap",), ("jwst_miri_0100.imap",),
                          ("jwst_miri_dark_0100.rmap",), ("jwst_miri_dark_0001.fits",)}
    ref = files[("jwst_miri_dark_0001.fits",)]
    assert (ref["kind"], ref["instrument"], ref["filekind"], ref["state"]) == (
        "reference", "miri", "dark", "archived")
    assert ref["sha1"] == hashlib.sha1(b"dark one" * 100).hexdigest() and ref["size"] == 800
    imap = files[("jwst_miri_0100.imap",)]
    assert (imap["kind"], imap["instrument"]) == ("mapping", "miri")
    assert FileStore(settings).path_for("jwst_miri_dark_0100.rmap").read_text() == \
        (mappings / "jwst_miri_dark_0100.rmap").read_text()
    assert tables["context_pointers"][("jwst", "latest")]["context"] == "jwst_0100.pmap"


def test_import_without_references_dir(tiny, tmp_path):
    mappings, _ = tiny
    settings = _settings(tmp_path, "jwst")
    with SQLiteEventStore(settings.db_path) as store:
        result = import_cache(settings, store, mappings, None, "jwst_0100.pmap", set_pointers=())
        assert (result.mappings, result.references, result.pointers_set) == (3, 0, [])
        assert not [r for r in store.read_all() if r.type == "ContextSet"]


def test_bad_checksum_is_refused_naming_the_file_and_records_nothing(tiny, tmp_path):
    mappings, references = tiny
    rmap = mappings / "jwst_miri_dark_0100.rmap"
    rmap.write_text(rmap.read_text().replace("MIRIMAGE", "MIRIFULONG"))
    settings = _settings(tmp_path, "jwst")
    with SQLiteEventStore(settings.db_path) as store:
        with pytest.raises(ImportCacheError, match=r"sha1sum mismatch in 'jwst_miri_dark_0100\.rmap'"):
            import_cache(settings, store, mappings, references, "jwst_0100.pmap")
        assert store.head() == 0
    assert not FileStore(settings).names("mapping")


def test_missing_child_and_bad_arguments(tiny, tmp_path):
    mappings, references = tiny
    settings = _settings(tmp_path, "jwst")
    (mappings / "jwst_miri_0100.imap").unlink()
    with SQLiteEventStore(settings.db_path) as store:
        with pytest.raises(ImportCacheError, match=r"jwst_miri_0100\.imap.* not found"):
            import_cache(settings, store, mappings, references, "jwst_0100.pmap")
        with pytest.raises(ImportCacheError, match="must name a .pmap"):
            import_cache(settings, store, mappings, references, "jwst_miri_dark_0100.rmap")
        with pytest.raises(ImportCacheError, match="plain name"):
            import_cache(settings, store, mappings, references, "../jwst_0100.pmap")
        with pytest.raises(ImportCacheError, match="--set 'operational'"):
            import_cache(settings, store, mappings, references, "jwst_0100.pmap",
                         set_pointers=("operational",))
        with pytest.raises(ImportCacheError, match="not a directory"):
            import_cache(settings, store, tmp_path / "nowhere", None, "jwst_0100.pmap")
        assert store.head() == 0


def test_changed_file_under_a_cataloged_name_is_refused(tiny, tmp_path):
    mappings, references = tiny
    settings = _settings(tmp_path, "jwst")
    with SQLiteEventStore(settings.db_path) as store:
        import_cache(settings, store, mappings, references, "jwst_0100.pmap")
        head = store.head()
        (references / "jwst_miri_dark_0001.fits").write_bytes(b"different bytes")
        with pytest.raises(ImportCacheError, match="already stored with different content"):
            import_cache(settings, store, mappings, references, "jwst_0100.pmap")
        assert store.head() == head
    assert FileStore(settings).path_for("jwst_miri_dark_0001.fits").read_bytes() == b"dark one" * 100


def test_cli_import_cache(tiny, tmp_path):
    mappings, references = tiny
    settings = _settings(tmp_path, "jwst")
    runner = CliRunner()
    args = ["import-cache", "--mappings", str(mappings), "--references", str(references),
            "--context", "jwst_0100.pmap", "--set", "latest", "--root", str(settings.root)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "jwst_0100.pmap: 3 mappings, 1 references" in result.output
    assert "4 newly cataloged" in result.output and "latest=jwst_0100.pmap" in result.output
    result = runner.invoke(cli, args)
    assert result.exit_code == 0 and "0 newly cataloged, 0 events" in result.output
    result = runner.invoke(cli, [*args[:-4], "--set", "bogus", "--root", str(settings.root)])
    assert result.exit_code == 1 and "--set 'bogus'" in result.output
