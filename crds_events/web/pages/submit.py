"""Batch submission in the browser: form -> live monitor -> result page -> confirm/force/cancel.

* ``/submit``: upload files with the manifest fields (instrument, description, change
  level, derive-from context, kind, other e-mails, the ReDCaT checklist). The manifest is
  validated in a private staging directory first, so a bad field is answered at once (400,
  every problem named) and nothing reaches the ingest directory; a good one goes there
  exactly as a drop would (`crds_events.submissions.dropbox.drop_submission`) and the
  browser is sent to the monitor.
* ``/submissions/<id>/monitor`` shows the submission's progress as it happens; its
  ``/events`` are server-sent events: one per progress line (id = the event's position in
  the log, so a reconnecting browser's ``Last-Event-ID`` resumes right after the last line
  it saw) and a final ``done`` with the outcome. A stream ends at the outcome, or after
  `STREAM_SECONDS` (the browser reconnects), so no request lives forever; at most
  ``stream_limit`` are open at once (``stream_limit_per_user`` per user): one more is
  refused with 429 and Retry-After (`crds_events.web.streams`) instead of taking a thread
  that pages and JSON-RPC need.
* ``/submissions/<id>``: the result (certify results per file, generated mappings, logical
  and text diffs, collision warnings, from the result artifact) and the buttons the rules
  allow: confirm and cancel for the submitter (or an admin), force for another member
  (`crds_events.submissions.review` decides; its refusal is shown).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from crds_events import events as ev
from crds_events.accounts import users
from crds_events.errors import CrdsEventsError
from crds_events.store.filestore import is_safe_name
from crds_events.store.interface import EventReader, RecordedEvent
from crds_events.submissions import checklist, review, states
from crds_events.submissions.dropbox import drop_uploads
from crds_events.submissions.manifest import (
    CHANGE_LEVELS,
    KINDS,
    REDCAT_FIELDS,
    ManifestError,
    instruments_for,
)
from crds_events.web import get_state, visibility
from crds_events.web.converters import SQLITE_MAX_INT
from crds_events.web.pages import result_view
from crds_events.web.pages.auth import register_error_pages, role_required
from crds_events.web.pages.common import log
from crds_events.web.streams import RETRY_AFTER, StreamBudgetExceeded

__all__ = ["bp", "register", "monitor_message", "manifest_fields", "STREAM_SECONDS"]

_log = logging.getLogger(__name__)

bp = Blueprint("submit", __name__)

STREAM_SECONDS = 25.0  # one SSE response at most this long; the browser reconnects
_POLL = 0.2
_HEARTBEAT = 10.0
_OUTCOMES = {
    ev.SubmissionReady.type: "ready",
    ev.SubmissionRejected.type: "rejected",
    ev.SubmissionFailed.type: "failed",
    ev.SubmissionCancelled.type: "cancelled",
    ev.SubmissionConfirmed.type: "confirmed",
    ev.SubmissionForced.type: "forced",
}


def _settings():
    return get_state().settings


def _store():
    return get_state().store


# --- the form ------------------------------------------------------------------------------


def _choices() -> dict[str, Any]:
    return {"instruments": [i.upper() for i in instruments_for(_settings().observatory)],
            "change_levels": CHANGE_LEVELS, "kinds": KINDS, "redcat_fields": REDCAT_FIELDS,
            "checklist_items": checklist.ITEMS}


def manifest_fields(form: Mapping[str, str], user: users.User) -> dict[str, Any]:
    """The manifest fields a submitted form asks for (validated later, by the manifest
    parser itself). Empty optional fields are left out so the manifest defaults apply."""
    fields: dict[str, Any] = {
        "deliverer": form.get("deliverer", "").strip() or user.full_name or user.name,
        "instrument": form.get("instrument", "").strip(),
        "description": form.get("description", "").strip(),
    }
    for name in ("change_level", "derive_from", "kind"):
        value = form.get(name, "").strip()
        if value:
            fields[name] = value
    fields["auto_rename"] = form.get("auto_rename", "") in ("1", "on", "true", "yes")
    emails = form.get("other_emails", "").strip()
    if emails:
        fields["other_emails"] = emails
    redcat = checklist.from_form(form)
    if redcat:
        fields["redcat"] = redcat
    if fields.get("kind", "").lower() == "delete":  # the manifest names what to delete
        fields["files"] = delete_names(form)
    return fields


def delete_names(form: Mapping[str, str]) -> list[str]:
    """The reference names of the form's ``delete_references`` field (whitespace or comma
    separated), for a delete submission."""
    return [name for name in re.split(r"[\s,]+", form.get("delete_references", "")) if name]


def field_problems(problems: list[str]) -> dict[str, list[str]]:
    """The form's problems ("field: reason") by form field, to show beside each field
    (``files[2]`` -> ``files``, ``redcat.history_updated`` -> ``history_updated``)."""
    by_field: dict[str, list[str]] = {}
    for problem in problems:
        field, sep, reason = problem.partition(": ")
        if not sep:
            continue
        field = re.sub(r"\[\d+\]$", "", field.strip()).removeprefix("redcat.")
        by_field.setdefault(field, []).append(reason)
    return by_field


def _render_form(values: Mapping[str, Any], problems: list[str], status: int = 200):
    return render_template("forms/submit.html", values=values, problems=problems,
                           field_problems=field_problems(problems), **_choices()), status


@bp.route("/submit", methods=["GET", "POST"])
@role_required("submit")
def form() -> Any:
    user = g.user
    if request.method == "GET":
        defaults = {"deliverer": user.full_name or user.name, "derive_from": "edit",
                    "change_level": "SEVERE", "kind": "batch", "auto_rename": "on"}
        return _render_form(defaults, [])
    values = request.form.to_dict()
    uploads = [f for f in request.files.getlist("files") if f and f.filename]
    problems: list[str] = []
    deleting = values.get("kind", "").strip().lower() == "delete"
    if deleting:  # CRDS's "delete references": names of references, nothing uploaded
        if uploads:
            problems.append("files: a delete submission uploads nothing; name the references "
                            "to delete under 'References to delete'")
        if not delete_names(values):
            problems.append("delete_references: name one or more references to delete")
    elif not uploads:
        problems.append("files: choose one or more files to submit")
    names = [u.filename or "" for u in uploads]
    for name in names:
        if not is_safe_name(name):
            problems.append(f"files: {name!r} is not a plain file name (letters, digits, "
                            f"'_.+-'; rename it before uploading)")
    for name in {n for n in names if names.count(n) > 1}:
        problems.append(f"files: {name!r} chosen twice")
    if problems:
        return _render_form(values, problems, 400)
    try:
        submission_id = _stage_and_drop(user, manifest_fields(values, user), uploads)
    except _Invalid as exc:
        return _render_form(values, exc.problems, exc.status)
    what = (f"{len(delete_names(values))} reference(s) to delete" if deleting
            else f"{len(uploads)} file(s)")
    flash(f"Submission {submission_id} uploaded ({what}); processing starts "
          f"when the server takes it.", "info")
    return redirect(url_for("submit.monitor", submission_id=submission_id))


class _Invalid(CrdsEventsError):
    def __init__(self, problems: list[str], status: int = 400):
        super().__init__("; ".join(problems))
        self.problems = problems
        self.status = status


def _stage_and_drop(user: users.User, fields: dict[str, Any], uploads: list) -> str:
    """Save the uploads in a private staging directory, validate the manifest there, then
    drop the submission into the user's ingest directory (`_Invalid` lists the problems)."""
    try:
        return drop_uploads(_settings(), user.name, uploads, fields,
                            staging_prefix=".web-upload-")
    except ManifestError as exc:
        raise _Invalid([f"{_field_label(field)}: {reason}"
                        for field, reason in exc.problems]) from None
    except ValueError as exc:
        raise _Invalid([f"cannot submit: {exc}"]) from None
    except OSError as exc:
        # the server's disk, not the form: say so without naming a server path
        _log.exception("web upload by %s could not be stored", user.name)
        raise _Invalid([f"cannot store the upload now ({exc.strerror or 'I/O error'}); "
                        f"try again later"], 503) from None


