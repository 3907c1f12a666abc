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
`SubmissionForced`.

Exactly once: a decision is appended at the stream version read when deciding, so of two
racing decisions (a double click, a confirm and a cancel) one wins and the other gets
"submission X: already confirmed by USER at TIME" (409 on the web, a non-zero exit from the
CLI). Files are put in the store before the decision and never removed again: a file put
for a decision that then lost is the same bytes the winner stores (puts are idempotent),
and whatever a crash leaves unnamed is reported by the repair at server start
(`crds_events.store.filerepair`). A name that already holds other bytes is refused before
anything is put.

Stale base: a confirm (or force) whose result was derived from an edit context that is no
longer the edit context would undo what was confirmed since; it is refused and the
submission rebased instead (`crds_events.submissions.rebase`): READY again on the current
edit context, to be reviewed and confirmed again. The check is repeated inside the
decision's transaction, so two submissions confirmed at once cannot both land on one base.

Afterwards the uploads leave the ingest directory and the work directory is removed.
Cancel appends `SubmissionCancelled` (and releases the lock), discards the work directory
and keeps the uploads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Any, NoReturn

from crds_events import events as ev
from crds_events.accounts import locks, users
from crds_events.config import Settings
from crds_events.contexts.pointers import context_pointers
from crds_events.delivery.publish import allocate as allocate_delivery
from crds_events.errors import CrdsEventsError
from crds_events.files.checksums import sha1_file
from crds_events.files.geis import pair_names
from crds_events.store.artifacts import ArtifactStore
from crds_events.store.filestore import FileStore, FileStoreError
from crds_events.store.interface import ConcurrencyError, EventReader, EventStore, RecordedEvent
from crds_events.submissions import checklist, states
from crds_events.submissions import rebase as rebasing
from crds_events.submissions.dropbox import (
    drop_directory,
    remove_finished_drop,
    uploads_dir,
    work_dir,
)

__all__ = ["ReviewError", "SubmissionView", "load", "show", "confirm", "force", "cancel",
           "follow", "finish_decisions"]


class ReviewError(CrdsEventsError, ValueError):
    """A review action that is not allowed now (the message says why)."""


class _StaleBase(ReviewError):
    """Inside the decision's transaction: the edit context moved on (rolls it back)."""

    def __init__(self, edit: str) -> None:
        super().__init__(f"the edit context is now {edit}")
        self.edit = edit


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
    decided_at: str = ""  # when the decision was recorded (ISO 8601 UTC)

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
            view.decided_at = record.recorded_at
    if isinstance(view.outcome, ev.SubmissionReady) and view.outcome.files:
        # a rebased result names new rules: the ones of the earlier result are not its files
        kept = set(view.outcome.files)
        view.certified = {n: c for n, c in view.certified.items() if n in kept}
    return view


def _when(recorded_at: str) -> str:
    """``2024-05-01 12:00:03 UTC`` for a record's ISO time."""
    return f"{recorded_at[:19].replace('T', ' ')} UTC" if recorded_at else "an unknown time"


def _decided(view: SubmissionView) -> ReviewError:
    by = getattr(view.decision, "by", "") or "someone"
    return ReviewError(f"submission {view.submission_id}: already {view.state} by {by} at "
                       f"{_when(view.decided_at)}")


