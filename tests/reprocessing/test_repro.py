"""Affected datasets: equal to brute force; computed on a forward change of latest, held
until the pipeline pushes the new context, then mailed to DPAS; regressions do nothing;
a hold that lasts too long mails devs."""

from __future__ import annotations

import datetime
import json
import shutil
import time

import pytest
from click.testing import CliRunner
from fixtures.repro import copy_context, derive_context, oracle_headers, write_catalog

from crds_events import events as ev
from crds_events.cli import cli
from crds_events.config import load_settings
from crds_events.handlers.email import EmailComposer
from crds_events.handlers.reprocessing import (
    ReprocessingHandler,
    ReprocessingService,
    held,
)
from crds_events.handlers.runner import HandlerRunner
from crds_events.reprocessing.affected import affected_datasets, pmap_serial
from crds_events.reprocessing.datasets import import_datasets
from crds_events.reprocessing.results import RESULTS_TABLE, affected_ids, is_held, stored_result
from crds_events.rules.bestrefs import DatasetError, load_context
from crds_events.store.artifacts import ArtifactStore
from crds_events.store.eventlog import SQLiteEventStore
from crds_events.store.filestore import FileStore
from crds_events.store.root import init_root

OMITTED = "OMITTED"
PIPELINE = "ops-pipeline"


@pytest.fixture
def settings(tmp_path, corpus):
    settings = load_settings(tmp_path / "root", overrides={
        "recipients_dpas": "dpas@example.org", "recipients_devs": "devs@example.org",
        "pipeline_key": PIPELINE, "repro_hold_timeout": "2h"})
    init_root(settings)
    copy_context(corpus, FileStore.from_settings(settings).directory_for("mapping"))
    return settings


@pytest.fixture
def mappings(settings):
    return FileStore.from_settings(settings).directory_for("mapping")


@pytest.fixture
def store(settings):
    store = SQLiteEventStore(settings.db_path)
    yield store
    store.close()


def _catalog(settings, store, corpus, tmp_path, count, instrument=None, seed=1):
    path = write_catalog(tmp_path / f"catalog-{count}-{instrument}-{seed}.jsonl",
                         oracle_headers(corpus, instrument), count, seed)
    import_datasets(settings, store, path)
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def brute_force(mappings, old, new, records) -> dict[str, dict[str, tuple]]:
    """Best references of every dataset under both contexts, all types compared."""
    before, after = load_context(mappings / old), load_context(mappings / new)
    found = {}
    for record in records:
        try:
            a = before.best_references(record["header"])
            b = after.best_references(record["header"])
        except DatasetError:
            continue
        changed = {t: (a.get(t, OMITTED), b.get(t, OMITTED)) for t in set(a) | set(b)
                   if a.get(t, OMITTED) != b.get(t, OMITTED)}
        if changed:
            found[record["id"]] = changed
    return found


def _instrument(context, header) -> str:
    try:
        return context.instrument_of(header)
    except DatasetError:
        return ""


def _changes(result) -> dict[str, dict[str, tuple]]:
    found: dict[str, dict[str, tuple]] = {}
    for dataset_id, filekind, old, new in result.changes():
        found.setdefault(dataset_id, {})[filekind] = (old, new)
    return found


# --- the computation ---------------------------------------------------------------------------


@pytest.mark.slow
def test_corpus_pair_equals_brute_force_on_10000_datasets(settings, store, mappings, corpus,
                                                          tmp_path):
    """hst_0001 -> hst_0002 differ in ACS biasfile (an rmap with a precondition hook and
    header changes): every instrument in the catalog, only ACS candidates."""
    records = _catalog(settings, store, corpus, tmp_path, 10_000)
    result = affected_datasets("hst_0001.pmap", "hst_0002.pmap", mappings, store)
    truth = brute_force(mappings, "hst_0001.pmap", "hst_0002.pmap", records)
    assert truth, "the change should affect some datasets"
    assert result.ids == sorted(truth)
    assert _changes(result) == truth
    assert result.changed == {"ACS": {"biasfile": None}}  # header changes: every date
    context = load_context(mappings / "hst_0001.pmap")
    acs = sum(1 for r in records if _instrument(context, r["header"]) == "ACS")
    assert result.candidates == acs < len(records)
    assert result.by_instrument == {"ACS": len(truth)}
    assert result.distinct < acs  # computed per group, not per dataset


