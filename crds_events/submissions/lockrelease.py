"""A submission that ends with nothing to confirm gives its instrument lock back.

CRDS keeps an instrument locked only while its user is working on it. A submission takes
(or renews) its submitter's lock when it starts (`crds_events.submissions.dropbox`);
confirm, force and cancel release it (`crds_events.submissions.review`). A submission
rejected (BAD FILES) or failed (FAIL) leaves nothing to review, so its outcome releases
the lock it took, in the same transaction - unless the submitter still has another
submission of that instrument at work (started and not yet decided, or READY awaiting
confirm or cancel): that one keeps holding it, as it would have without this submission.
A lock this submission did not take (a ``crds submit`` login's, an explicit
``crds-events lock acquire``, an earlier submission's it only renewed) is left alone.
"""

from __future__ import annotations

from crds_events import events as ev
from crds_events.accounts import locks
from crds_events.store.interface import EventReader, Transaction

__all__ = ["RELEASING_OUTCOMES", "release_after_outcome", "working_submissions"]

#: Outcomes after which the submitter has nothing left to do on the submission.
RELEASING_OUTCOMES = (ev.SubmissionRejected, ev.SubmissionFailed)

# A submission is at work from SubmissionStarted until one of these.
_ENDED = (ev.SubmissionRejected, ev.SubmissionFailed, ev.SubmissionConfirmed,
          ev.SubmissionForced, ev.SubmissionCancelled)
_TYPES = [ev.SubmissionStarted.type, *(cls.type for cls in _ENDED)]


def working_submissions(reader: EventReader, user: str, instrument: str, *,
                        exclude: str = "") -> list[str]:
    """Ids of ``user``'s submissions of ``instrument`` still at work (started, processing
    or READY), other than ``exclude``."""
    instrument = instrument.lower()
    working: dict[str, None] = {}
    for record in reader.iter_all(types=_TYPES):
        event = record.event
        sid = event.submission_id
        if isinstance(event, ev.SubmissionStarted):
            owner = event.user or record.actor or ""
            if owner == user and event.instrument.lower() == instrument and sid != exclude:
                working[sid] = None
        else:
            working.pop(sid, None)
    return list(working)


def release_after_outcome(tx: Transaction, started: ev.SubmissionStarted, submitter: str,
                          outcome: ev.Event) -> locks.Lock | None:
    """In the outcome's transaction: release ``submitter``'s lock on the submission's
    instrument when ``outcome`` ends the work (`RELEASING_OUTCOMES`) and no other
    submission of theirs on that instrument is at work; the lock released, or None."""
    if not isinstance(outcome, RELEASING_OUTCOMES) or not submitter or not started.instrument:
        return None
    sid = started.submission_id
    if working_submissions(tx, submitter, started.instrument, exclude=sid):
        return None
    try:
        return locks.release_if_held_by(tx, started.instrument, submitter, actor=submitter,
                                        idempotency_key=f"{sid}:lock-released",
                                        submission_id=sid)
    except locks.LockError:  # not an instrument name: no lock was ever taken for it
        return None