def _lost(store: EventReader, submission_id: str, action: str) -> ReviewError:
    """Why a decision that lost a race was not recorded: what the stream says now."""
    view = load(store, submission_id)
    if view.decision is not None:
        return _decided(view)
    onto = getattr(view.outcome, "rebased_onto", "")
    if view.state == "ready" and onto:
        return ReviewError(f"submission {submission_id}: rebased onto {onto}: review the new "
                           f"result and confirm again")
    return ReviewError(f"submission {submission_id}: changed while deciding ({view.state}); "
                       f"look at it again before you {action}")


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
        "status": states.word(view.state),  # CRDS's word for the state (BAD FILES, ...)
        "submitter": view.submitter,
        "instrument": started.instrument if started else "",
        "description": started.description if started else "",
        "deliverer": started.deliverer if started else "",
        "change_level": started.change_level if started else "",
        "uploaded": list(started.files) if started else [],
        "kind": started.kind if started else "",
        "derive_from": started.derive_from if started else "",
        "checklist": checklist.entries(started.redcat) if started else [],
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
    if view.decision is not None:
        raise _decided(view)
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
    result = _result_of(settings, view)
    base = str(result.get("derived_from") or "")
    observatory = view.started.observatory if view.started else settings.observatory
    if getattr(view.outcome, "new_context", ""):
        edit = context_pointers(store, observatory).get("edit")
        if edit and base and edit != base:
            _rebase(settings, store, view, result, edit, user, action)
    try:
        files = _official_files(view, result)
        _store_files(settings, files)
        decision = _commit_decision(settings, store, view, user, forced, files, lock, base)
    except _StaleBase as stale:
        _rebase(settings, store, view, result, stale.edit, user, action)
    except ConcurrencyError:
        raise _lost(store, submission_id, action) from None
    except ReviewError:
        # a racing decision may have taken the work directory: say that, not its effects
        if load(store, submission_id).decision is not None:
            raise _lost(store, submission_id, action) from None
        raise
    _clean_up_after_confirm(settings, view)
    return decision


def _result_of(settings: Settings, view: SubmissionView) -> dict[str, Any]:
    if not view.result_digest:
        return {}
    return dict(_artifacts(settings).get_json(view.result_digest))


def _rebase(settings: Settings, store: EventStore, view: SubmissionView,
            result: dict[str, Any], onto: str, user: str, action: str) -> NoReturn:
    """Refuse the decision: the result is made again on ``onto`` (READY again), or it
    cannot be and stays READY on its old base; the message says which."""
    sid, base = view.submission_id, result.get("derived_from") or "?"
    if view.started is None:
        raise ReviewError(f"submission {sid}: no SubmissionStarted; cannot rebase it")
    if load(store, sid).decision is not None:
        # The edit context moved because a racing decision on this very submission won
        # (its confirm set the edit context): this one lost, there is nothing to rebase.
        raise _lost(store, sid, action)
    try:
        ready = rebasing.rebase(settings, store, view.started, view.version, result, onto,
                                {"actor": user})
    except rebasing.RebaseRefused as exc:
        if load(store, sid).decision is not None:  # decided while we were rebasing
            raise _lost(store, sid, action) from None
        reason = str(exc).replace(f"{settings.root}{os.sep}", "")  # no server paths
        raise ReviewError(
            f"submission {sid}: built on {base}, but the edit context is now {onto}, and it "
            f"cannot be rebased onto it: {reason}. Nothing was confirmed; it stays READY on "
            f"{base}") from None
    except ConcurrencyError:
        raise _lost(store, sid, action) from None
    raise ReviewError(f"submission {sid}: rebased onto {onto}: review the new result and "
                      f"confirm again (new context {ready.new_context}); nothing was "
                      f"{'forced' if action == 'force' else 'confirmed'}")


def _official_files(view: SubmissionView, result: dict[str, Any]) -> dict[str, Path]:
    """name -> the official copy in the work directory, for every file of the outcome."""
    outputs: dict[str, str] = dict(result.get("outputs") or {})
    files: dict[str, Path] = {}
    for name in view.outcome.files:  # type: ignore[union-attr]
        path = Path(outputs.get(name, ""))
        if not outputs.get(name) or not path.is_file():
            raise ReviewError(f"submission {view.submission_id}: the processed copy of {name} "
                              f"is missing; it cannot be confirmed")
        files[name] = path
    halves = pair_names(files)  # a GEIS reference is confirmed (and delivered) whole
    if halves.headers_without_data or halves.data_without_header:
        raise ReviewError(f"submission {view.submission_id}: a GEIS header and its data file "
                          f"are one reference; unpaired: "
                          f"{', '.join(halves.headers_without_data + halves.data_without_header)}"
                          f"; it cannot be confirmed")
    return files