@pytest.mark.slow
@pytest.mark.parametrize("occurrence", [0, -1])
def test_one_rmap_change_equals_brute_force(settings, store, mappings, corpus, tmp_path,
                                            occurrence):
    """A reference replaced in ACS darkfile (plain Match/UseAfter, daily darks): the first
    rule (1992, affects every date) or the last (2007: only later datasets are candidates)."""
    old, new, _ = derive_context(mappings, "hst_acs_darkfile.rmap", occurrence=occurrence)
    records = _catalog(settings, store, corpus, tmp_path, 3_000, "ACS")
    result = affected_datasets(old, new, mappings, store)
    truth = brute_force(mappings, old, new, records)
    assert truth
    assert result.ids == sorted(truth)
    assert _changes(result) == truth
    (since,) = result.changed["ACS"].values()
    if occurrence == -1:
        assert since == "2007-01-26 00:07:33"
        dated = sum(1 for r in records
                    if f"{r['header']['DATE-OBS']} {r['header']['TIME-OBS']}" >= since)
        assert result.candidates == dated < len(records)
    else:
        assert result.candidates == len(records)
    every_date = affected_datasets(old, new, mappings, store, use_dates=False)
    assert every_date.ids == result.ids and every_date.candidates == len(records)


def test_pmap_serial():
    assert pmap_serial("hst_0042.pmap") == 42
    assert pmap_serial("/x/jwst_1234.pmap") == 1234
    assert pmap_serial("hst.pmap") is None


def test_no_catalog_or_no_change_affects_nothing(store, mappings):
    result = affected_datasets("hst_0001.pmap", "hst_0002.pmap", mappings, store)
    assert (result.count, result.candidates) == (0, 0)
    same = affected_datasets("hst_0001.pmap", "hst_0001.pmap", mappings, store)
    assert same.changed == {} and same.count == 0


# --- the lifecycle -----------------------------------------------------------------------------


class Harness:
    """The runner with the e-mail composer and the reprocessing handler, stepped by hand."""

    def __init__(self, settings):
        self.settings = settings
        self.store = SQLiteEventStore(settings.db_path)
        self.service = ReprocessingService(settings)
        self.runner = HandlerRunner(SQLiteEventStore(settings.db_path), [
            EmailComposer(settings), ReprocessingHandler(self.service)])
        self.runner.setup()

    def settle(self) -> None:
        """Handlers, then queued computations, until nothing is left."""
        while True:
            self.runner.run_until_idle()
            if not self.service.drain():
                return

    def set_latest(self, context: str, previous: str | None) -> None:
        self.store.record(ev.ContextSet(observatory="hst", kind="latest", context=context,
                                        previous=previous), meta={"actor": "operator"})
        self.settle()

    def push(self, pipeline: str, context: str) -> None:
        self.store.record(ev.RemoteContextPushed(observatory="hst", pipeline=pipeline,
                                                 context=context))
        self.settle()

    def events(self, cls) -> list:
        return [r.event for r in self.store.read_all(types=[cls.type])]

    def mails(self, kind: str) -> list[ev.EmailQueued]:
        return [e for e in self.events(ev.EmailQueued) if e.kind == kind]

    def close(self) -> None:
        self.service.stop()
        self.runner.store.close()
        self.store.close()


@pytest.fixture
def harness(settings):
    harness = Harness(settings)
    yield harness
    harness.close()


