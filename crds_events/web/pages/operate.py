"""Operating the server from the browser: what happened, and the operator's levers.

Read pages (any logged-in user), each with a ``.json`` twin:

* ``/submissions/``: submission history (the ``submissions`` fold replayed from the log);
* ``/operate/deliveries``: each delivery's states with the time each was reached;
* ``/operate/pipelines``: remote contexts, commanded vs actual per pipeline;
* ``/operate/reprocessing``: affected datasets per context transition, with the id list
  as a download (``/reprocessing/<context>``: the transitions to one context);
* ``/operate/emails``: the outbox: e-mails queued, sent, retrying and failed, and those
  recorded as not sent (no recipients).

Levers (the domain functions check the role again; the pages only hide what is refused):

* ``/operate/context``: set a context pointer (operators: `crds_events.contexts.pointers`);
* ``/operate/bad-files``: mark files bad or OK again (admins: `crds_events.contexts.badfiles`).

A refused or invalid change answers 400 with the reason and records nothing.
"""

from __future__ import annotations

import re
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
from crds_events.store.folds import SUBMISSIONS, replay
from crds_events.submissions import states
from crds_events.web import get_state, visibility
from crds_events.web.pages.auth import login_required, register_error_pages, role_required

__all__ = ["bp", "register", "submission_rows", "transitions"]

bp = Blueprint("operate", __name__)

HISTORY_LIMIT = 500
_PMAP = re.compile(r"^[a-z]+_\d{1,8}\.pmap$")


def _settings():
    return get_state().settings


def _store():
    """The writer: for changes (and reads that need its interface)."""
    return get_state().store


def _log():
    """The request's read-only view of the log: GET pages read here, never blocking (nor
    blocked by) the writer's lock."""
    from crds_events.web.pages.common import log

    return log()


def _wants_json() -> bool:
    return request.path.endswith(".json")


def _json_safe(rows: list[dict]) -> list[dict]:
    return [{k: list(v) if isinstance(v, tuple) else v for k, v in row.items()} for row in rows]


# --- submissions ---------------------------------------------------------------------------


def submission_rows(store, *, state: str = "", instrument: str = "",
                    limit: int = HISTORY_LIMIT) -> list[dict]:
    """Submissions newest first, folded from the log with the projection's own fold."""
    rows = replay(SUBMISSIONS, store.iter_all(types=SUBMISSIONS.consumes)).values()
    # STARTED covers "processing" too: one word, one filter
    wanted = {state, "processing"} if state == "started" else {state}
    chosen = [r for r in rows if (not state or r["state"] in wanted)
              and (not instrument or r["instrument"].lower() == instrument.lower())]
    chosen.sort(key=lambda r: (r["started_at"], r["position"]), reverse=True)
    return chosen[:limit]


@bp.route("/submissions/")
@bp.route("/submissions.json", endpoint="submissions_json")
@login_required
def submissions() -> Any:
    asked = request.args.get("state", "").strip()
    state = states.code_of(asked) if asked else ""
    if asked and not state:
        abort(400, f"state {asked[:40]!r}: one of "
                   f"{', '.join(states.word(c) for c in states.CODES)}")
    instrument = request.args.get("instrument", "").strip()
    rows = [visibility.redact_row(r, visibility.SUBMISSION_ROW_PERSONAL)
            | {"status": states.word(r["state"])}  # CRDS's word beside the code
            for r in submission_rows(_log(), state=state, instrument=instrument)]
    if _wants_json():
        return jsonify(submissions=_json_safe(rows))
    return render_template("forms/submissions.html", rows=rows, state=state,
                           instrument=instrument)


# --- deliveries ----------------------------------------------------------------------------

DELIVERY_STATES = ("requested", "created", "archiving", "failed", "archived")


@bp.route("/operate/deliveries")
@bp.route("/operate/deliveries.json", endpoint="deliveries_json")
@login_required
def deliveries() -> Any:
    from crds_events.delivery.publish import list_deliveries

    infos = list(reversed(list_deliveries(_store())))
    if _wants_json():
        return jsonify(deliveries=[info.to_json() for info in infos])
    return render_template("forms/deliveries.html", deliveries=infos, states=DELIVERY_STATES,
                           can_redeliver=users.can(g.user, "redeliver"))


# --- set context ---------------------------------------------------------------------------


def _context_page(status: int = 200, values: dict | None = None, error: str = ""):
    from crds_events.contexts.contents import file_rows
    from crds_events.contexts.pointers import KINDS, context_history, get_pointers

    store = _log()
    pointers = get_pointers(store, _settings().observatory)
    history = list(reversed(context_history(store, observatory=_settings().observatory)))[:20]
    can_set = users.can(g.user, "set_context")
    pmaps = []
    if can_set:
        pmaps = sorted((name for name, row in file_rows(_store()).items()
                        if name.endswith(".pmap")), reverse=True)[:200]
    if can_set and values is None:  # a fresh form: suggest the usual change
        values = suggested_change(_store(), pointers, request.args.get("context", "").strip())
    return render_template("forms/set_context.html", pointers=pointers, history=history,
                           kinds=KINDS, can_set=can_set, pmaps=pmaps, values=values or {},
                           error=error), status