def _store_files(settings: Settings, files: dict[str, Path]) -> None:
    """Put every file in the file store. Nothing put is ever taken out again: a racing
    decision may be storing the same names, and the store never deletes a file an event may
    name. A name that holds other bytes is refused before anything is put."""
    store = FileStore.from_settings(settings)
    for name, path in files.items():
        if store.exists(name) and store.sha1_of(name) != sha1_file(path)[0]:
            raise ReviewError(f"cannot confirm: {name} is already stored with different "
                              f"content; stored files are never replaced. Nothing was "
                              f"confirmed")
    for name, path in files.items():
        try:
            store.put(path, name)
        except FileStoreError as exc:  # its reason, without the work directory's path
            reason = str(exc).replace(repr(os.fspath(path)), "its processed copy")
            raise ReviewError(f"cannot put the confirmed files in the file store: {reason}; "
                              f"nothing was confirmed") from None
        except OSError as exc:  # the reason, not the server's paths
            raise ReviewError(f"cannot put the confirmed files in the file store: {name}: "
                              f"{exc.strerror or type(exc).__name__}; nothing was confirmed"
                              ) from None


def _commit_decision(settings: Settings, store: EventStore, view: SubmissionView, user: str,
                     forced: bool, files: dict[str, Path], lock: locks.Lock | None,
                     base: str = "") -> ev.Event:
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
    stream = ev.submission_stream(sid)
    with store.transaction() as tx:
        # The version read when deciding: a concurrent confirm/cancel makes this fail, or
        # finds the winner's key (checked first): either way this decision lost.
        appended = tx.append(stream, decision, view.version, meta=meta,
                             idempotency_key=f"{sid}:decision")
        if appended.duplicate:
            raise ConcurrencyError(stream, view.version, appended.version)
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
            if base and previous and previous != base:
                raise _StaleBase(previous)  # confirmed elsewhere since we looked: rebase
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
        drop = drop_directory(settings, started.user, view.submission_id)
        copies = uploads_dir(settings, view.submission_id)
        for name in started.files:
            original, copy = drop / name, copies / name
            with contextlib.suppress(OSError):
                if original.is_file() and copy.is_file() and \
                        sha1_file(original) == sha1_file(copy):
                    original.unlink()
        remove_finished_drop(settings, started.user, view.submission_id)
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
    stream = ev.submission_stream(submission_id)
    try:
        with store.transaction() as tx:
            appended = tx.append(stream, cancelled, view.version, meta={"actor": user},
                                 idempotency_key=f"{submission_id}:decision")
            if appended.duplicate:  # another decision holds the key: it won
                raise ConcurrencyError(stream, view.version, appended.version)
            if lock is not None and lock.owner == view.submitter:
                tx.record(ev.LockReleased(instrument=lock.instrument, owner=lock.owner),
                          meta={"actor": user},
                          idempotency_key=f"{submission_id}:lock-released")
    except ConcurrencyError:
        raise _lost(store, submission_id, "cancel") from None
    shutil.rmtree(work_dir(settings, submission_id), ignore_errors=True)
    return cancelled


def finish_decisions(settings: Settings, store: EventReader) -> list[str]:
    """Finish the clean-up a crash interrupted (the decision recorded, its work directory
    still there); ids of the submissions tidied. Run at server start; idempotent."""
    done = []
    types = [ev.SubmissionConfirmed.type, ev.SubmissionForced.type, ev.SubmissionCancelled.type]
    for record in store.iter_all(types=types):
        sid = record.data["submission_id"]
        if not work_dir(settings, sid).exists():
            continue
        if isinstance(record.event, ev.SubmissionCancelled):
            shutil.rmtree(work_dir(settings, sid), ignore_errors=True)
        else:
            _clean_up_after_confirm(settings, load(store, sid))
        done.append(sid)
    return done


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
