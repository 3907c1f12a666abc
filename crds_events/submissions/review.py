"""Review of a processed submission: show, confirm, force, cancel.

Who may do what (CRDS's rules):

* the submitter confirms or cancels their own READY submission (an admin may too), as long
  as nobody else holds the instrument's lock;
* another team member may *force* (confirm on the submitter's behalf) once the submitter's
  lock is gone: released or expired.

Confirm copies the official files from the submission's work directory into the file store
(`crds_events.store.filestore`, write-once), then in ONE transaction appends
`DeliveryRequested` (the delivery name, `crds_events.delivery.publish.allocate`), `FileCataloged`
for each file of that delivery (state delivered, pending archive), `ContextSet` edit -> the new
pmap (with the previous edit context), `LockReleased` and `SubmissionConfirmed` /
`SubmissionForced`; the stream version read at the start guards against a concurrent
decision. If the transaction fails, the files it added to the store are removed again, so
log and store are as before. Afterwards the uploads leave the ingest directory and the work
directory is removed. Cancel appends `SubmissionCancelled` (and releases the lock),
discards the work directory and keeps the uploads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Any

from crds_events import events as ev
from crds_events.accounts import locks, users
from crds_events.config import Settings
from crds_events.delivery.publish import allocate as allocate_delivery
from crds_events.errors import CrdsEventsError
from crds_events.files.checksums import sha1_file
from crds_events.store.artifacts import ArtifactStore
from crds_events.store.filestore import FileStore, FileStoreError
from crds_events.store.interface import EventReader, EventStore, RecordedEvent
from crds_events.submissions.dropbox import uploads_dir, work_dir

__all__ = ["ReviewError", "SubmissionView", "load", "show", "confirm", "force", "cancel",
           "follow"]


class ReviewError(CrdsEventsError, ValueError):
    """A review action that is not allowed now (the message says why)."""


_STATES = {
    ev.SubmissionStarted.type: "started",
    ev.SubmissionProgress.type: "processing",
    ev.SubmissionReady.type: "ready",
    ev.SubmissionRejected.type: "rejected",
    ev.SubmissionFailed.type: "failed",
    ev.SubmissionConfirmed.type: "confirmed",
    ev.SubmissionForced.type: "forced",
    ev.SubmissionCancelled.type: "cancelled",
}


@dataclasses.dataclass
class SubmissionView:
    """A submission as its stream tells it."""

    submission_id: str
    state: str
    version: int
    started: ev.SubmissionStarted | None
    submitter: str
    outcome: ev.Event | None
    decision: ev.Event | None
    progress: list[str]
    certified: dict[str, ev.FileCertified]

    @property
    def instrument(self) -> str:
        return self.started.instrument if self.started else ""

    @property
    def result_digest(self) -> str:
        return getattr(self.outcome, "result_digest", "") if self.outcome else ""


def load(store: EventReader, submission_id: str) -> SubmissionView:
    """The submission's stream folded into a `SubmissionView` (`ReviewError` if unknown)."""
    records: list[RecordedEvent] = store.read_stream(ev.submission_stream(submission_id))
    if not records:
        raise ReviewError(f"submission {submission_id!r}: no such submission")
    view = SubmissionView(submission_id, "", records[-1].version, None, "", None, None, [], {})
    for record in records:
        event = record.event
        if record.type in _STATES and not (record.type == ev.SubmissionProgress.type
                                           and view.outcome is not None):
            view.state = _STATES[record.type]
        if isinstance(event, ev.SubmissionStarted):
            view.started = event
            view.submitter = event.user or record.actor or ""
        elif isinstance(event, ev.SubmissionProgress):
            view.progress.append(event.message)
        elif isinstance(event, ev.FileCertified):
            view.certified[event.name] = event
        elif isinstance(event, ev.SubmissionReady | ev.SubmissionRejected | ev.SubmissionFailed):
            view.outcome = event
            if not view.submitter:
                view.submitter = record.actor or ""
        elif isinstance(event, ev.SubmissionConfirmed | ev.SubmissionForced
                        | ev.SubmissionCancelled):
            view.decision = event
    return view


def _artifacts(settings: Settings) -> ArtifactStore:
    return ArtifactStore.for_root(settings.root)


def show(settings: Settings, store: EventReader, submission_id: str) -> dict[str, Any]:
    """Everything known of a submission: state, manifest fields, progress lines, per-file
    certify results, generated mappings and diffs (from the stored result)."""
    view = load(store, submission_id)
    result: dict[str, Any] = {}
    if view.result_digest:
        with contextlib.suppress(Exception):
            result = _artifacts(settings).get_json(view.result_digest)
    started = view.started
    return {
        "submission_id": submission_id,
        "state": view.state,
        "submitter": view.submitter,
        "instrument": started.instrument if started else "",
        "description": started.description if started else "",
        "deliverer": started.deliverer if started else "",
        "change_level": started.change_level if started else "",
        "uploaded": list(started.files) if started else [],
        "progress": view.progress,
        "files": {name: {"original": c.original_name, "status": c.status,
                         "summary": c.summary, "kind": c.kind, "filekind": c.filekind}
                  for name, c in view.certified.items()},
        "new_context": getattr(view.outcome, "new_context", "") or "",
        "generated": list(getattr(view.outcome, "generated", ()) or ()),
        "reason": getattr(view.outcome, "reason", "") or getattr(view.outcome, "error", ""),
        "decided_by": getattr(view.decision, "by", ""),
        "result": result,
    }