def _field_label(field: str) -> str:
    return "files" if field.startswith("files[") else field


# --- the monitor ---------------------------------------------------------------------------


def monitor_message(record: RecordedEvent, personal: bool = True) -> dict[str, Any] | None:
    """One event of a submission's stream as a monitor line (None: not shown).

    ``kind`` is ``progress`` for lines and ``done`` for the outcome (with ``state``).
    ``personal``: may the viewer see personal data (else those fields read "(hidden)").
    """
    event = visibility.visible_event(record, personal)
    message: dict[str, Any] = {"id": record.position, "time": record.recorded_at[:19],
                               "kind": "progress"}
    if isinstance(event, ev.SubmissionStarted):
        message["message"] = (f"submission started: {len(event.files)} file(s) for "
                              f"{event.instrument.upper()} from {event.deliverer}")
    elif isinstance(event, ev.SubmissionProgress):
        message["message"] = event.message
    elif isinstance(event, ev.FileCertified):
        message["message"] = f"certified {event.name}: {event.status}"
    elif record.type in _OUTCOMES:
        state = _OUTCOMES[record.type]
        message.update(kind="done", state=state, status=states.word(state))
        if isinstance(event, ev.SubmissionReady):
            message["message"] = (f"READY: {len(event.files)} file(s)"
                                  + (f", new context {event.new_context}"
                                     if event.new_context else ""))
            message["new_context"] = event.new_context
        elif isinstance(event, ev.SubmissionRejected):
            message["message"] = f"BAD FILES: {event.reason}"
        elif isinstance(event, ev.SubmissionFailed):
            message["message"] = f"FAIL: {event.error}"
        elif isinstance(event, ev.SubmissionCancelled):
            message["message"] = f"CANCELLED by {event.by}" + (
                f": {event.reason}" if event.reason else "")
        else:
            message["message"] = f"{states.word(state)} by {event.by}: edit context " \
                                 f"{event.new_context}"
    else:
        return None
    return message