def _serial(pmap: str) -> int:
    found = re.search(r"_(\d+)\.pmap$", pmap or "")
    return int(found.group(1)) if found else -1


def suggested_change(store, pointers: dict, context: str = "") -> dict[str, str]:
    """The set-context form's starting values: ``context`` (else the edit context when it
    is ahead of latest) made latest; when the change brings exactly one submission's work,
    the reason is that submission's description (CRDS's habit), else left to the operator."""
    from crds_events.contexts.contents import file_rows

    latest = (pointers.get("latest") or {}).get("context", "")
    target = context or (pointers.get("edit") or {}).get("context", "")
    if not target or target == latest or not _PMAP.match(target):
        return {"context": context} if context else {}
    values = {"kind": "latest", "context": target}
    low, high = _serial(latest), _serial(target)
    made = {row.get("submission_id") for name, row in file_rows(store).items()
            if name.endswith(".pmap") and low < _serial(name) <= high}
    made.discard("")
    made.discard(None)
    if len(made) == 1:
        sid = made.pop()
        started = next((r.event for r in store.read_stream(ev.submission_stream(sid))
                        if isinstance(r.event, ev.SubmissionStarted)), None)
        if started is not None and started.description:
            values["reason"] = started.description
    return values


@bp.route("/operate/context", methods=["GET"])
@login_required
def set_context() -> Any:
    return _context_page()


@bp.route("/operate/context", methods=["POST"])
@role_required("set_context")
def set_context_post() -> Any:
    from crds_events.contexts.pointers import ContextError, ContextPermissionError, set_context

    values = request.form.to_dict()
    kind = values.get("kind", "").strip()
    context = values.get("context", "").strip()
    reason = values.get("reason", "")
    calver = values.get("calver", "").strip() or None
    try:
        change = set_context(_settings(), _store(), kind, context, reason, g.user,
                             calver=calver)
    except ContextPermissionError as exc:
        abort(403, str(exc))
    except ContextError as exc:
        return _context_page(400, values, str(exc))
    if change.changed:
        was = f" (was {change.previous}, {change.direction})" if change.previous else ""
        flash(f"{kind} context set to {change.context}{was}.", "info")
    else:
        flash(f"{kind} context already is {change.context}: nothing changed.", "info")
    return redirect(url_for("operate.set_context"))


# --- bad files -----------------------------------------------------------------------------


def _bad_files_page(status: int = 200, values: dict | None = None, error: str = ""):
    from crds_events.contexts.badfiles import bad_file_rows

    return render_template("forms/bad_files.html", rows=bad_file_rows(_store()),
                           can_mark=users.can(g.user, "mark_bad"), values=values or {},
                           error=error), status


@bp.route("/operate/bad-files", methods=["GET"])
@login_required
def bad_files() -> Any:
    return _bad_files_page()


@bp.route("/operate/bad-files", methods=["POST"])
@role_required("mark_bad")
def bad_files_post() -> Any:
    from crds_events.contexts.badfiles import (
        BadFilesError,
        BadFilesPermissionError,
        mark_bad,
        mark_ok,
    )

    values = request.form.to_dict()
    names = [n for n in re.split(r"[\s,]+", values.get("files", "")) if n]
    action = values.get("action", "")
    if action not in ("bad", "ok"):
        return _bad_files_page(400, values, f"action {action!r}: choose 'bad' or 'ok'")
    if not names:
        return _bad_files_page(400, values, "files: name one or more cataloged files")
    try:
        if action == "bad":
            result = mark_bad(_settings(), _store(), names, values.get("reason", ""), g.user)
            extra = (f"; blacklisted {', '.join(result.blacklisted)}"
                     if result.blacklisted else "")
        else:
            result = mark_ok(_settings(), _store(), names, g.user, values.get("reason", ""))
            extra = (f"; no longer blacklisted: {', '.join(result.unblacklisted)}"
                     if result.unblacklisted else "")
    except BadFilesPermissionError as exc:
        abort(403, str(exc))
    except BadFilesError as exc:
        return _bad_files_page(400, values, str(exc))
    done = ", ".join(result.marked) or "nothing"
    same = f" (already so: {', '.join(result.unchanged)})" if result.unchanged else ""
    flash(f"Marked {action.upper()}: {done}{same}{extra}.", "info")
    return redirect(url_for("operate.bad_files"))


# --- remote contexts -----------------------------------------------------------------------


