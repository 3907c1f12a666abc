"""Remote contexts: registered pipelines push what they hold (with the key the server
issued); commanded (latest) vs actual per pipeline name."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from fixtures.contexts import catalog_unarchived

from crds_events import events as ev
from crds_events.cli import cli
from crds_events.contexts.pipelines import add_pipeline
from crds_events.contexts.pointers import set_context
from crds_events.contexts.remote import (
    RemoteContextError,
    push_remote_context,
    remote_context,
    remote_contexts,
)
from crds_events.handlers.runner import HandlerRunner
from crds_events.store.folds import REMOTE_CONTEXTS
from crds_events.store.projections import TableProjection, read_table


@pytest.fixture
def keys(root):
    """The keys of the two registered pipelines ``pipeline`` and ``shared-cache.1``."""
    _, store, *_ = root
    return {name: add_pipeline(store, name, actor="otto").key
            for name in ("pipeline", "shared-cache.1")}


def _pushes(store) -> list[tuple[str, str]]:
    return [(r.event.pipeline, r.event.context)
            for r in store.read_all(types=[ev.RemoteContextPushed.type])]


def test_commanded_vs_actual(root, keys):
    settings, store, *_ = root
    row = push_remote_context(settings, store, keys["pipeline"], "jwst_0001.pmap", "ops")
    assert row["recorded"] and row["actual"] == row["commanded"] == "jwst_0001.pmap"
    assert row["pipeline"] == "pipeline"
    push_remote_context(settings, store, keys["shared-cache.1"], "jwst_0001.pmap")
    set_context(settings, store, "latest", "jwst_0002.pmap", "forward", "otto")
    rows = {r["pipeline"]: r for r in remote_contexts(store, "jwst")}
    assert {k: (r["actual"], r["commanded"], r["in_sync"]) for k, r in rows.items()} == {
        "pipeline": ("jwst_0001.pmap", "jwst_0002.pmap", False),
        "shared-cache.1": ("jwst_0001.pmap", "jwst_0002.pmap", False),
    }
    push_remote_context(settings, store, keys["pipeline"], "jwst_0002.pmap")
    assert remote_context(store, "pipeline", "jwst")["in_sync"]
    assert not remote_context(store, "shared-cache.1", "jwst")["in_sync"]
    last = store.read_all(types=[ev.RemoteContextPushed.type])[-1]
    assert (last.event.observatory, last.event.pipeline, last.event.context, last.actor) == \
        ("jwst", "pipeline", "jwst_0002.pmap", "pipeline")
    assert remote_context(store, "pipeline", "jwst")["pushed_at"] == last.recorded_at
    # the projection table agrees with the read folded from the log
    projection = TableProjection(REMOTE_CONTEXTS)
    HandlerRunner(store, [projection]).run_until_idle()
    table = read_table(store, projection)
    assert {k[1]: r["context"] for k, r in table.items()} == \
        {r["pipeline"]: r["actual"] for r in remote_contexts(store, "jwst")}
    # and the reads that start from the table see the same rows
    assert remote_context(store, "pipeline", "jwst")["actual"] == "jwst_0002.pmap"
    # the key itself is recorded nowhere in the log
    assert not any(keys["pipeline"] in repr(r) for r in store.read_all())


def test_a_repeated_push_is_recorded_only_after_a_new_command(root, keys):
    settings, store, *_ = root
    key = keys["pipeline"]
    push_remote_context(settings, store, key, "jwst_0002.pmap")
    again = push_remote_context(settings, store, key, "jwst_0002.pmap")
    assert not again["recorded"] and len(_pushes(store)) == 1
    # latest changes to what the pipeline already holds: its next push answers that command
    set_context(settings, store, "latest", "jwst_0002.pmap", "forward", "otto")
    answer = push_remote_context(settings, store, key, "jwst_0002.pmap")
    assert answer["recorded"] and answer["in_sync"] and len(_pushes(store)) == 2
    # a regression by the pipeline is recorded too
    push_remote_context(settings, store, key, "jwst_0001.pmap")
    assert _pushes(store)[-1] == ("pipeline", "jwst_0001.pmap")


@pytest.mark.parametrize("key, context, message", [
    ("", "jwst_0001.pmap", r"key '': 1-128 characters"),
    ("pipe line", "jwst_0001.pmap", r"key 'pipe line'"),
    ("a/b", "jwst_0001.pmap", r"key 'a/b'"),
    ("k" * 129, "jwst_0001.pmap", r"1-128 characters"),
    ("pipeline", "jwst_0001.pmap", r"key: not the key of a registered pipeline"),
    ("REGISTERED", "jwst_0099.pmap", r"jwst_0099\.pmap: unknown"),
    ("REGISTERED", "hst_0001.pmap", r"a hst context, but this server manages jwst"),
    ("REGISTERED", "jwst_nircam_0001.imap", r"must name a pipeline mapping"),
    ("REGISTERED", None, r"must be a non-empty string"),
])
def test_bad_pushes_are_refused(root, keys, key, context, message):
    settings, store, *_ = root
    key = keys["pipeline"] if key == "REGISTERED" else key
    head = store.head()
    with pytest.raises(RemoteContextError, match=message):
        push_remote_context(settings, store, key, context)
    assert store.head() == head


def test_a_delivered_context_may_be_pushed(root, keys):
    """A pipeline may run what it synced before the archive finished (known, not archived)."""
    settings, store, source, refs = root
    catalog_unarchived(settings, store, source, refs, 3)
    assert push_remote_context(settings, store, keys["pipeline"], "jwst_0003.pmap")["recorded"]


def test_cli_remote_context(root, keys):
    settings, store, *_ = root
    runner = CliRunner()
    base = ["--root", str(settings.root)]
    empty = runner.invoke(cli, ["remote-context", *base])
    assert empty.exit_code == 0 and "no pipeline has pushed" in empty.output
    pushed = runner.invoke(cli, ["remote-context", *base, "push", keys["pipeline"],
                                 "jwst_0002.pmap"])
    assert pushed.exit_code == 0, pushed.output
    assert "pipeline: jwst_0002.pmap (recorded); commanded jwst_0001.pmap" in pushed.output
    listing = runner.invoke(cli, ["remote-context", *base])
    [line] = listing.output.splitlines()
    assert line.split()[:6] == ["pipeline", "actual", "jwst_0002.pmap", "commanded",
                                "jwst_0001.pmap", "BEHIND/DIFFERENT"]
    bad = runner.invoke(cli, ["remote-context", "push", "pipe line", "jwst_0002.pmap", *base])
    assert bad.exit_code == 1 and "key 'pipe line'" in bad.output
    # shown by name, never by key
    assert keys["pipeline"] not in pushed.output + listing.output