def _messages(store: EventReader, submission_id: str, after: int = 0,
              personal: bool = True) -> list[dict[str, Any]]:
    records = store.read_all(after, streams=[ev.submission_stream(submission_id)])
    return [m for m in (monitor_message(r, personal) for r in records) if m is not None]


def _check_id(submission_id: str) -> str:
    if len(submission_id) > 100 or not is_safe_name(submission_id):
        abort(404, f"submission {submission_id!r}: not a submission id")
    return submission_id


@bp.route("/submissions/<submission_id>/monitor")
@role_required("view_personal")  # a submission's content is personal (the issue-14 policy)
def monitor(submission_id: str) -> Any:
    _check_id(submission_id)
    messages = _messages(log(), submission_id, personal=visibility.may_see_personal())
    done = next((m for m in messages if m["kind"] == "done"), None)
    return render_template("forms/monitor.html", submission_id=submission_id,
                           messages=messages, done=done,
                           cursor=messages[-1]["id"] if messages else 0)


def _sse(message: dict[str, Any]) -> str:
    data = json.dumps(message, separators=(",", ":"))
    return f"id: {message['id']}\nevent: {message['kind']}\ndata: {data}\n\n"


def _cursor() -> int:
    raw = request.headers.get("Last-Event-ID") or request.args.get("after") or "0"
    try:
        value = max(0, int(raw)) if len(raw) <= 25 else -1
    except ValueError:
        value = -1
    if not 0 <= value <= SQLITE_MAX_INT:  # beyond SQLite's integers: an OverflowError later
        abort(400, f"Last-Event-ID / after: {raw[:40]!r} is not an event position")
    return value


