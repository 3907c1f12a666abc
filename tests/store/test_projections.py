"""Projections: a full lifecycle folds to the expected rows, and rebuilt projections equal
incrementally built ones (and the pure in-memory replay) for random event sequences, on
both backends (`backend` / `new_log` of tests/store/conftest.py)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crds_events import events as ev
from crds_events.handlers.runner import HandlerRunner
from crds_events.store import RawEvent, open_store
from crds_events.store.folds import replay
from crds_events.store.handler import get_checkpoint
from crds_events.store.projections import default_projections, read_table, rebuild


def tables(store, projections):
    return {p.fold.table: read_table(store, p) for p in projections}


def test_lifecycle_folds_to_expected_rows(backend):
    store = backend.store
    projections = default_projections()
    runner = HandlerRunner(store, projections)
    files = ("x_bia.fits", "hst_acs_bias_0002.rmap")
    script = [
        ev.SubmissionStarted("9", "hst", "jdoe", "acs", "new bias", ("bias.fits",)),
        ev.FileCertified("9", files[0], "bias.fits", "f00", 2880, "reference", "acs",
                         "biasfile", "2020-01-01 00:00:00"),
        ev.SubmissionReady("9", files, "hst_0002.pmap", generated=files[1:]),
        ev.SubmissionConfirmed("9", "jdoe", files, "hst_0002.pmap"),
        ev.DeliveryCreated("hst_0001", "hst", "9", files),
        ev.FileCataloged(files[0], "hst_0001", "hst", "f00", 2880, "reference", "acs",
                         "biasfile", "2020-01-01 00:00:00", "9"),
        ev.DeliveryArchiving("hst_0001"),
        ev.DeliveryArchived("hst_0001"),
        ev.FileReleased(files[0], "hst_0001"),
        ev.ContextSet("hst", "latest", "hst_0001.pmap"),
        ev.ContextSet("hst", "latest", "hst_0002.pmap"),
        ev.FileMarkedBad(files[0], "operator", "wrong gain", blacklisted=("hst_0002.pmap",)),
        ev.RemoteContextPushed("hst", "pipeline", "hst_0002.pmap"),
    ]
    try:
        for event in script:
            store.record(event, meta={"actor": "jdoe"})
        runner.run_until_idle()
        got = tables(store, projections)
        # the rows read as of the head equal the tables (nothing behind)
        from crds_events.store.folds import FILES
        from crds_events.store.projections import current_row, current_rows
        assert current_rows(store, FILES) == got["files"]
        assert current_row(store, FILES, (files[0],)) == got["files"][(files[0],)]
    finally:
        store.close()
    bias = got["files"][(files[0],)]
    assert (bias["state"], bias["available"], bias["delivery"], bias["size"]) == (
        "archived", True, "hst_0001", 2880)
    assert bias["rejected"] and bias["reject_reason"] == "wrong gain"
    assert (files[1],) not in got["files"]  # never certified nor cataloged here
    submission = got["submissions"][("9",)]
    assert (submission["state"], submission["decided_by"], submission["delivery"]) == (
        "confirmed", "jdoe", "hst_0001")
    assert submission["certified"] == (files[0],) and submission["files"] == files
    assert got["deliveries"][("hst_0001",)]["state"] == "archived"
    pointer = got["context_pointers"][("hst", "latest")]
    assert (pointer["context"], pointer["previous"]) == ("hst_0002.pmap", "hst_0001.pmap")
    assert [r["context"] for r in got["context_history"].values()] == [
        "hst_0001.pmap", "hst_0002.pmap"]
    assert got["remote_contexts"][("hst", "pipeline")]["context"] == "hst_0002.pmap"


# --- property test ---------------------------------------------------------------------------

SUBS = st.sampled_from(["1", "2"])
FILES = st.sampled_from(["a.fits", "b.fits", "c.rmap", "d.pmap"])
NAMES = st.lists(FILES, max_size=3, unique=True).map(tuple)
DELIVERIES = st.sampled_from(["hst_0001", "hst_0002"])
OBS = st.sampled_from(["hst", "jwst"])
CONTEXTS = st.sampled_from(["hst_0001.pmap", "hst_0002.pmap", "jwst_0100.pmap"])
TEXT = st.sampled_from(["", "why", "because"])

EVENTS = st.one_of(
    st.builds(ev.SubmissionStarted, SUBS, OBS, TEXT, st.just("acs"), TEXT, NAMES),
    st.builds(ev.SubmissionProgress, SUBS, TEXT),
    st.builds(ev.FileCertified, SUBS, FILES, TEXT, TEXT, st.integers(0, 9),
              st.sampled_from(["reference", "mapping"]), st.just("acs"), TEXT,
              status=st.sampled_from(["ok", "warning", "error"])),
    st.builds(ev.SubmissionReady, SUBS, NAMES, CONTEXTS),
    st.builds(ev.SubmissionRejected, SUBS, TEXT, NAMES),
    st.builds(ev.SubmissionFailed, SUBS, TEXT, NAMES),
    st.builds(ev.SubmissionConfirmed, SUBS, TEXT, NAMES, CONTEXTS),
    st.builds(ev.SubmissionForced, SUBS, TEXT, NAMES, CONTEXTS),
    st.builds(ev.SubmissionCancelled, SUBS, TEXT, NAMES, TEXT),
    st.builds(ev.DeliveryCreated, DELIVERIES, OBS, SUBS, NAMES),
    st.builds(ev.FileCataloged, FILES, DELIVERIES, OBS, TEXT, st.integers(0, 9),
              st.just("reference"), st.just("acs"), TEXT),
    st.builds(ev.DeliveryArchiving, DELIVERIES),
    st.builds(ev.DeliveryFailed, DELIVERIES, TEXT),
    st.builds(ev.DeliveryArchived, DELIVERIES),
    st.builds(ev.FileReleased, FILES),
    st.builds(ev.FileMarkedBad, FILES, TEXT, TEXT, NAMES),
    st.builds(ev.FileMarkedOk, FILES, TEXT, TEXT, NAMES),
    st.builds(ev.ContextSet, OBS, st.sampled_from(["latest", "edit"]), CONTEXTS,
              st.none() | CONTEXTS),
    st.builds(lambda o, k, c: RawEvent("ContextSet", {"observatory": o, "pointer": k,
                                                      "context": c}, 1),
              OBS, st.sampled_from(["latest", "edit"]), CONTEXTS),
    st.builds(ev.RemoteContextPushed, OBS, st.sampled_from(["p1", "p2"]), CONTEXTS),
    st.builds(ev.EmailSent, st.just("e1"), TEXT),  # consumed by no projection
)


def _stream(event) -> str:
    return event.stream if isinstance(event, ev.Event) else f"context:{event.data['observatory']}"


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(
    events=st.lists(st.tuples(EVENTS, st.sampled_from(["", "jdoe", "ops"])), max_size=40),
    chunk=st.integers(1, 8),
    batch=st.integers(1, 7),
    rebuild_batch=st.integers(1, 50),
)
def test_rebuild_equals_incremental_and_in_memory_replay(new_log, events, chunk, batch,
                                                         rebuild_batch):
    with new_log() as target:
        store = open_store(target)
        try:
            projections = default_projections()
            runner = HandlerRunner(store, projections, batch=batch)
            runner.setup()
            for start in range(0, len(events), chunk):
                with store.transaction() as tx:
                    for event, actor in events[start:start + chunk]:
                        tx.append(_stream(event), event, meta={"actor": actor} if actor else None)
                runner.run_once()  # at most one batch per projection: usually still behind
            runner.run_until_idle()
            head = store.head()
            assert all(get_checkpoint(store, p.name) == head for p in projections)
            incremental = tables(store, projections)

            records = store.read_all()
            in_memory = {p.fold.table: replay(p.fold, records) for p in projections}

            assert rebuild(store, projections, batch=rebuild_batch) == head
            rebuilt = tables(store, projections)
        finally:
            store.close()
    assert incremental == in_memory
    assert rebuilt == incremental


def test_every_domain_read_model_is_rebuilt(tmp_path):
    """serve and rebuild see the folds that live beside their domain, not only the store's."""
    import subprocess
    import sys

    code = (
        "from crds_events.store.projections import default_projections;"
        "print(sorted(p.fold.table for p in default_projections()))"
    )
    # A fresh interpreter: nothing imported beforehand may be what makes the folds appear.
    tables = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    for table in ("users", "locks", "emails", "files", "context_pointers"):
        assert repr(table) in tables.stdout


def test_a_fold_whose_columns_changed_is_dropped_and_replayed(backend):
    """A release that adds a column to a fold: the old table is rebuilt in the new shape."""
    import dataclasses

    from crds_events.store.folds import FILES
    from crds_events.store.projections import TableProjection

    store = backend.store
    try:
        store.record(ev.FileCertified("9", "x_bia.fits", "bias.fits", "f00", 2880, "reference",
                                      "acs", "biasfile", "2020-01-01 00:00:00"))
        HandlerRunner(store, [TableProjection(FILES)]).run_until_idle()

        def with_flag(key, row, record):
            row = FILES.apply(key, row, record)
            return None if row is None else {**row, "flagged": True}

        grown = dataclasses.replace(FILES, columns={**FILES.columns, "flagged": bool},
                                    apply=with_flag)
        projection = TableProjection(grown)
        HandlerRunner(store, [projection]).run_until_idle()
        rows = read_table(store, projection)
        assert get_checkpoint(store, projection.name) == store.head()
    finally:
        store.close()
    assert rows[("x_bia.fits",)]["flagged"] is True
    assert rows[("x_bia.fits",)]["size"] == 2880