def test_forward_latest_computes_holds_and_mails_dpas_after_the_push(
        harness, settings, store, mappings, corpus, tmp_path):
    records = _catalog(settings, store, corpus, tmp_path, 400, "ACS")
    harness.set_latest("hst_0001.pmap", None)  # the first latest: nothing to compare
    assert [e.reason for e in harness.events(ev.ReprocessingSkipped)] == [
        "no previous latest context: nothing to compare with"]

    harness.set_latest("hst_0002.pmap", "hst_0001.pmap")
    (computed,) = harness.events(ev.AffectedDatasetsComputed)
    truth = brute_force(mappings, "hst_0001.pmap", "hst_0002.pmap", records)
    assert (computed.old_context, computed.new_context) == ("hst_0001.pmap", "hst_0002.pmap")
    assert computed.count == len(truth) > 0 and computed.by_instrument == {"ACS": len(truth)}
    assert computed.candidates == 400
    # Stored: the id list, the whole result, and one table row per dataset and type.
    assert affected_ids(settings, store, "hst_0001.pmap", "hst_0002.pmap") == sorted(truth)
    ids_text = ArtifactStore.for_root(settings.root).get_text(computed.ids_digest)
    assert ids_text.split() == sorted(truth)
    assert _changes(stored_result(settings, store, "hst_0001.pmap", "hst_0002.pmap")) == truth
    rows = store.db.conn.execute(f"SELECT dataset_id, filekind, old_reference, new_reference "
                                 f"FROM {RESULTS_TABLE}").fetchall()
    assert len(rows) == sum(len(t) for t in truth.values())
    dataset_id, filekind, was, now = rows[0]
    assert truth[dataset_id][filekind] == (was, now)

    (hold,) = harness.events(ev.ReprocessingHeld)
    assert (hold.new_context, hold.pipeline) == ("hst_0002.pmap", PIPELINE)
    assert [row["new_context"] for row in held(store)] == ["hst_0002.pmap"]
    assert harness.mails("AFFECTED DATASETS") == []
    assert is_held(store, "hst", "hst_0002.pmap")

    harness.push("some-other-cache", "hst_0002.pmap")  # not the configured pipeline
    harness.push(PIPELINE, "hst_0001.pmap")  # the pipeline, still on the old context
    assert harness.events(ev.ReprocessingReleased) == []
    assert harness.mails("AFFECTED DATASETS") == []

    harness.push(PIPELINE, "hst_0002.pmap")
    (released,) = harness.events(ev.ReprocessingReleased)
    assert (released.new_context, released.pushed_context) == ("hst_0002.pmap", "hst_0002.pmap")
    (mail,) = harness.mails("AFFECTED DATASETS")
    assert mail.to == ("dpas@example.org",)
    assert f"Affected datasets: {len(truth)}" in mail.body
    assert f"Affected dataset ids ({len(truth)}):" in mail.body
    mailed = {line.strip() for line in mail.body.splitlines()}
    assert set(truth) <= mailed
    assert held(store) == []
    assert not is_held(store, "hst", "hst_0002.pmap")

    harness.push(PIPELINE, "hst_0002.pmap")  # a repeat releases nothing more
    assert len(harness.events(ev.ReprocessingReleased)) == 1
    assert len(harness.mails("AFFECTED DATASETS")) == 1


def test_a_regression_triggers_nothing(harness, settings, store, corpus, tmp_path):
    _catalog(settings, store, corpus, tmp_path, 200, "ACS")
    harness.set_latest("hst_0002.pmap", "hst_0001.pmap")
    assert len(harness.events(ev.AffectedDatasetsComputed)) == 1
    harness.set_latest("hst_0001.pmap", "hst_0002.pmap")
    harness.set_latest("hst_0001.pmap", "hst_0001.pmap")
    skipped = harness.events(ev.ReprocessingSkipped)
    assert [s.reason.split(":")[0] for s in skipped] == [
        "regression", "latest set to the context it already was"]
    assert len(harness.events(ev.AffectedDatasetsComputed)) == 1  # nothing new
    assert len(harness.events(ev.ReprocessingHeld)) == 1
    harness.push(PIPELINE, "hst_0001.pmap")
    assert harness.events(ev.ReprocessingReleased) == []
    assert harness.mails("AFFECTED DATASETS") == []


