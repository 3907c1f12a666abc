"""Remote submission: upload files with a token, follow progress, confirm or cancel.

* ``POST /upload/submit`` (multipart): ``file`` parts (repeatable) and ``fields``, a JSON
  object of manifest fields (deliverer, instrument, description, change_level, ...). The
  files and the manifest go to their own directory ``ingest/<user>/<submission-id>/``
  exactly as ``crds-events submit`` drops them (`crds_events.submissions.dropbox`); the
  ingest watcher starts the submission. The id is answered once the drop is durable.
  Answers ``{"submission_id", "jpoll_key", "files"}``.
* ``POST /upload/submissions/<id>/confirm|force|cancel`` (``{"reason"}`` for cancel) call
  `crds_events.submissions.review` as the token's user.
* ``POST /upload/logout`` releases the instrument locks the token's user holds
  (``crds-events submit --logout``); answers ``{"user", "released": [instrument, ...]}``.
* Progress: the JSON-RPC ``jpoll_pull_messages(<jpoll_key>, since_id)`` returns the
  submission's events after ``since_id`` as CRDS monitor messages (`progress_messages`);
  the key is the unguessable one answered with the id (`crds_events.web.jpoll`).

Authentication: ``Authorization: Bearer <token>`` (or ``Token <token>``) or a ``token``
form field, checked with `crds_events.accounts.users.user_for_token`. 401 without a valid token, 403
when the account may not submit. Errors are JSON ``{"error": ...}``.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from crds_events import events as ev
from crds_events.accounts import locks, users
from crds_events.errors import CrdsEventsError
from crds_events.store.filestore import is_safe_name
from crds_events.store.interface import EventReader
from crds_events.submissions import review
from crds_events.submissions.dropbox import drop_uploads
from crds_events.submissions.manifest import ManifestError
from crds_events.web import catalog, get_state, jpoll
from crds_events.web.jsoninput import JsonInputError, loads_bounded
from crds_events.web.rpc import RpcError

__all__ = ["bp", "progress_messages"]

bp = Blueprint("upload", __name__, url_prefix="/upload")

FIELDS_MAX_BYTES = 256 * 1024  # manifest fields are a few short texts

log = logging.getLogger(__name__)


class _Fail(CrdsEventsError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    return response


@bp.errorhandler(_Fail)
def _on_fail(exc: _Fail) -> Response:
    return _error(exc.status, str(exc))


@bp.errorhandler(HTTPException)
def _on_http(exc: HTTPException) -> Response:
    return _error(exc.code or 500, f"{exc.name}: {exc.description}")


def _token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("bearer", "token") and value.strip():
        return value.strip()
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return request.form.get("token", "")
    return ""


def _user(action: str) -> users.User:
    token = _token()
    if not token:
        raise _Fail(401, "authentication required: send 'Authorization: Bearer <token>' "
                         "(tokens come from `crds-events user token NAME`)")
    try:  # the one-line reason: unknown, revoked, expired, account disabled
        user = users.check_token(get_state().store, token)
    except users.TokenRefused as exc:
        raise _Fail(401, str(exc)) from None
    if not users.can(user, action):
        raise _Fail(403, f"user {user.name!r} (role {user.role}) may not {action}")
    return user


def _fields() -> dict[str, Any]:
    text = request.form.get("fields", "")
    if not text:
        raise _Fail(400, "fields: missing (a JSON object of manifest fields)")
    try:  # bounded: deep nesting was a RecursionError (500) before
        fields = loads_bounded(text, "fields", max_bytes=FIELDS_MAX_BYTES)
    except JsonInputError as exc:
        raise _Fail(400, str(exc)) from None
    if not isinstance(fields, dict):
        raise _Fail(400, "fields: expected a JSON object")
    if "files" in fields:
        raise _Fail(400, "fields: 'files' is set by the upload itself")
    return fields


@bp.route("/submit", methods=["POST"])
def submit() -> Response:
    user = _user("submit")
    settings = get_state().settings
    fields = _fields()
    fields.setdefault("deliverer", user.name)  # the token names who delivers
    uploads = request.files.getlist("file")
    if not uploads:
        raise _Fail(400, "file: no files uploaded (send one or more 'file' parts)")
    names: list[str] = []
    for upload in uploads:
        name = upload.filename or ""
        if not is_safe_name(name):
            raise _Fail(400, f"file {name!r}: not a plain file name (letters, digits, "
                             f"'_.+-')")
        if name in names:
            raise _Fail(400, f"file {name!r}: uploaded twice")
        names.append(name)
    try:
        submission_id = drop_uploads(settings, user.name, uploads, fields)
    except ManifestError as exc:  # the problems only: the exception's path is the server's
        raise _Fail(400, "; ".join(f"{field}: {reason}" for field, reason in exc.problems)
                    ) from None
    except ValueError as exc:
        raise _Fail(400, f"cannot submit: {exc}") from None
    except OSError as exc:
        # the server's disk, not the request: 503 (507 when full), without a server path
        log.exception("upload by %s could not be stored", user.name)
        status = 507 if exc.errno in (errno.ENOSPC, errno.EDQUOT) else 503
        raise _Fail(status, f"cannot store the upload now "
                            f"({exc.strerror or 'I/O error'}); try again later") from None
    # answered only now: the drop is fsync'd and renamed into place, so the id is real
    # the progress is personal: read with the unguessable key, not the id (web.jpoll)
    return jsonify(submission_id=submission_id, jpoll_key=jpoll.channel_key(submission_id),
                   files=names)


def _decide(submission_id: str, action: str) -> Response:
    user = _user("submit")
    state = get_state()
    try:
        if action == "cancel":
            body = _json_body()
            reason = body.get("reason", "") if isinstance(body, dict) else ""
            if not isinstance(reason, str):
                raise _Fail(400, "reason: expected text")
            review.cancel(state.settings, state.store, submission_id, user.name, reason)
        else:
            getattr(review, action)(state.settings, state.store, submission_id, user.name)
        view = review.load(state.store, submission_id)
    except review.ReviewError as exc:
        raise _Fail(404 if "no such submission" in str(exc) else 409, str(exc)) from None
    decision = view.decision if view.decision is not None else view.outcome
    return jsonify(submission_id=submission_id, state=view.state,
                   new_context=getattr(decision, "new_context", "") or "")


def _json_body() -> Any:
    """The request's JSON body, bounded like ``fields`` (an empty or non-JSON body: {})."""
    data = request.get_data(cache=True)
    if not data.strip() or not request.is_json:
        return {}
    try:
        return loads_bounded(data, "body", max_bytes=FIELDS_MAX_BYTES)
    except JsonInputError as exc:
        raise _Fail(400, str(exc)) from None


