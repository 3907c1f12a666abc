"""mark-bad and the operational context, as CRDS's server (``check_bad_file``) has it: a file
the operational (latest) context contains - reference or mapping - is refused with CRDS's
explanation and nothing is recorded; a file only newer contexts use is rejected and only
those newer mappings are blacklisted. Raced against set-context, with the operational
context unreadable, and through the CLI."""

from __future__ import annotations

import re
import threading

import pytest
from click.testing import CliRunner
from fixtures.contexts import add_people, make_settings, seed_generations

from crds_events import events as ev
from crds_events.cli import cli
from crds_events.contexts.badfiles import BadFilesError, bad_files, mark_bad
from crds_events.contexts.contents import context_contents
from crds_events.contexts.pointers import ContextError, get_context, set_context
from crds_events.store import SQLiteEventStore
from crds_events.store.filestore import FileStore


def refusal(name: str, pmap: str = "jwst_0001.pmap") -> str:
    """CRDS's message (crds_server ``check_bad_file``), as a regex."""
    return (rf"File '{re.escape(name)}' is in the current operational context "
            rf"'{re.escape(pmap)}'\.  Create a new context which does not contain it and "
            rf"make that context operational\.  Then mark '{re.escape(name)}' as 'bad'\.")


def _root(tmp_path):
    """Generations 1..3 of the small JWST context, archived; latest = edit = jwst_0001."""
    settings = make_settings(tmp_path)
    store = SQLiteEventStore(settings.db_path)
    add_people(store)
    seed_generations(settings, store, tmp_path, archived=3)
    return settings, store


@pytest.fixture
def root(tmp_path):
    settings, store = _root(tmp_path)
    yield settings, store
    store.close()


@pytest.mark.parametrize("name", [
    "jwst_nircam_flat_0001.fits", "jwst_miri_flat_0001.fits", "jwst_miri_flat_0001.rmap",
    "jwst_nircam_0001.imap", "jwst_0001.pmap",
])
def test_a_file_of_the_operational_context_is_refused_as_crds_does(root, name):
    settings, store = root
    head = store.head()
    with pytest.raises(BadFilesError, match=refusal(name)):
        mark_bad(settings, store, [name], "bad", "ada")
    # beside a file that could be marked: all or nothing
    with pytest.raises(BadFilesError, match=refusal(name)):
        mark_bad(settings, store, ["jwst_nircam_flat_0003.fits", name], "bad", "ada")
    assert store.head() == head and bad_files(store) == []


def test_a_reference_only_in_a_newer_context_blacklists_only_the_newer_mappings(root):
    settings, store = root
    result = mark_bad(settings, store, ["jwst_nircam_flat_0002.fits"], "bad flat", "ada")
    assert result.marked == ("jwst_nircam_flat_0002.fits",)
    assert set(result.blacklisted) == {"jwst_nircam_flat_0002.rmap", "jwst_nircam_0002.imap",
                                       "jwst_0002.pmap"}
    operational = context_contents(FileStore.from_settings(settings), "jwst_0001.pmap")
    assert not set(bad_files(store)) & set(operational.names)
    # the bad context can still be the edit context (review), never latest
    set_context(settings, store, "edit", "jwst_0002.pmap", "look at it", "otto")
    with pytest.raises(ContextError, match=r"jwst_0002\.pmap cannot be latest: .*"
                                           r"jwst_nircam_flat_0002\.fits is rejected"):
        set_context(settings, store, "latest", "jwst_0002.pmap", "go", "otto")
    assert get_context(store, "latest") == "jwst_0001.pmap"


