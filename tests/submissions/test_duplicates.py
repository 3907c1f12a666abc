"""Duplicate detection: a file bit-identical to a stored file, to the original upload of an
accepted file (HST files are stored with a rewritten header), or to a file of another
pending submission is BAD FILES, naming the earlier file.

Real roots (SQLite log, file store), drops taken by the real ingest watcher and processed by
the real pipeline, as a running server's worker does; two workers at once for the race.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from astropy.io import fits
from fixtures.contexts import make_settings, seed_generations
from fixtures.rpc import make_root
from fixtures.submissions import make_flat, process_at_once, take

from crds_events import events as ev
from crds_events.files.checksums import sha1_file
from crds_events.store import SQLiteEventStore
from crds_events.store.filestore import FileStore
from crds_events.store.folds import FILE_DIGESTS, FILES
from crds_events.store.projections import TableProjection, current_rows, read_table, rebuild
from crds_events.submissions import pipeline, review
from crds_events.submissions.dropbox import drop_submission

JWST_FIELDS = {"deliverer": "Jane Doe", "instrument": "NIRCAM", "description": "flats"}
COS_FIELDS = {"deliverer": "Jane Doe", "instrument": "COS", "description": "a deadtab"}


def submit(settings, store, paths: list[Path], fields: dict) -> ev.Event:
    drop_submission(settings, "jane", paths, fields)
    [sid] = take(settings, store)
    return pipeline.process(store, settings, sid)


@pytest.fixture
def jwst(tmp_path):
    settings = make_settings(tmp_path, "jwst")
    with SQLiteEventStore(settings.db_path) as store:
        seed_generations(settings, store, tmp_path, archived=1)
        yield settings, store


def test_a_file_identical_to_a_stored_one_is_refused(jwst, tmp_path):
    settings, store = jwst
    stored = FileStore.from_settings(settings).path_for("jwst_nircam_flat_0001.fits")
    row_before = current_rows(store, FILES)[("jwst_nircam_flat_0001.fits",)]
    for name in ("my_flat.fits", "jwst_nircam_flat_0001.fits"):  # renamed, and as stored
        copy = tmp_path / "made" / name
        copy.parent.mkdir(exist_ok=True)
        shutil.copyfile(stored, copy)
        outcome = submit(settings, store, [copy], JWST_FIELDS)
        assert isinstance(outcome, ev.SubmissionRejected), outcome
        assert outcome.duplicates == (name,)
        assert "bit-identical" in outcome.reason
        assert "to jwst_nircam_flat_0001.fits, which is already known" in outcome.reason
    # the refusals leave the stored file's catalog row as it was
    row_after = current_rows(store, FILES)[("jwst_nircam_flat_0001.fits",)]
    assert {k: row_after[k] for k in ("state", "sha1", "available", "submission_id")} == \
        {k: row_before[k] for k in ("state", "sha1", "available", "submission_id")}


def test_the_same_file_in_two_pending_submissions(jwst, tmp_path):
    settings, store = jwst
    flat = make_flat(tmp_path / "made" / "flat.fits", filter_="F200W", seed=41)
    first = submit(settings, store, [flat], JWST_FIELDS)
    assert isinstance(first, ev.SubmissionReady), first
    official = next(n for n in first.files if n.endswith(".fits"))

    again = tmp_path / "made" / "flat_again.fits"
    shutil.copyfile(flat, again)
    second = submit(settings, store, [again], JWST_FIELDS)
    assert isinstance(second, ev.SubmissionRejected), second
    assert second.duplicates == ("flat_again.fits",)
    assert f"to {official}, which is already known" in second.reason

    # Cancelled, the first no longer holds the bytes: the same file may come again.
    review.cancel(settings, store, first.submission_id, "jane")
    third = submit(settings, store, [again], JWST_FIELDS)
    assert isinstance(third, ev.SubmissionReady), third


def test_two_submissions_of_one_file_processed_at_once(jwst, tmp_path):
    """Two workers (or a second server process) process both at the same time: each reads
    the known files before the other has recorded anything; one is READY, one BAD FILES."""
    settings, store = jwst
    flat = make_flat(tmp_path / "made" / "twin.fits", filter_="F444W", seed=42)
    twin = tmp_path / "made" / "twin_b.fits"
    shutil.copyfile(flat, twin)
    drop_submission(settings, "jane", [flat], JWST_FIELDS)
    drop_submission(settings, "jane", [twin], JWST_FIELDS)
    sids = take(settings, store)
    assert len(sids) == 2
    outcomes = process_at_once(settings, sids)
    kinds = sorted(type(o).__name__ for o in outcomes.values())
    assert kinds == ["SubmissionReady", "SubmissionRejected"], outcomes
    rejected = next(o for o in outcomes.values() if isinstance(o, ev.SubmissionRejected))
    assert "bit-identical" in rejected.reason


def _deadtab(corpus: Path, path: Path, useafter: str) -> Path:
    original = corpus / "contexts" / "hst" / "references" / "s7g1700gl_dead.fits"
    path.parent.mkdir(parents=True, exist_ok=True)
    with fits.open(original) as hdus:
        hdus[0].header["USEAFTER"] = useafter
        hdus.writeto(path, checksum=True)
    return path


def test_original_bytes_of_an_accepted_hst_file_are_refused(corpus, tmp_path):
    settings = make_root(tmp_path / "root", corpus, synthetic=0)
    with SQLiteEventStore(settings.db_path) as store:
        upload = _deadtab(corpus, tmp_path / "made" / "new_dead.fits", "Jan 01 2020 00:00:00")
        uploaded_sha1 = sha1_file(upload)[0]
        first = submit(settings, store, [upload], COS_FIELDS)
        assert isinstance(first, ev.SubmissionReady), first
        [certified] = [r.event for r in store.read_all(types=["FileCertified"])
                       if r.data["submission_id"] == first.submission_id
                       and r.data["kind"] == "reference"]
        official = certified.name
        # the HST rename rewrote the header: the stored bytes are not the uploaded ones
        assert certified.sha1 != uploaded_sha1 == certified.original_sha1

        # while READY (pending), and once confirmed (stored): the uploaded bytes are refused
        copy = tmp_path / "made" / "same_dead.fits"
        shutil.copyfile(upload, copy)
        pending = submit(settings, store, [copy], COS_FIELDS)
        assert isinstance(pending, ev.SubmissionRejected), pending
        assert f"to {official}, which is already known" in pending.reason
        review.confirm(settings, store, first.submission_id, "jane")
        assert FileStore.from_settings(settings).sha1_of(official) == certified.sha1
        stored = submit(settings, store, [copy], COS_FIELDS)
        assert isinstance(stored, ev.SubmissionRejected), stored
        assert f"to {official}, which is already known" in stored.reason
        # the stored (renamed) bytes themselves are refused too
        renamed = tmp_path / "made" / "renamed_dead.fits"
        shutil.copyfile(FileStore.from_settings(settings).path_for(official), renamed)
        assert isinstance(submit(settings, store, [renamed], COS_FIELDS), ev.SubmissionRejected)

        # the digests come from the projection, and a rebuild from the log gives the same
        before = current_rows(store, FILE_DIGESTS)
        assert before[(first.submission_id, official)]["original_sha1"] == uploaded_sha1
        rebuild(store, [TableProjection(FILE_DIGESTS)])
        assert read_table(store, TableProjection(FILE_DIGESTS)) == before