@bp.route("/operate/pipelines")
@bp.route("/operate/pipelines.json", endpoint="pipelines_json")
@login_required
def pipelines() -> Any:
    from crds_events.contexts.contents import file_rows
    from crds_events.contexts.pointers import get_context
    from crds_events.contexts.remote import remote_contexts

    observatory = _settings().observatory
    rows = remote_contexts(_log(), observatory)
    commanded = get_context(_log(), "latest", observatory)
    if _wants_json():
        return jsonify(commanded=commanded, pipelines=rows)
    # how old the context each pipeline runs is: when that context was cataloged
    catalog = file_rows(_store()) if rows else {}
    made = {row["actual"]: (catalog.get(row.get("actual") or "") or {}).get("created_at", "")
            for row in rows}
    return render_template("forms/pipelines.html", rows=rows, commanded=commanded,
                           made=made)


# --- reprocessing --------------------------------------------------------------------------


def transitions(store, observatory: str) -> list[dict]:
    """One row per context transition with affected datasets computed, newest first, with
    its hold / release state (the log's reprocessing stream)."""
    rows: dict[tuple[str, str], dict] = {}
    held: dict[str, dict] = {}
    for record in store.read_stream(ev.reprocessing_stream(observatory)):
        event = record.event
        if isinstance(event, ev.AffectedDatasetsComputed):
            rows[(event.old_context, event.new_context)] = {
                "old_context": event.old_context, "new_context": event.new_context,
                "count": event.count, "candidates": event.candidates,
                "by_instrument": dict(event.by_instrument), "by_type": dict(event.by_type),
                "errors": dict(event.errors), "computed_at": record.recorded_at,
                "position": record.position, "ids_digest": event.ids_digest,
            }
        elif isinstance(event, ev.ReprocessingHeld):
            held[event.new_context] = {"state": "held", "pipeline": event.pipeline,
                                       "reason": event.reason, "at": record.recorded_at}
        elif isinstance(event, ev.ReprocessingReleased):
            held[event.new_context] = {"state": "released", "pipeline": event.pipeline,
                                       "reason": f"pipeline {event.pipeline} pushed "
                                                 f"{event.pushed_context or event.new_context}",
                                       "at": record.recorded_at}
    result = []
    for row in rows.values():
        row["release"] = held.get(row["new_context"], {"state": "", "pipeline": "",
                                                       "reason": "", "at": ""})
        result.append(row)
    result.sort(key=lambda r: r["position"], reverse=True)
    return result


@bp.route("/operate/reprocessing")
@bp.route("/operate/reprocessing.json", endpoint="reprocessing_json")
@login_required
def reprocessing() -> Any:
    rows = transitions(_log(), _settings().observatory)
    if _wants_json():
        return jsonify(transitions=rows)
    return render_template("forms/reprocessing.html", rows=rows)


@bp.route("/reprocessing/<context>")
@login_required
def reprocessing_for(context: str) -> Any:
    """The transitions to ``context`` (the page the DPAS and overdue e-mails link to)."""
    if not _PMAP.match(context):
        abort(404, f"{context[:80]!r}: not a context name")
    rows = [r for r in transitions(_log(), _settings().observatory)
            if r["new_context"] == context]
    return render_template("forms/reprocessing.html", rows=rows)


@bp.route("/operate/reprocessing/<old>/<new>/ids.txt")
@login_required
def affected_ids(old: str, new: str) -> Response:
    from crds_events.reprocessing.results import affected_ids as stored_ids

    for name in (old, new):
        if not _PMAP.match(name):
            abort(404, f"{name!r}: not a context name")
    from crds_events.store.artifacts import ArtifactError

    try:
        ids = stored_ids(_settings(), _store(), old, new)
    except ArtifactError:  # its message names a server path: say what is wrong, not where
        abort(404, f"the affected dataset ids of {old} -> {new} are recorded but their "
                   f"artifact is missing or damaged")
    if ids is None:
        abort(404, f"no affected datasets computed for {old} -> {new}")
    filename = f"affected_{old.removesuffix('.pmap')}_{new.removesuffix('.pmap')}.txt"
    return Response("".join(f"{i}\n" for i in ids), mimetype="text/plain",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


# --- e-mails -------------------------------------------------------------------------------

EMAIL_STATES = ("queued", "retrying", "sent", "failed", "unsent")  # unsent: no recipients


@bp.route("/operate/emails")
@bp.route("/operate/emails.json", endpoint="emails_json")
@login_required
def emails() -> Any:
    from crds_events.mail.outbox import outbox_rows
    from crds_events.web.pages.common import choice_arg

    state = choice_arg("state", EMAIL_STATES)
    rows = [visibility.redact_row(r, visibility.EMAIL_ROW_PERSONAL)
            for r in outbox_rows(_log(), states=[state] if state else None)[:HISTORY_LIMIT]]
    if _wants_json():
        return jsonify(emails=_json_safe(rows))
    return render_template("forms/emails.html", rows=rows, state=state, states=EMAIL_STATES)


def register(app: Flask) -> None:
    app.register_blueprint(bp)


# Once per blueprint (at import): a blueprint may be registered on several apps.
register_error_pages(bp)
