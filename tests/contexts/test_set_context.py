"""set-context: who may, which pmaps may be latest, the reason's characters, forward and
regression changes, the history and by-date reads, and the Set Context e-mail."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner
from fixtures.contexts import add_people, catalog_unarchived, make_settings, seed_generations

from crds_events import events as ev
from crds_events.cli import cli
from crds_events.contexts.badfiles import mark_bad
from crds_events.contexts.importcache import import_cache
from crds_events.contexts.pointers import (
    ContextError,
    ContextPermissionError,
    build_context,
    context_by_date,
    context_history,
    direction,
    get_context,
    get_pointers,
    is_forward,
    set_context,
    validate_reason,
)
from crds_events.handlers.email import EmailComposer
from crds_events.handlers.runner import HandlerRunner
from crds_events.store import SQLiteEventStore
from crds_events.store.folds import CONTEXT_HISTORY, CONTEXT_POINTERS
from crds_events.store.projections import TableProjection, read_table


def _refused(store, call, *, error=ContextError, match: str):
    head = store.head()
    with pytest.raises(error, match=match):
        call()
    assert store.head() == head, "a refused change must record nothing"


# --- refusals ----------------------------------------------------------------------------


def test_unknown_pmap_is_refused_naming_it(root):
    settings, store, *_ = root
    for kind in ("latest", "edit", "versions", "build"):
        _refused(store, lambda k=kind: set_context(settings, store, k, "jwst_0099.pmap",
                                                   "next", "otto"),
                 match=r"jwst_0099\.pmap: unknown")


@pytest.mark.parametrize("name, message", [
    ("jwst_0002.imap", r"must name a pipeline mapping"),
    ("hst_0002.pmap", r"a hst context, but this server manages jwst"),
    ("../jwst_0002.pmap", r"not a path"),
    ("JWST_0002.pmap", r"not a CRDS mapping name"),
])
def test_bad_pmap_names_are_refused(root, name, message):
    settings, store, *_ = root
    _refused(store, lambda: set_context(settings, store, "edit", name, "x", "otto"),
             match=message)


def test_unarchived_pmap_cannot_be_latest_but_can_be_edit(root):
    settings, store, source, refs = root
    catalog_unarchived(settings, store, source, refs, 3)
    _refused(store, lambda: set_context(settings, store, "latest", "jwst_0003.pmap",
                                        "go", "otto"),
             match=r"jwst_0003\.pmap: not archived yet \(state delivered")
    change = set_context(settings, store, "edit", "jwst_0003.pmap", "review", "otto")
    assert change.changed and get_context(store, "edit") == "jwst_0003.pmap"


def test_latest_with_a_bad_reference_is_refused_naming_the_file_and_its_use(root):
    settings, store, *_ = root
    mark_bad(settings, store, ["jwst_nircam_flat_0002.fits"], "wrong normalisation", "ada")
    _refused(store, lambda: set_context(settings, store, "latest", "jwst_0002.pmap",
                                        "go", "otto"),
             match=r"jwst_nircam_flat_0002\.fits is rejected \(wrong normalisation\) \(used as "
                   r"jwst_0002\.pmap -> jwst_nircam_0002\.imap -> jwst_nircam_flat_0002\.rmap")
    assert get_context(store, "latest") == "jwst_0001.pmap"


def test_a_pmap_written_after_the_marking_still_cannot_name_a_bad_file(tmp_path):
    """Blacklisting covers the mappings known when the file was marked; a later pmap that
    still names it is caught by walking its hierarchy."""
    # no latest yet: MIRI 0001 is in every generation, and mark-bad refuses a file of the
    # operational context
    settings = make_settings(tmp_path)
    store = SQLiteEventStore(settings.db_path)
    add_people(store)
    source, refs = seed_generations(settings, store, tmp_path, archived=2, pointers=("edit",))
    mark_bad(settings, store, ["jwst_miri_flat_0001.fits"], "hot pixels", "ada")
    from fixtures.contexts import write_generation

    write_generation(source, refs, 3)
    import_cache(settings, store, source, refs, "jwst_0003.pmap", ())
    _refused(store, lambda: set_context(settings, store, "latest", "jwst_0003.pmap",
                                        "go", "otto"),
             match=r"jwst_miri_flat_0001\.fits is rejected .*jwst_0003\.pmap -> "
                   r"jwst_miri_0001\.imap")
    store.close()


def test_latest_with_a_blacklisted_mapping_is_refused(root):
    settings, store, *_ = root
    mark_bad(settings, store, ["jwst_nircam_flat_0002.rmap"], "bad rules", "ada")
    _refused(store, lambda: set_context(settings, store, "latest", "jwst_0002.pmap",
                                        "go", "otto"),
             match=r"jwst_0002\.pmap is blacklisted")


@pytest.mark.parametrize("reason, message", [
    ("", r"reason: required"),
    ("   \n ", r"reason: required"),
    ("fix <script>alert(1)</script>", r"character '<' at position 5 is not allowed: < > & are "
                                      r"HTML markup"),
    ("R&D", r"character '&' at position 2"),
    ("ok\x1b[31m red", r"U\+001B .* at position 3 is not allowed: control"),
    ("ok\r\nBcc: x@y", r"U\+000D"),
    ("abc\u202edcba", r"U\+202E \(RIGHT-TO-LEFT OVERRIDE\)"),
    ("zero\u200bwidth", r"U\+200B \(ZERO WIDTH SPACE\)"),
    ("x" * 4001, r"at most 4000"),
])
def test_reasons_with_forbidden_characters_are_refused(root, reason, message):
    settings, store, *_ = root
    _refused(store, lambda: set_context(settings, store, "latest", "jwst_0002.pmap", reason,
                                        "otto"), match=message)


def test_reasons_that_are_fine():
    assert validate_reason("  New flats for NIRCAM;\n\tsee ticket #42 (it's 'urgent')  ") == \
        "New flats for NIRCAM;\n\tsee ticket #42 (it's 'urgent')"
    assert validate_reason("Kalibrierung für Ångström-Daten") == "Kalibrierung für Ångström-Daten"


@pytest.mark.parametrize("user, message", [
    ("sam", r"'sam' \(submitter\) may not set contexts: operators and admins only"),
    ("dora", r"'dora' \(disabled\) may not set contexts"),
    ("nobody", r"user 'nobody': no such user"),
    ("", r"who is setting the context"),
])
def test_only_operators_and_admins_may_set_contexts(root, user, message):
    settings, store, *_ = root
    _refused(store, lambda: set_context(settings, store, "latest", "jwst_0002.pmap", "go",
                                        user), error=ContextPermissionError, match=message)


def test_kind_and_calver_are_checked(root):
    settings, store, *_ = root
    _refused(store, lambda: set_context(settings, store, "operational", "jwst_0002.pmap",
                                        "go", "otto"), match=r"kind 'operational'")
    _refused(store, lambda: set_context(settings, store, "latest", "jwst_0002.pmap", "go",
                                        "otto", calver="1.14.0"),
             match=r"only a build context is set per")
    _refused(store, lambda: set_context(settings, store, "build", "jwst_0002.pmap", "go",
                                        "otto", calver="1 14"), match=r"calver '1 14'")


# --- changes -------------------------------------------------------------------------------


def test_forward_and_regression_are_recorded_with_previous(root):
    settings, store, *_ = root
    forward = set_context(settings, store, "latest", "jwst_0002.pmap", "new nircam flats",
                          "otto")
    assert (forward.previous, forward.direction, forward.forward) == \
        ("jwst_0001.pmap", "forward", True)
    back = set_context(settings, store, "latest", "jwst_0001.pmap", "flats were wrong", "ada")
    assert (back.previous, back.direction, back.forward) == \
        ("jwst_0002.pmap", "regression", False)
    recorded = store.read_all(types=[ev.ContextSet.type])[-2:]
    assert [(r.event.context, r.event.previous, r.event.description, r.actor)
            for r in recorded] == [
        ("jwst_0002.pmap", "jwst_0001.pmap", "new nircam flats", "otto"),
        ("jwst_0001.pmap", "jwst_0002.pmap", "flats were wrong", "ada"),
    ]
    history = context_history(store, kind="latest")
    assert [(h["context"], h["direction"]) for h in history] == [
        ("jwst_0001.pmap", "initial"), ("jwst_0002.pmap", "forward"),
        ("jwst_0001.pmap", "regression")]
    # the projection tables say the same as the reads folded from the log
    projections = [TableProjection(CONTEXT_POINTERS), TableProjection(CONTEXT_HISTORY)]
    HandlerRunner(store, projections).run_until_idle()
    table = read_table(store, projections[1])
    assert [(row["kind"], row["context"], row["previous"]) for _, row in sorted(table.items())] \
        == [(h["kind"], h["context"], h["previous"]) for h in context_history(store)]
    pointers = read_table(store, projections[0])
    assert {k[1]: r["context"] for k, r in pointers.items()} == \
        {k: r["context"] for k, r in get_pointers(store).items()}


def test_setting_the_same_context_records_nothing(root):
    settings, store, *_ = root
    head = store.head()
    change = set_context(settings, store, "latest", "jwst_0001.pmap", "again", "otto")
    assert not change.changed and change.direction == "same" and store.head() == head


def test_is_forward_compares_serials():
    assert is_forward("jwst_0009.pmap", "jwst_0010.pmap")
    assert not is_forward("jwst_0010.pmap", "jwst_0009.pmap")
    assert not is_forward("jwst_0010.pmap", "jwst_0010.pmap")
    assert not is_forward(None, "jwst_0001.pmap")
    assert is_forward("hst.pmap", "hst_0001.pmap")  # no serial counts as -1, as in CRDS
    assert direction(None, "x_0001.pmap") == "initial"


def test_context_by_date(root):
    settings, store, *_ = root
    set_context(settings, store, "latest", "jwst_0002.pmap", "forward", "otto")
    first, second = context_history(store, kind="latest")
    at_second = datetime.fromisoformat(second["recorded_at"].replace("Z", "+00:00"))
    assert context_by_date(store, at_second) == "jwst_0002.pmap"
    assert context_by_date(store, at_second - timedelta(microseconds=1)) == "jwst_0001.pmap"
    assert context_by_date(store, f"jwst-{(at_second + timedelta(seconds=1)).isoformat()}") \
        == "jwst_0002.pmap"
    with pytest.raises(ContextError, match="no latest context was set by then"):
        context_by_date(store, "2001-01-01")
    with pytest.raises(ContextError, match="expected YYYY-MM-DD"):
        context_by_date(store, "yesterday")


def test_build_contexts_per_calibration_version(root):
    settings, store, *_ = root
    set_context(settings, store, "build", "jwst_0001.pmap", "cal 1.13", "otto", calver="1.13.2")
    set_context(settings, store, "build", "jwst_0002.pmap", "cal 1.14", "otto", calver="1.14.0")
    assert build_context(store, "1.14.0") == "jwst_0002.pmap"
    assert build_context(store, "1.13.5") == "jwst_0001.pmap"  # closest earlier patch
    assert build_context(store, "1.13.1") == "jwst_0001.pmap"  # none earlier: latest
    assert build_context(store, "2.0.0") == get_context(store, "latest")
    same = set_context(settings, store, "build", "jwst_0002.pmap", "again", "otto",
                       calver="1.14.0")
    assert not same.changed


# --- e-mail ---------------------------------------------------------------------------------


def test_set_context_email_is_queued_by_the_composer(root):
    settings, store, *_ = root
    runner = HandlerRunner(store, [EmailComposer(settings)])
    runner.run_until_idle()  # history before mail was enabled is not mailed
    set_context(settings, store, "edit", "jwst_0002.pmap", "edit it", "otto")
    change = set_context(settings, store, "latest", "jwst_0002.pmap", "New flats", "otto")
    set_context(settings, store, "build", "jwst_0002.pmap", "cal 1.14", "ada", calver="1.14.0")
    runner.run_until_idle()
    queued = [r.event for r in store.read_all(types=[ev.EmailQueued.type])]
    assert len(queued) == 2, "edit is not announced; latest and build are"
    mail, build = queued
    assert "build = jwst_0002.pmap" in build.subject and "ada@example.org" in build.to
    assert "Calibration software version: 1.14.0" in build.body
    assert mail.kind == "SET CONTEXT" and mail.about == "context:jwst"
    assert "latest = jwst_0002.pmap" in mail.subject
    assert "otto@example.org" in mail.to
    assert "Previous: jwst_0001.pmap" in mail.body and "New flats" in mail.body
    assert change.position is not None


# --- command line ----------------------------------------------------------------------------


def test_cli_set_context_and_contexts(root):
    settings, store, *_ = root
    runner = CliRunner()
    base = ["--root", str(settings.root)]
    result = runner.invoke(cli, ["set-context", "latest", "jwst_0002.pmap", "--reason",
                                 "new flats", "--user", "otto", *base])
    assert result.exit_code == 0, result.output
    assert "latest: jwst_0001.pmap -> jwst_0002.pmap (forward)" in result.output
    head = store.head()
    bad = runner.invoke(cli, ["set-context", "latest", "jwst_0001.pmap", "--reason", "<b>",
                              "--user", "otto", *base])
    assert bad.exit_code == 1 and "reason: character '<'" in bad.output
    denied = runner.invoke(cli, ["set-context", "latest", "jwst_0001.pmap", "--reason", "x",
                                 "--user", "sam", *base])
    assert denied.exit_code == 1 and "operators and admins only" in denied.output
    assert store.head() == head
    listing = runner.invoke(cli, ["contexts", "--json", *base])
    pointers = {row["kind"]: row["context"] for row in json.loads(listing.output)}
    assert pointers == {"latest": "jwst_0002.pmap", "edit": "jwst_0001.pmap"}
    history = runner.invoke(cli, ["contexts", "--history", *base])
    assert history.exit_code == 0
    assert history.output.splitlines()[0].split()[1:3] == ["latest", "jwst_0002.pmap"]
    assert "(forward) by otto: new flats" in history.output