@bp.route("/submissions/<submission_id>/events")
@role_required("view_personal")
def events(submission_id: str) -> Response:
    """Server-sent events: the submission's lines after the cursor, then its outcome."""
    _check_id(submission_id)
    store = _store()
    after = _cursor()
    # decided now: the generator runs after the request context is gone
    personal = visibility.may_see_personal()
    # set by the web server when it stops (if it offers one): open streams end at once
    stopping = getattr(get_state(), "stopping", None)
    try:  # a client may ask for a shorter stream (never a longer one)
        asked = float(request.args.get("max", STREAM_SECONDS))
    except ValueError:
        asked = math.nan
    if not math.isfinite(asked):  # nan would compare false forever: no deadline at all
        abort(400, f"max: {request.args['max'][:40]!r} is not a number of seconds")
    stream_seconds = min(asked, STREAM_SECONDS)
    # waitress says when the client has gone (a closed monitor tab): end, free the slot
    gone = request.environ.get("waitress.client_disconnected") or (lambda: False)
    try:  # last: nothing may fail between taking a slot and handing it to the response
        slot = get_state().streams.acquire(g.user.name)
    except StreamBudgetExceeded as exc:
        return Response(f"{exc}\n", status=429, mimetype="text/plain",
                        headers={"Retry-After": str(RETRY_AFTER)})

    def generate() -> Iterator[str]:
        try:
            cursor = after
            deadline = time.monotonic() + stream_seconds
            beat = time.monotonic() + _HEARTBEAT
            yield "retry: 1000\n\n"
            while True:
                for message in _messages(store, submission_id, cursor, personal):
                    cursor = message["id"]
                    yield _sse(message)
                    if message["kind"] == "done":
                        return
                now = time.monotonic()
                if (now >= deadline or (stopping is not None and stopping.is_set())
                        or gone()):
                    return
                if now >= beat:  # a comment: keeps proxies open, notices a gone client
                    beat = now + _HEARTBEAT
                    yield ": waiting\n\n"
                time.sleep(_POLL)
        finally:  # the stream ended (or the client went): the slot is free again
            slot.release()

    response = Response(generate(), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    response.call_on_close(slot.release)  # also when the generator never ran
    return response


# --- the result page -----------------------------------------------------------------------


def _show(submission_id: str) -> dict[str, Any]:
    try:
        return review.show(_settings(), log(), submission_id)
    except review.ReviewError as exc:
        abort(404, str(exc))


def allowed_actions(shown: Mapping[str, Any], user: users.User | None) -> list[str]:
    """The buttons to offer ``user`` (review re-checks everything when one is pressed)."""
    if user is None or shown["state"] != "ready":
        return []
    owner = shown["submitter"]
    actions = []
    if users.can(user, "confirm", owner=owner):
        actions.append("confirm")
    if user.name != owner and users.can(user, "force", owner=owner):
        actions.append("force")
    if users.can(user, "cancel", owner=owner):
        actions.append("cancel")
    return actions


def _delivery_of(submission_id: str) -> Any:
    """The newest delivery of a confirmed submission (None before it is requested)."""
    from crds_events.delivery.publish import delivery_states

    found = [info for info in delivery_states(log()).values()
             if info.submission_id == submission_id]
    found.sort(key=lambda i: (i.times.get("requested") or i.times.get("created", ""), i.name))
    return found[-1] if found else None


def _result_page(submission_id: str, status: int = 200, error: str = ""):
    shown = _show(submission_id)
    result = shown.get("result") or {}
    delivery = (_delivery_of(submission_id) if shown["state"] in ("confirmed", "forced")
                else None)
    return render_template("forms/result.html", s=shown, result=result,
                           v=result_view.review_view(shown), error=error,
                           delivery=delivery, delivery_steps=result_view.DELIVERY_STEPS,
                           actions=allowed_actions(shown, g.user)), status


@bp.route("/submissions/<submission_id>")
@role_required("view_personal")
def result(submission_id: str) -> Any:
    return _result_page(_check_id(submission_id))


@bp.route("/submissions/<submission_id>.json")
@role_required("view_personal")
def result_json(submission_id: str) -> Any:
    shown = _show(_check_id(submission_id))
    shown = {k: v for k, v in shown.items() if k != "result"} | {
        "result": {k: v for k, v in (shown.get("result") or {}).items()
                   if k not in ("outputs", "traceback")}}
    return jsonify(shown)


@bp.route("/submissions/<submission_id>/delivery.json")
@role_required("view_personal")
def delivery_json(submission_id: str) -> Any:
    """The delivery of a confirmed submission, for the result page's live progress."""
    _check_id(submission_id)
    info = _delivery_of(submission_id)
    if info is None:
        return jsonify(delivery=None, steps=[])
    return jsonify(delivery=info.name, state=info.state, reason=info.reason,
                   steps=[{"step": step, "text": text, "at": info.times.get(step, "")}
                          for step, text in result_view.DELIVERY_STEPS])


_QUESTIONS = {
    "confirm": "Confirm this submission? Its files go to the archive and {new} becomes the "
               "edit context.",
    "force": "Force this submission on {submitter}'s behalf? Its files go to the archive "
             "and {new} becomes the edit context.",
    "cancel": "Cancel this submission? Nothing from it will be delivered.",
}


@bp.route("/submissions/<submission_id>/<action>", methods=["GET"])
@role_required("submit")
def decide_form(submission_id: str, action: str) -> Any:
    """The confirmation step: what pressing the button will do, and the button."""
    _check_id(submission_id)
    if action not in _QUESTIONS:
        abort(404, f"unknown action {action!r}: confirm, force or cancel")
    shown = _show(submission_id)
    if action not in allowed_actions(shown, g.user):
        return _result_page(submission_id, 409, error=(
            f"submission {submission_id} is {states.word(shown['state'])}: you cannot "
            f"{action} it now"))
    question = _QUESTIONS[action].format(new=shown["new_context"] or "(no new context)",
                                         submitter=shown["submitter"])
    return render_template("forms/decide.html", s=shown, action=action, question=question,
                           v=result_view.review_view(shown))


@bp.route("/submissions/<submission_id>/<action>", methods=["POST"])
@role_required("submit")
def decide(submission_id: str, action: str) -> Any:
    _check_id(submission_id)
    if action not in ("confirm", "force", "cancel"):
        abort(404, f"unknown action {action!r}: confirm, force or cancel")
    settings, store = _settings(), _store()
    try:
        if action == "cancel":
            reason = request.form.get("reason", "").strip()
            review.cancel(settings, store, submission_id, g.user.name, reason)
            flash(f"Submission {submission_id} cancelled.", "info")
        else:
            decision = getattr(review, action)(settings, store, submission_id, g.user.name)
            done = {"confirm": "confirmed", "force": "forced"}[action]
            flash(f"Submission {submission_id} {done} by {g.user.name}: new edit context "
                  f"{decision.new_context or '(none)'}.", "info")
    except review.ReviewError as exc:
        if "no such submission" in str(exc):
            abort(404, str(exc))
        return _result_page(submission_id, 409, error=str(exc))
    return redirect(url_for("submit.result", submission_id=submission_id))


def register(app: Flask) -> None:
    app.register_blueprint(bp)


# Once per blueprint (at import): a blueprint may be registered on several apps.
register_error_pages(bp)
