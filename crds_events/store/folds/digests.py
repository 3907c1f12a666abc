"""The fold of file digests: which sha1s a new submission may not bring again.

CRDS refuses a file that is bit-identical to one it already has. "Has" means: a file in the
store (cataloged: imported or confirmed), the bytes originally uploaded for such a file
(HST files are stored with a rewritten FILENAME/ROOTNAME/HISTORY, so their stored sha1
differs from the upload's), and a file of another submission still pending (certified,
READY, not rejected, failed or cancelled).

One row per file of a submission, keyed ``(submission_id, name)`` (imported files have
``submission_id`` ""): the outcome events name their files, so a rejected or cancelled
submission's rows are dropped by key, and a confirmed one's rows become ``stored``. The
submission pipeline reads this table (`crds_events.submissions.pipeline.known_files`)
instead of replaying the log for every submission.
"""

from __future__ import annotations

from crds_events import events as ev
from crds_events.store.folds.core import Fold, Key, Row, names
from crds_events.store.interface import RecordedEvent

__all__ = ["FILE_DIGESTS"]

_DROPPED_BY = (ev.SubmissionRejected, ev.SubmissionFailed, ev.SubmissionCancelled)


def _keys(record: RecordedEvent) -> list[Key]:
    event = record.event
    if isinstance(event, _DROPPED_BY):
        return [(event.submission_id, name) for name in event.files]
    return [(event.submission_id or "", event.name)]


def _apply(key: Key, row: Row | None, record: RecordedEvent) -> Row | None:
    event = record.event
    submission_id, name = key
    if isinstance(event, ev.FileCertified):
        if event.status == "error":  # never accepted: its submission is BAD FILES
            return row
        original = event.original_sha1 if event.original_sha1 != event.sha1 else ""
        if row is not None and row["state"] == "stored":
            return {**row, "original_sha1": row["original_sha1"] or original}
        return {"submission_id": submission_id, "name": name, "sha1": event.sha1,
                "original_sha1": original, "state": "pending", "position": record.position}
    if isinstance(event, ev.FileCataloged):
        return {"submission_id": submission_id, "name": name, "sha1": event.sha1,
                "original_sha1": row["original_sha1"] if row else "", "state": "stored",
                "position": record.position}
    # rejected, failed or cancelled: its files were never stored, forget them
    return row if row is not None and row["state"] == "stored" else None


FILE_DIGESTS = Fold(
    table="file_digests",
    columns={"submission_id": str, "name": str, "sha1": str, "original_sha1": str,
             "state": str, "position": int},
    pk=("submission_id", "name"),
    consumes=names(ev.FileCertified, ev.FileCataloged, *_DROPPED_BY),
    keys=_keys,
    apply=_apply,
)