def _user_can(store: EventReader, user: str, action: str, owner: str) -> bool:
    """The accounts policy; a user the registry does not know may act on their own."""
    record = users.get_user(store, user)
    if record is None:
        return user == owner and action in ("confirm", "cancel")
    return users.can(record, action, owner=owner)


def _ready(store: EventReader, submission_id: str, action: str) -> SubmissionView:
    view = load(store, submission_id)
    if view.state != "ready":
        raise ReviewError(f"submission {submission_id}: cannot {action} a submission that is "
                          f"{view.state} (only a READY one)")
    return view


def _decide(settings: Settings, store: EventStore, submission_id: str, user: str,
            forced: bool) -> ev.Event:
    action = "force" if forced else "confirm"
    view = _ready(store, submission_id, action)
    owner = view.submitter
    lock = locks.current_lock(store, view.instrument)
    if forced:
        if user == owner:
            raise ReviewError(f"submission {submission_id}: you submitted it; confirm it "
                              f"instead of forcing")
        if not _user_can(store, user, "force", owner):
            raise ReviewError(f"user {user!r} may not force submissions")
        if lock is not None and lock.owner == owner:
            raise ReviewError(
                f"submission {submission_id}: {owner} still holds the "
                f"{view.instrument.upper()} lock (until {locks.format_time(lock.expires_at)});"
                f" force is possible once it is released or expired")
    else:
        if not _user_can(store, user, "confirm", owner):
            raise ReviewError(f"submission {submission_id} belongs to {owner}; {user} may "
                              f"not confirm it (another member may force it once "
                              f"{owner}'s lock is gone)")
        if lock is not None and lock.owner not in (owner, user):
            raise ReviewError(
                f"instrument {view.instrument.upper()} is locked by {lock.owner} until "
                f"{locks.format_time(lock.expires_at)}")
    files = _official_files(settings, view)
    added = _store_files(settings, files)
    try:
        decision = _commit_decision(settings, store, view, user, forced, files, lock)
    except BaseException:
        _unstore(settings, added)
        raise
    _clean_up_after_confirm(settings, view)
    return decision


def _official_files(settings: Settings, view: SubmissionView) -> dict[str, Path]:
    """name -> the official copy in the work directory, for every file of the outcome."""
    outputs: dict[str, str] = {}
    if view.result_digest:
        outputs = dict(_artifacts(settings).get_json(view.result_digest).get("outputs", {}))
    files: dict[str, Path] = {}
    for name in view.outcome.files:  # type: ignore[union-attr]
        path = Path(outputs.get(name, ""))
        if not outputs.get(name) or not path.is_file():
            raise ReviewError(f"submission {view.submission_id}: the processed copy of {name} "
                              f"is missing ({path}); it cannot be confirmed")
        files[name] = path
    return files


def _store_files(settings: Settings, files: dict[str, Path]) -> list[str]:
    """Put every file in the file store; the names that were not there before."""
    store = FileStore.from_settings(settings)
    added: list[str] = []
    try:
        for name, path in files.items():
            existed = store.exists(name)
            store.put(path, name)
            if not existed:
                added.append(name)
    except (FileStoreError, OSError) as exc:
        _unstore(settings, added)
        raise ReviewError(f"cannot put the confirmed files in the file store: {exc}; "
                          f"nothing was confirmed") from None
    except BaseException:
        _unstore(settings, added)
        raise
    return added


def _unstore(settings: Settings, names: list[str]) -> None:
    store = FileStore.from_settings(settings)
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(store.path_for(name))