@bp.route("/submissions/<submission_id>/<action>", methods=["POST"])
def decide(submission_id: str, action: str) -> Response:
    if action not in ("confirm", "force", "cancel"):
        raise _Fail(404, f"unknown action {action!r}: confirm, force or cancel")
    return _decide(submission_id, action)


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    """``crds-events submit --logout``: release every instrument lock the token's user
    holds (what CRDS's logout does to the submitter's lock); answers the instruments."""
    user = _user("submit")
    store = get_state().store
    released = []
    for held in locks.list_locks(store):
        if held.owner == user.name:
            try:
                if locks.release_lock(store, held.instrument, user.name) is not None:
                    released.append(held.instrument)
            except locks.LockError:
                continue  # taken over meanwhile (after its expiry): not ours any more
    return jsonify(user=user.name, released=released)


# --- jpoll -----------------------------------------------------------------------------------

_DONE = {
    ev.SubmissionReady: 0,
    ev.SubmissionRejected: 1,
    ev.SubmissionFailed: 1,
    ev.SubmissionCancelled: 3,
}


def _message(record, kind: str, data: Any) -> dict[str, Any]:
    return {"id": record.version, "time": catalog.crds_date(record.recorded_at),
            "type": kind, "data": data}


def result_url(base_url: str, submission_id: str) -> str:
    """The submission's result page: what CRDS sends as a ready submission's jpoll result
    (``crds submit`` takes the id from its last path segment)."""
    return f"{base_url.rstrip('/')}/submissions/{submission_id}"


def _done_data(event: ev.Event, key: str, base_url: str) -> dict[str, Any]:
    """A ``done`` message's data in CRDS's shape, ``{"status", "result"}`` with the result a
    string (the monitor joins it into its log line): the ready URL, or the reason. The
    other keys are ours (our client reads the outcome from them); the monitor ignores them."""
    status = _DONE[type(event)]
    data: dict[str, Any] = {"status": status,
                            "state": {0: "ready", 1: "failed", 3: "cancelled"}[status]}
    if isinstance(event, ev.SubmissionReady):
        data.update(result=result_url(base_url, key), new_context=event.new_context,
                    files=list(event.files))
    elif isinstance(event, ev.SubmissionRejected):
        data.update(state="rejected", result=f"BAD FILES: {event.reason}",
                    reason=event.reason, bad_files=list(event.bad_files))
    else:
        reason = event.error if isinstance(event, ev.SubmissionFailed) else event.reason
        data.update(result=str(reason or data["state"]), reason=reason)
    return data


def progress_messages(store: EventReader, key: str, since_id: int = 0, *,
                      base_url: str = "/") -> list[dict[str, Any]]:
    """The submission ``key``'s events after version ``since_id`` as monitor messages, up
    to the first outcome (``done``); ``base_url`` is the server's, for the ready URL."""
    stream = ev.submission_stream(key)
    records = store.read_stream(stream, after_version=max(0, since_id))
    if not records and store.stream_version(stream) == 0:
        raise RpcError(f"Channel {key!r} not found")
    messages = []
    for record in records:
        event = record.event
        if isinstance(event, ev.SubmissionStarted):
            messages.append(_message(record, "log_message",
                                     f"submission started: {len(event.files)} file(s) for "
                                     f"{event.instrument.upper()} from {event.deliverer}"))
        elif isinstance(event, ev.SubmissionProgress):
            messages.append(_message(record, "log_message", event.message))
        elif isinstance(event, ev.FileCertified):
            messages.append(_message(record, "log_message",
                                     f"certified {event.name}: {event.status}"))
        elif type(event) in _DONE:
            messages.append(_message(record, "done", _done_data(event, key, base_url)))
            # the channel's last word in this answer: crds's monitor takes the status of
            # the last message it reads, so a line after "done" (the confirmation) would
            # make it wait forever on a finished submission
            break
        elif isinstance(event, ev.SubmissionConfirmed | ev.SubmissionForced):
            messages.append(_message(record, "log_message",
                                     f"confirmed by {event.by}: new edit context "
                                     f"{event.new_context}"))
    return messages
