"""mark-bad / mark-ok: rejected files, transitive blacklisting of the mappings that use them
(checked against a brute-force scan of the mapping texts), on the corpus HST contexts and on
a small generated JWST context; the files projection and the bad-files list follow."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from fixtures.contexts import (
    add_people,
    brute_force_users,
    catalog_unarchived,
    make_settings,
    seed_generations,
)

from crds_events import events as ev
from crds_events.cli import cli
from crds_events.contexts.badfiles import (
    BadFilesError,
    BadFilesPermissionError,
    bad_files,
    mark_bad,
    mark_ok,
)
from crds_events.contexts.contents import file_rows
from crds_events.contexts.importcache import import_cache
from crds_events.contexts.pointers import ContextError, set_context
from crds_events.handlers.runner import HandlerRunner
from crds_events.store import SQLiteEventStore
from crds_events.store.filestore import FileStore
from crds_events.store.folds import FILES
from crds_events.store.projections import TableProjection, read_table, rebuild


def _flags(store) -> dict[str, tuple[bool, bool]]:
    return {name: (row["rejected"], row["blacklisted"]) for name, row in file_rows(store).items()
            if row["rejected"] or row["blacklisted"]}


def _projection_matches_log(store) -> None:
    projection = TableProjection(FILES)
    HandlerRunner(store, [projection]).run_until_idle()
    table = {key[0]: (row["rejected"], row["blacklisted"])
             for key, row in read_table(store, projection).items()
             if row["rejected"] or row["blacklisted"]}
    assert table == _flags(store)


# --- a small generated context ----------------------------------------------------------------


@pytest.fixture
def small(tmp_path):
    settings = make_settings(tmp_path)
    store = SQLiteEventStore(settings.db_path)
    add_people(store)
    source, refs = seed_generations(settings, store, tmp_path, archived=3)
    yield settings, store, FileStore.from_settings(settings).mappings_dir
    store.close()


@pytest.fixture
def no_latest(tmp_path):
    """The small context with no operational (latest) context yet, only edit: then nothing
    is operational, and even MIRI 0001 (named by every generation) may be marked bad."""
    settings = make_settings(tmp_path)
    store = SQLiteEventStore(settings.db_path)
    add_people(store)
    seed_generations(settings, store, tmp_path, archived=3, pointers=("edit",))
    yield settings, store, FileStore.from_settings(settings).mappings_dir
    store.close()


def test_reference_rejected_and_its_users_blacklisted_transitively(small):
    settings, store, mappings = small
    target = "jwst_nircam_flat_0002.fits"
    expected = brute_force_users(mappings, target)
    assert expected == {"jwst_nircam_flat_0002.rmap", "jwst_nircam_0002.imap", "jwst_0002.pmap"}
    result = mark_bad(settings, store, [target], "wrong normalisation", "ada")
    assert result.marked == (target,) and set(result.blacklisted) == expected
    flags = _flags(store)
    assert flags == {target: (True, False), **{m: (False, True) for m in expected}}
    assert file_rows(store)[target]["reject_reason"] == "wrong normalisation"
    assert bad_files(store) == sorted([target, *expected])
    _projection_matches_log(store)


def test_shared_file_blacklists_every_generation(no_latest):
    settings, store, mappings = no_latest
    target = "jwst_miri_flat_0001.rmap"  # every generation keeps MIRI at 0001
    expected = brute_force_users(mappings, target)
    assert {"jwst_0001.pmap", "jwst_0002.pmap", "jwst_0003.pmap",
            "jwst_miri_0001.imap"} == expected
    result = mark_bad(settings, store, [target], "bad rules", "ada")
    assert set(result.blacklisted) == expected
    assert _flags(store)[target] == (True, False)


def test_mark_ok_unblacklists_only_what_no_other_bad_file_reaches(no_latest):
    settings, store, mappings = no_latest
    mark_bad(settings, store, ["jwst_nircam_flat_0002.fits"], "flat 2 bad", "ada")
    mark_bad(settings, store, ["jwst_miri_flat_0001.fits"], "miri bad", "ada")
    # jwst_0002.pmap is reached by both; only the miri users stay after the nircam OK
    result = mark_ok(settings, store, ["jwst_nircam_flat_0002.fits"], "ada", "re-measured")
    still = brute_force_users(mappings, "jwst_miri_flat_0001.fits")
    assert set(result.unblacklisted) == (
        brute_force_users(mappings, "jwst_nircam_flat_0002.fits") - still)
    assert "jwst_0002.pmap" in still and "jwst_0002.pmap" not in result.unblacklisted
    assert _flags(store) == {"jwst_miri_flat_0001.fits": (True, False),
                             **{m: (False, True) for m in still}}
    # a blacklisted mapping cannot be cleared by itself: the message names the cause
    head = store.head()
    with pytest.raises(BadFilesError, match=r"jwst_0002\.pmap: blacklisted because it uses "
                                            r"jwst_miri_flat_0001\.fits"):
        mark_ok(settings, store, ["jwst_0002.pmap"], "ada")
    assert store.head() == head
    mark_ok(settings, store, ["jwst_miri_flat_0001.fits"], "ada")
    assert _flags(store) == {} and bad_files(store) == []
    _projection_matches_log(store)
    # and a rebuild from the log gives the same table
    rebuild(store, [TableProjection(FILES)])
    _projection_matches_log(store)


def test_marking_again_or_ok_twice_records_nothing(small):
    settings, store, _ = small
    mark_bad(settings, store, ["jwst_nircam_flat_0003.fits"], "bad", "ada")
    head = store.head()
    again = mark_bad(settings, store, ["jwst_nircam_flat_0003.fits"], "bad", "ada")
    assert again.marked == () and again.unchanged == ("jwst_nircam_flat_0003.fits",)
    ok = mark_ok(settings, store, ["jwst_nircam_flat_0002.fits"], "ada")
    assert ok.marked == () and ok.unchanged == ("jwst_nircam_flat_0002.fits",)
    assert store.head() == head


@pytest.mark.parametrize("files, user, error, message", [
    (["jwst_nircam_flat_0001.fits"], "otto", BadFilesPermissionError,
     r"'otto' \(operator\) may not mark files: admins only"),
    (["jwst_nircam_flat_0001.fits"], "nobody", BadFilesPermissionError, r"no such user"),
    (["jwst_nircam_flat_0001.fits", "nope.fits"], "ada", BadFilesError,
     r"nope\.fits: unknown file"),
    (["../etc/passwd"], "ada", BadFilesError, r"not a path"),
    ([], "ada", BadFilesError, r"name at least one file"),
])
def test_refusals_record_nothing(small, files, user, error, message):
    settings, store, _ = small
    head = store.head()
    with pytest.raises(error, match=message):
        mark_bad(settings, store, files, "bad", user)
    assert store.head() == head


def test_reason_is_required_and_checked(small):
    settings, store, _ = small
    head = store.head()
    with pytest.raises(BadFilesError, match="reason: required"):
        mark_bad(settings, store, ["jwst_nircam_flat_0001.fits"], " ", "ada")
    with pytest.raises(BadFilesError, match="character '>'"):
        mark_bad(settings, store, ["jwst_nircam_flat_0001.fits"], "a > b", "ada")
    assert store.head() == head


def test_delivered_files_can_be_marked(small, tmp_path):
    settings, store, _ = small
    names = catalog_unarchived(settings, store, tmp_path / "source", tmp_path / "refs", 4)
    result = mark_bad(settings, store, ["jwst_nircam_flat_0004.fits"], "bad", "ada")
    assert set(result.blacklisted) == {n for n in names if not n.endswith(".fits")}


def test_cli_mark_bad_ok_and_list(small):
    settings, store, _ = small
    runner = CliRunner()
    base = ["--root", str(settings.root)]
    result = runner.invoke(cli, ["mark-bad", "jwst_nircam_flat_0003.fits", "--reason",
                                 "ghosts", "--user", "ada", *base])
    assert result.exit_code == 0, result.output
    assert "jwst_nircam_flat_0003.fits: marked bad" in result.output
    assert "jwst_0003.pmap: blacklisted" in result.output
    listing = runner.invoke(cli, ["bad-files", "--json", *base])
    rows = {row["name"]: row for row in json.loads(listing.output)}
    assert set(rows) == set(bad_files(store))
    assert rows["jwst_nircam_flat_0003.fits"]["reason"] == "ghosts"
    denied = runner.invoke(cli, ["mark-bad", "jwst_0001.pmap", "--reason", "x", "--user",
                                 "sam", *base])
    assert denied.exit_code == 1 and "admins only" in denied.output
    cleared = runner.invoke(cli, ["mark-ok", "jwst_nircam_flat_0003.fits", "--user", "ada",
                                  *base])
    assert cleared.exit_code == 0 and "jwst_0003.pmap: no longer blacklisted" in cleared.output
    assert runner.invoke(cli, ["bad-files", *base]).output.strip() == "0 bad file(s)"


# --- the corpus HST contexts -----------------------------------------------------------------


@pytest.mark.corpus
def test_transitive_blacklisting_on_the_corpus_hst_context(corpus, tmp_path):
    mappings = corpus / "contexts" / "hst" / "mappings"
    references = corpus / "contexts" / "hst" / "references"
    settings = make_settings(tmp_path, "hst")
    with SQLiteEventStore(settings.db_path) as store:
        add_people(store)
        # hst_0001 is not made operational: CRDS refuses to mark bad a file it contains
        import_cache(settings, store, mappings, references, "hst_0001.pmap", ("edit",))
        import_cache(settings, store, mappings, references, "hst_0002.pmap", ())
        rows = file_rows(store)
        # every cataloged reference: blacklisting equals the brute-force text scan
        stored = FileStore.from_settings(settings).mappings_dir
        names = ["hst_acs_biasfile_0001.fits", "j4d1435jj_bpx.fits", "dbu1405fu.r1h"]
        mark_bad(settings, store, names, "corpus test", "ada")
        marked = {r.event.name: set(r.event.blacklisted)
                  for r in store.read_all(types=[ev.FileMarkedBad.type])}
        assert set(marked) == set(names)
        for name in names:
            expected = brute_force_users(stored, name) & set(rows)
            assert expected and marked[name] == expected, name
        # bias 0001 is used by hst_0001 only; the others by both pmaps
        assert "hst_acs_biasfile_0001.rmap" in bad_files(store)
        assert {"hst_0001.pmap", "hst_0002.pmap"} <= set(bad_files(store))
        with pytest.raises(ContextError, match=r"hst_0002\.pmap cannot be latest: .*"
                                               r"j4d1435jj_bpx\.fits is rejected"):
            set_context(settings, store, "latest", "hst_0002.pmap", "go", "otto")
        mark_ok(settings, store, ["j4d1435jj_bpx.fits", "dbu1405fu.r1h"], "ada")
        # hst_0002 no longer uses a bad file; hst_0001 still uses bias 0001
        assert "hst_0002.pmap" not in bad_files(store)
        assert "hst_0001.pmap" in bad_files(store)
        change = set_context(settings, store, "latest", "hst_0002.pmap", "bias fix", "otto")
        assert change.direction == "initial"  # no operational context before it
        assert [r.event.name for r in store.read_all(types=[ev.FileMarkedOk.type])] == \
            ["j4d1435jj_bpx.fits", "dbu1405fu.r1h"]
        _projection_matches_log(store)


def test_catalog_read_from_table_plus_tail_equals_the_whole_fold(small):
    """file_rows starts from the files projection and folds what it has not seen yet."""
    from crds_events.store.folds import replay

    settings, store, _ = small

    def whole_fold():
        records = store.read_all(types=FILES.consumes)
        return {key[0]: row for key, row in replay(FILES, records).items()}

    assert file_rows(store) == whole_fold()  # no table yet
    HandlerRunner(store, [TableProjection(FILES)]).run_until_idle()
    mark_bad(settings, store, ["jwst_nircam_flat_0002.fits"], "tail", "ada")  # after the table
    rows = file_rows(store)
    assert rows == whole_fold()
    assert rows["jwst_0002.pmap"]["blacklisted"]