def test_crds_advice_followed_new_operational_context_then_mark_bad(root):
    """Create a context without the file, make it operational, then mark the file bad."""
    settings, store = root
    with pytest.raises(BadFilesError, match=refusal("jwst_nircam_flat_0001.fits")):
        mark_bad(settings, store, ["jwst_nircam_flat_0001.fits"], "bad", "ada")
    set_context(settings, store, "latest", "jwst_0003.pmap", "new flats", "otto")
    result = mark_bad(settings, store, ["jwst_nircam_flat_0001.fits"], "bad", "ada")
    assert result.marked == ("jwst_nircam_flat_0001.fits",)
    assert set(result.blacklisted) == {"jwst_nircam_flat_0001.rmap", "jwst_nircam_0001.imap",
                                       "jwst_0001.pmap"}
    # MIRI 0001 is still in the (new) operational context, and the message names that one
    with pytest.raises(BadFilesError, match=refusal("jwst_miri_flat_0001.fits",
                                                    "jwst_0003.pmap")):
        mark_bad(settings, store, ["jwst_miri_flat_0001.fits"], "bad", "ada")
    # and the old context cannot come back as latest
    with pytest.raises(ContextError, match=r"jwst_0001\.pmap cannot be latest: .*"
                                           r"jwst_nircam_flat_0001\.fits is rejected"):
        set_context(settings, store, "latest", "jwst_0001.pmap", "back", "otto")


def test_an_unreadable_operational_context_refuses_without_a_server_path(root):
    settings, store = root
    files = FileStore.from_settings(settings)
    files.path_for("jwst_nircam_0001.imap", "mapping").unlink()
    head = store.head()
    with pytest.raises(BadFilesError, match=r"operational context jwst_0001\.pmap") as caught:
        mark_bad(settings, store, ["jwst_nircam_flat_0003.fits"], "bad", "ada")
    assert str(settings.root) not in str(caught.value)
    assert "jwst_nircam_flat_0003.fits" in str(caught.value)
    assert store.head() == head


def test_set_latest_and_mark_bad_at_once_never_both(tmp_path):
    """set-context latest -> jwst_0003 and mark-bad of a file jwst_0003 contains, started
    together on two connections: whichever commits first wins and the other is refused -
    never an operational context holding a bad file."""
    for attempt in range(4):
        settings, seeded = _root(tmp_path / f"round{attempt}")
        seeded.close()
        barrier = threading.Barrier(2)
        outcomes: dict[str, object] = {}

        def run(label, call, settings=settings, barrier=barrier, outcomes=outcomes):
            with SQLiteEventStore(settings.db_path) as store:
                barrier.wait()
                try:
                    outcomes[label] = call(store)
                except (ContextError, BadFilesError) as exc:
                    outcomes[label] = exc

        threads = [
            threading.Thread(target=run, args=("set", lambda s, st=settings: set_context(
                st, s, "latest", "jwst_0003.pmap", "go", "otto"))),
            threading.Thread(target=run, args=("mark", lambda s, st=settings: mark_bad(
                st, s, ["jwst_nircam_flat_0003.fits"], "bad", "ada"))),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        failed = sorted(label for label, value in outcomes.items()
                        if isinstance(value, Exception))
        assert len(outcomes) == 2 and len(failed) == 1, outcomes
        with SQLiteEventStore(settings.db_path) as store:
            latest = get_context(store, "latest")
            marked = [r.event.name for r in store.read_all(types=[ev.FileMarkedBad.type])]
        if failed == ["mark"]:
            assert latest == "jwst_0003.pmap" and marked == []
            assert re.search(refusal("jwst_nircam_flat_0003.fits", "jwst_0003.pmap"),
                             str(outcomes["mark"]))
        else:
            assert latest == "jwst_0001.pmap" and marked == ["jwst_nircam_flat_0003.fits"]


def test_cli_refuses_a_file_of_the_operational_context(root):
    settings, store = root
    head = store.head()
    result = CliRunner().invoke(cli, ["mark-bad", "jwst_miri_flat_0001.rmap", "--reason",
                                      "bad rules", "--user", "ada", "--root",
                                      str(settings.root)])
    assert result.exit_code == 1
    assert re.search(refusal("jwst_miri_flat_0001.rmap"), result.output), result.output
    assert "Traceback" not in result.output
    assert store.head() == head