def test_pipeline_faster_than_the_computation_releases_at_once(harness, settings, store,
                                                               corpus, tmp_path):
    _catalog(settings, store, corpus, tmp_path, 200, "ACS")
    harness.push(PIPELINE, "hst_0002.pmap")
    harness.set_latest("hst_0002.pmap", "hst_0001.pmap")
    assert len(harness.events(ev.ReprocessingHeld)) == 1
    assert len(harness.events(ev.ReprocessingReleased)) == 1
    assert len(harness.mails("AFFECTED DATASETS")) == 1
    assert held(store) == []


def test_a_hold_past_the_timeout_mails_devs_once(harness, settings, store, corpus, tmp_path):
    _catalog(settings, store, corpus, tmp_path, 100, "ACS")
    harness.set_latest("hst_0002.pmap", "hst_0001.pmap")
    (row,) = held(store)
    since = datetime.datetime.fromisoformat(row["held_at"].replace("Z", "+00:00"))
    assert harness.service.check_held(since + datetime.timedelta(hours=1, minutes=59)) == []
    (overdue,) = harness.service.check_held(since + datetime.timedelta(hours=2, minutes=1))
    assert (overdue.new_context, overdue.pipeline) == ("hst_0002.pmap", PIPELINE)
    assert harness.service.check_held(since + datetime.timedelta(hours=5)) == []
    harness.settle()
    (mail,) = harness.mails("REPROCESSING OVERDUE")
    assert mail.to == ("devs@example.org",) and "hst_0002.pmap" in mail.subject
    assert harness.mails("AFFECTED DATASETS") == []
    harness.push(PIPELINE, "hst_0002.pmap")  # late, but the ids still go out
    assert len(harness.mails("AFFECTED DATASETS")) == 1


def test_history_before_the_handler_is_not_recomputed(settings, store, corpus, tmp_path):
    _catalog(settings, store, corpus, tmp_path, 50, "ACS")
    store.record(ev.ContextSet(observatory="hst", kind="latest", context="hst_0002.pmap",
                               previous="hst_0001.pmap"))
    harness = Harness(settings)
    try:
        harness.settle()
        assert harness.events(ev.AffectedDatasetsComputed) == []
        assert harness.service.pending() == []
    finally:
        harness.close()


def test_threaded_worker_computes_and_stops_cleanly(settings, store, corpus, tmp_path):
    _catalog(settings, store, corpus, tmp_path, 100, "ACS")
    service = ReprocessingService(settings)
    runner = HandlerRunner(SQLiteEventStore(settings.db_path), [ReprocessingHandler(service)],
                           poll_interval=0.02)
    runner.start()
    service.start()
    try:
        store.record(ev.ContextSet(observatory="hst", kind="latest", context="hst_0002.pmap",
                                   previous="hst_0001.pmap"))
        deadline = time.monotonic() + 60
        while not store.read_all(types=[ev.ReprocessingHeld.type]):
            assert time.monotonic() < deadline, "no result within 60 s"
            time.sleep(0.05)
    finally:
        service.stop()
        runner.stop()
        runner.store.close()
    assert len(store.read_all(types=[ev.AffectedDatasetsComputed.type])) == 1


def test_failed_computation_is_recorded(harness, settings, store):
    harness.set_latest("hst_0009.pmap", "hst_0001.pmap")  # not in the file store
    (skipped,) = harness.events(ev.ReprocessingSkipped)
    assert skipped.reason.startswith("computation failed") and "hst_0009.pmap" in skipped.reason
    assert harness.events(ev.ReprocessingHeld) == []


# --- the CLI -----------------------------------------------------------------------------------