def _commit_decision(settings: Settings, store: EventStore, view: SubmissionView, user: str,
                     forced: bool, files: dict[str, Path], lock: locks.Lock | None
                     ) -> ev.Event:
    outcome: ev.SubmissionReady = view.outcome  # type: ignore[assignment]
    sid = view.submission_id
    observatory = view.started.observatory if view.started else settings.observatory
    meta = {"actor": user}
    if forced:
        decision: ev.Event = ev.SubmissionForced(
            submission_id=sid, by=user, files=outcome.files,
            new_context=outcome.new_context, lock_owner=view.submitter)
    else:
        decision = ev.SubmissionConfirmed(submission_id=sid, by=user, files=outcome.files,
                                          new_context=outcome.new_context)
    with store.transaction() as tx:
        # The version read when deciding: a concurrent confirm/cancel makes this fail.
        tx.append(ev.submission_stream(sid), decision, view.version, meta=meta,
                  idempotency_key=f"{sid}:decision")
        # The delivery name (next serial) is fixed here, in the decision's transaction; the
        # delivery worker links the files and writes its .cat afterwards.
        delivery = allocate_delivery(tx, settings, sid, outcome.files,
                                     observatory=observatory, meta=meta) if files else ""
        for name in files:
            certified = view.certified.get(name)
            sha1, size = sha1_file(files[name])
            tx.record(ev.FileCataloged(
                name=name, delivery=delivery, observatory=observatory, sha1=sha1,
                size=size, kind=certified.kind if certified else _kind_of(name),
                instrument=(certified.instrument if certified else view.instrument),
                filekind=certified.filekind if certified else "",
                useafter=certified.useafter if certified else "", submission_id=sid,
            ), meta=meta, idempotency_key=f"{sid}:cataloged:{name}")
        if outcome.new_context:
            previous = None
            for record in tx.read_all(streams=[ev.context_stream(observatory)],
                                      types=[ev.ContextSet.type]):
                if record.event.kind == "edit":
                    previous = record.event.context
            tx.record(ev.ContextSet(observatory=observatory, kind="edit",
                                    context=outcome.new_context, previous=previous,
                                    description=f"submission {sid}"),
                      meta=meta, idempotency_key=f"{sid}:edit-context")
        if lock is not None:
            tx.record(ev.LockReleased(instrument=lock.instrument, owner=lock.owner),
                      meta=meta, idempotency_key=f"{sid}:lock-released")
    return decision


def _kind_of(name: str) -> str:
    return "mapping" if name.endswith((".pmap", ".imap", ".rmap")) else "reference"


def _clean_up_after_confirm(settings: Settings, view: SubmissionView) -> None:
    """The files are in the store now: remove the uploads that are still the ones taken
    (a file the user replaced meanwhile is left alone) and the work directory."""
    started = view.started
    if started is not None and started.user:
        drop = Path(settings.ingest) / started.user
        copies = uploads_dir(settings, view.submission_id)
        for name in started.files:
            original, copy = drop / name, copies / name
            with contextlib.suppress(OSError):
                if original.is_file() and copy.is_file() and \
                        sha1_file(original) == sha1_file(copy):
                    original.unlink()
    shutil.rmtree(work_dir(settings, view.submission_id), ignore_errors=True)


def confirm(settings: Settings, store: EventStore, submission_id: str,
            user: str) -> ev.Event:
    """The submitter confirms: files cataloged, new pmap = edit context, lock released."""
    return _decide(settings, store, submission_id, user, forced=False)


def force(settings: Settings, store: EventStore, submission_id: str,
          user: str) -> ev.Event:
    """Another team member confirms after the submitter's lock is gone."""
    return _decide(settings, store, submission_id, user, forced=True)


def cancel(settings: Settings, store: EventStore, submission_id: str, user: str,
           reason: str = "") -> ev.Event:
    """The submitter cancels: temporary copies discarded, uploads kept, lock released."""
    view = _ready(store, submission_id, "cancel")
    if not _user_can(store, user, "cancel", view.submitter):
        raise ReviewError(f"submission {submission_id} belongs to {view.submitter}; {user} "
                          f"may not cancel it")
    outcome: ev.SubmissionReady = view.outcome  # type: ignore[assignment]
    cancelled = ev.SubmissionCancelled(submission_id=submission_id, by=user,
                                       files=outcome.files, reason=reason)
    lock = locks.current_lock(store, view.instrument)
    with store.transaction() as tx:
        tx.append(ev.submission_stream(submission_id), cancelled, view.version,
                  meta={"actor": user}, idempotency_key=f"{submission_id}:decision")
        if lock is not None and lock.owner == view.submitter:
            tx.record(ev.LockReleased(instrument=lock.instrument, owner=lock.owner),
                      meta={"actor": user}, idempotency_key=f"{submission_id}:lock-released")
    shutil.rmtree(work_dir(settings, submission_id), ignore_errors=True)
    return cancelled


_OUTCOME_TYPES = frozenset({ev.SubmissionReady.type, ev.SubmissionRejected.type,
                            ev.SubmissionFailed.type})


def follow(store: EventReader, submission_id: str, *, timeout: float = 600.0,
           on_progress=None, poll: float = 0.1) -> ev.Event | None:
    """Wait for the submission's outcome (READY / BAD FILES / FAIL event), calling
    ``on_progress(message)`` for each progress line as it is recorded; None on timeout."""
    deadline = time.monotonic() + timeout
    version = 0
    while True:
        for record in store.read_stream(ev.submission_stream(submission_id),
                                        after_version=version):
            version = record.version
            if record.type == ev.SubmissionProgress.type and on_progress is not None:
                on_progress(record.event.message)
            if record.type in _OUTCOME_TYPES:
                return record.event
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll)
