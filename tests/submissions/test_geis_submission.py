"""GEIS submissions: a header ``.r1h`` and its data file ``.r1d`` are one reference.

Real roots (SQLite log, file store) with a WFPC2 context imported from the corpus (its
atodfile rules name four GEIS headers), drops taken by the real ingest watcher and processed
by the real pipeline: the pair is renamed to one official base name, both files are
checksummed and recorded, only the header enters the rules, and every unpaired or bad half
is BAD FILES naming the file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fixtures.contexts import make_settings
from fixtures.geis import geis_cache, new_pair, write_wfpc2_context
from fixtures.rpc import sha1
from fixtures.submissions import process_at_once, take

from crds_events import events as ev
from crds_events.contexts.importcache import import_cache
from crds_events.files.headers import read_header
from crds_events.rules.bestrefs import load_context
from crds_events.store import SQLiteEventStore
from crds_events.store.artifacts import ArtifactStore
from crds_events.store.filestore import FileStore
from crds_events.submissions import pipeline, review
from crds_events.submissions.dropbox import drop_submission
from crds_events.submissions.processing import ProcessingRequest, process_submission

pytestmark = pytest.mark.corpus

FIELDS = {"deliverer": "Jane Doe", "instrument": "WFPC2", "description": "a new A-to-D table"}
# a dataset the new atodfile (MODE FULL, ATODGAIN 15, useafter 2020) is selected for
DATASET = {"INSTRUME": "WFPC2", "MODE": "FULL", "ATODGAIN": "15.0", "DATE-OBS": "2021-01-01",
           "TIME-OBS": "00:00:00"}


@pytest.fixture
def hst(corpus, tmp_path):
    mappings, references = geis_cache(corpus, tmp_path / "cache")
    pmap = write_wfpc2_context(mappings)
    settings = make_settings(tmp_path, "hst")
    with SQLiteEventStore(settings.db_path) as store:
        import_cache(settings, store, mappings, references, pmap, ("latest", "edit"))
        yield settings, store


def submit(settings, store, paths: list[Path], **fields) -> ev.Event:
    drop_submission(settings, "jane", paths, {**FIELDS, **fields})
    [sid] = take(settings, store)
    return pipeline.process(store, settings, sid)


def _certified(store, sid: str) -> dict[str, ev.FileCertified]:
    return {r.event.original_name: r.event for r in store.read_all(types=["FileCertified"])
            if r.data["submission_id"] == sid}


def test_a_pair_is_one_reference_renamed_together_and_confirmed(hst, corpus, tmp_path):
    settings, store = hst
    header, data = new_pair(corpus, tmp_path / "made")
    outcome = submit(settings, store, [header, data])
    assert isinstance(outcome, ev.SubmissionReady), outcome
    certified = _certified(store, outcome.submission_id)
    new_header, new_data = certified["new_atod.r1h"], certified["new_atod.r1d"]
    # one official base name, both checksummed, the data file typed as its header
    assert new_header.name.endswith("u_a2d.r1h")
    assert new_data.name == new_header.name[:-1] + "d"
    assert {new_header.name, new_data.name} <= set(outcome.files)
    for event in (new_header, new_data):
        assert (event.kind, event.instrument, event.filekind, event.status) == \
            ("reference", "wfpc2", "atodfile", "ok")
    assert new_data.sha1 == sha1(data) and new_data.size == data.stat().st_size
    assert new_header.original_sha1 == sha1(header) != new_header.sha1  # header rewritten
    # only the header enters the rules
    rmap = next(n for n in outcome.generated if n.endswith(".rmap"))
    result = ArtifactStore.for_root(settings.root).get_json(outcome.result_digest)
    rules = result["generated_mappings"][rmap]
    assert f"'{new_header.name}'" in rules and new_data.name not in rules

    review.confirm(settings, store, outcome.submission_id, "jane")
    files = FileStore.from_settings(settings)
    assert files.path_for(new_data.name).read_bytes() == data.read_bytes()
    stored_header = files.path_for(new_header.name)
    assert read_header(stored_header)["FILENAME"] == new_header.name
    cataloged = {r.event.name: r.event for r in store.read_all(types=["FileCataloged"])
                 if r.data["submission_id"] == outcome.submission_id}
    assert cataloged[new_data.name].sha1 == new_data.sha1
    assert cataloged[new_data.name].delivery == cataloged[new_header.name].delivery != ""
    # the new rules select the header for the dataset it was made for
    context = load_context(files.path_for(outcome.new_context))
    assert context.best_references(DATASET)["atodfile"] == new_header.name


@pytest.mark.parametrize("case, bad, reason", [
    ("header alone", "new_atod.r1h",
     "GEIS header new_atod.r1h was submitted without its data file new_atod.r1d"),
    ("data alone", "new_atod.r1d",
     "GEIS data file new_atod.r1d was submitted without its header new_atod.r1h"),
    ("truncated data", "new_atod.r1d", "GEIS data file holds 100 bytes but its header "
                                       "new_atod.r1h describes 131952"),
    ("extra data file", "new_atod.r2d",
     "GEIS data file new_atod.r2d was submitted without its header new_atod.r2h"),
])
def test_an_unpaired_or_bad_half_is_bad_files_naming_it(hst, corpus, tmp_path, case, bad,
                                                        reason):
    settings, store = hst
    header, data = new_pair(corpus, tmp_path / "made")
    paths = {"header alone": [header], "data alone": [data],
             "truncated data": [header, data], "extra data file": [header, data]}[case]
    if case == "truncated data":
        data.write_bytes(data.read_bytes()[:100])
    if case == "extra data file":
        extra = data.with_name("new_atod.r2d")
        extra.write_bytes(b"other bytes" * 10)
        paths.append(extra)
    head = store.head()
    stored = FileStore.from_settings(settings)
    before = stored.names("reference")
    outcome = submit(settings, store, paths)
    assert isinstance(outcome, ev.SubmissionRejected), outcome
    assert bad in outcome.bad_files
    result = ArtifactStore.for_root(settings.root).get_json(outcome.result_digest)
    assert any(e.startswith(f"{bad}: {reason}") for e in result["errors"]), result["errors"]
    assert f"{bad}: {reason}" in outcome.reason  # what the BAD FILES e-mail and page say
    assert str(settings.root) not in outcome.reason
    # rejected: nothing cataloged, nothing in the file store, no new pointer
    assert not [r for r in store.read_all(head, types=["FileCataloged", "ContextSet"])]
    assert stored.names("reference") == before


def test_two_pairs_with_the_same_base_keep_their_own_data(hst, corpus, tmp_path):
    """``pair.r1h``/``pair.r1d`` and ``PAIR.R1H``/``PAIR.R1D``: one base name in two
    cases, two references; each data file follows its own header to a name of its own."""
    settings, store = hst
    lower = new_pair(corpus, tmp_path / "made", "pair.r1h", seed="lower")
    upper = new_pair(corpus, tmp_path / "made", "PAIR.R1H", seed="upper",
                     useafter="Jan 01 2021 00:00:00")
    outcome = submit(settings, store, [*lower, *upper])
    assert isinstance(outcome, ev.SubmissionReady), outcome
    certified = _certified(store, outcome.submission_id)
    assert len({c.name for c in certified.values() if c.kind == "reference"}) == 4
    for header, data in (lower, upper):
        named_header, named_data = certified[header.name], certified[data.name]
        assert named_data.name == named_header.name[:-1] + "d"
        assert named_data.sha1 == sha1(data)

    # the same data bytes under another header base: a duplicate, named
    again_header, again_data = new_pair(corpus, tmp_path / "again", "again.r1h", seed="new")
    shutil.copyfile(lower[1], again_data)
    second = submit(settings, store, [again_header, again_data])
    assert isinstance(second, ev.SubmissionRejected), second
    assert second.duplicates == ("again.r1d",)
    assert f"to {certified['pair.r1d'].name}, which is already known" in second.reason


def test_two_submissions_of_one_data_file_processed_at_once(hst, corpus, tmp_path):
    settings, store = hst
    first = new_pair(corpus, tmp_path / "a", "first.r1h", seed="one")
    second = new_pair(corpus, tmp_path / "b", "second.r1h", seed="two")
    shutil.copyfile(first[1], second[1])  # different headers, one data file
    drop_submission(settings, "jane", list(first), FIELDS)
    drop_submission(settings, "jane", list(second), FIELDS)
    sids = take(settings, store)
    assert len(sids) == 2
    outcomes = process_at_once(settings, sids)
    kinds = sorted(type(o).__name__ for o in outcomes.values())
    assert kinds == ["SubmissionReady", "SubmissionRejected"], outcomes
    rejected = next(o for o in outcomes.values() if isinstance(o, ev.SubmissionRejected))
    assert "bit-identical" in rejected.reason and rejected.duplicates[0].endswith(".r1d")


def test_a_rerun_after_a_crash_mid_rename_starts_clean(hst, corpus, tmp_path):
    """A worker killed between writing the renamed header and its data file leaves half a
    pair in the work directory; the rerun (same work directory) gives a whole pair."""
    settings, store = hst
    header, data = new_pair(corpus, tmp_path / "made")
    mappings = FileStore.from_settings(settings).directory_for("mapping")
    work = tmp_path / "work"
    request = ProcessingRequest(observatory="hst", instrument="wfpc2", kind="batch",
                                files=(header, data), derive_from="hst_9200.pmap",
                                mappings_dir=mappings, work_dir=work)
    first = process_submission(request)
    assert first.status == "READY", first.errors
    [named] = [f for f in first.files if f.original_name == "new_atod.r1d"]
    Path(named.path).unlink()  # as if killed before the data file was written
    again = process_submission(request)
    assert again.status == "READY", again.errors
    [named] = [f for f in again.files if f.original_name == "new_atod.r1d"]
    assert Path(named.path).read_bytes() == data.read_bytes()
    assert Path(again.outputs[named.official_name]) == Path(named.path)


def test_auto_rename_off_keeps_both_names(hst, corpus, tmp_path):
    settings, store = hst
    header, data = new_pair(corpus, tmp_path / "made", "o1234567u.r1h", seed="kept")
    outcome = submit(settings, store, [header, data], auto_rename=False)
    assert isinstance(outcome, ev.SubmissionReady), outcome
    assert {"o1234567u.r1h", "o1234567u.r1d"} <= set(outcome.files)


def test_a_pair_rebased_onto_a_newer_edit_context_stays_whole(hst, corpus, tmp_path):
    """Two GEIS submissions made on one context (other match cases of the same rmap): the
    second, confirmed after the first, is rebased; its data file follows, not into rules."""
    settings, store = hst
    first = submit(settings, store, list(new_pair(corpus, tmp_path / "a", "a.r1h", seed="a")))
    second_pair = new_pair(corpus, tmp_path / "b", "b.r1h", seed="b", mode="AREA")
    second = submit(settings, store, list(second_pair))
    assert isinstance(first, ev.SubmissionReady) and isinstance(second, ev.SubmissionReady)
    review.confirm(settings, store, first.submission_id, "jane")
    with pytest.raises(review.ReviewError, match=r": rebased onto \S+: review the new result"):
        review.confirm(settings, store, second.submission_id, "jane")
    rebased = [r.event for r in store.read_stream(ev.submission_stream(second.submission_id))
               if isinstance(r.event, ev.SubmissionReady)][-1]
    assert rebased.new_context not in (first.new_context, second.new_context)
    review.confirm(settings, store, second.submission_id, "jane")
    certified = _certified(store, second.submission_id)
    header, data = certified["b.r1h"].name, certified["b.r1d"].name
    files = FileStore.from_settings(settings)
    assert files.path_for(data).read_bytes() == second_pair[1].read_bytes()
    context = load_context(files.path_for(rebased.new_context))
    assert context.best_references({**DATASET, "MODE": "AREA"})["atodfile"] == header
    assert context.best_references(DATASET)["atodfile"] == \
        _certified(store, first.submission_id)["a.r1h"].name
    assert data not in files.path_for(next(
        n for n in rebased.generated if n.endswith(".rmap"))).read_text()