def test_cli_repro_compute_show_ids(settings, store, mappings, corpus, tmp_path):
    _catalog(settings, store, corpus, tmp_path, 300, "ACS")
    truth = affected_datasets("hst_0001.pmap", "hst_0002.pmap", mappings, store).ids
    assert truth  # (equal to brute force: the tests above)
    runner = CliRunner()
    root = ["--root", str(settings.root)]
    missing = runner.invoke(cli, ["repro", "show", *root, "hst_0001.pmap", "hst_0002.pmap"])
    assert missing.exit_code == 1 and "repro compute" in missing.output
    done = runner.invoke(cli, ["repro", "compute", *root, "hst_0001.pmap", "hst_0002.pmap"])
    assert done.exit_code == 0, done.output
    assert f"{len(truth)} affected of 300" in done.output
    shown = runner.invoke(cli, ["repro", "show", *root, "hst_0001.pmap", "hst_0002.pmap",
                                "--changes"])
    assert shown.exit_code == 0 and "changed acs.biasfile (from any date)" in shown.output
    assert f"acs.biasfile: {len(truth)}" in shown.output
    ids = runner.invoke(cli, ["repro", "ids", *root, "hst_0001.pmap", "hst_0002.pmap"])
    assert ids.output.split() == sorted(truth)
    bad = runner.invoke(cli, ["repro", "compute", *root, "hst_0001.pmap", "hst_0077.pmap"])
    assert bad.exit_code == 1 and "hst_0077.pmap" in bad.output


def test_forward_again_after_a_regression_is_held_and_released_again(harness, settings, store,
                                                                     corpus, tmp_path):
    _catalog(settings, store, corpus, tmp_path, 100, "ACS")
    harness.set_latest("hst_0002.pmap", "hst_0001.pmap")
    harness.push(PIPELINE, "hst_0002.pmap")
    harness.set_latest("hst_0001.pmap", "hst_0002.pmap")  # regression: nothing
    harness.push(PIPELINE, "hst_0001.pmap")
    harness.set_latest("hst_0002.pmap", "hst_0001.pmap")  # forward again
    assert len(harness.events(ev.ReprocessingHeld)) == 2
    assert is_held(store, "hst", "hst_0002.pmap")
    assert len(harness.mails("AFFECTED DATASETS")) == 1
    harness.push(PIPELINE, "hst_0002.pmap")
    assert len(harness.events(ev.ReprocessingReleased)) == 2
    assert len(harness.mails("AFFECTED DATASETS")) == 2
    assert not is_held(store, "hst", "hst_0002.pmap") and harness.service.pending() == []


def test_a_manual_result_is_still_held_and_released_when_latest_moves(harness, settings, store,
                                                                       corpus, tmp_path):
    _catalog(settings, store, corpus, tmp_path, 100, "ACS")
    manual = CliRunner().invoke(cli, ["repro", "compute", "--root", str(settings.root),
                                      "hst_0001.pmap", "hst_0002.pmap"])
    assert manual.exit_code == 0, manual.output
    harness.set_latest("hst_0002.pmap", "hst_0001.pmap")
    assert len(harness.events(ev.AffectedDatasetsComputed)) == 1  # same result, recorded once
    assert len(harness.events(ev.ReprocessingHeld)) == 1
    harness.push(PIPELINE, "hst_0002.pmap")
    assert len(harness.mails("AFFECTED DATASETS")) == 1


def test_jwst_change_equals_brute_force(tmp_path, corpus):
    """JWST: FITS keywords renamed to data model paths before lookup (whole minimized
    headers, META.OBSERVATION.DATE/TIME read through DATE-OBS/TIME-OBS)."""
    settings = load_settings(tmp_path / "jwst", overrides={"observatory": "jwst"})
    init_root(settings)
    mappings = FileStore.from_settings(settings).directory_for("mapping")
    shutil.copytree(corpus / "contexts" / "jwst" / "mappings", mappings)
    old, new, _ = derive_context(mappings, "jwst_miri_ipc_0002.rmap", occurrence=-1,
                                 old_pmap="jwst_0001.pmap")
    with open(corpus / "oracle" / "bestrefs_jwst.jsonl", encoding="utf-8") as lines:
        headers = [r["header"] for r in map(json.loads, lines) if r["kind"] != "error"]
    path = write_catalog(tmp_path / "jwst.jsonl", headers, 2000)
    with SQLiteEventStore(settings.db_path) as store:
        import_datasets(settings, store, path)
        result = affected_datasets(old, new, mappings, store)
    with open(path, encoding="utf-8") as lines:
        truth = brute_force(mappings, old, new, [json.loads(line) for line in lines])
    assert truth and result.ids == sorted(truth) and _changes(result) == truth
    assert result.distinct < result.candidates
