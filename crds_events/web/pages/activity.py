"""Recent activity: submissions, deliveries and context changes, newest first."""

from __future__ import annotations

from flask import Blueprint, abort, request

from crds_events.web import visibility
from crds_events.web.pages import common

bp = Blueprint("activity", __name__)

_WHAT = ("submissions", "deliveries", "contexts")


@bp.route("/activity")
@bp.route("/activity.json", endpoint="recent_json")
def recent():
    what = request.args.get("what", "").strip()
    if what and what not in _WHAT:
        abort(400, f"parameter 'what': {what!r} must be one of {', '.join(_WHAT)}")
    actor = request.args.get("actor", "").strip()
    instrument = request.args.get("instrument", "").strip()
    since = common.date_arg("since")
    limit = common.int_arg("limit", 50, minimum=1, maximum=500)
    items: list[dict] = []
    if what in ("", "submissions"):
        personal = visibility.may_see_personal()
        sql, params = "SELECT * FROM submissions WHERE 1 = 1", []
        if actor and personal:
            sql += " AND (actor = ? OR deliverer = ?)"
            params += [actor, actor]
        elif actor:  # the deliverer is personal: no filter on it that would reveal it
            sql += " AND actor = ?"
            params.append(actor)
        if instrument:
            sql += " AND lower(instrument) = lower(?)"  # COLLATE NOCASE, on both backends
            params.append(instrument)
        if since:
            sql += " AND updated_at >= ?"
            params.append(since)
        for row in common.rows(sql + " ORDER BY position DESC LIMIT ?", [*params, limit]):
            # the manifest (deliverer, description) is the submitter's: withheld from the
            # public, who still see that a submission happened, by which account, its state
            row = visibility.redact_row(row, visibility.SUBMISSION_ROW_PERSONAL, personal)
            items.append({"what": "submission", "position": row["position"],
                          "when": row["updated_at"], "actor": row["actor"] or row["deliverer"],
                          "subject": row["submission_id"], "state": row["state"],
                          "detail": row["description"], "instrument": row["instrument"],
                          "link": row["new_context"]})
    if what in ("", "deliveries") and not actor and not instrument:
        sql, params = "SELECT * FROM deliveries WHERE 1 = 1", []
        if since:
            sql += " AND updated_at >= ?"
            params.append(since)
        for row in common.rows(sql + " ORDER BY position DESC LIMIT ?", [*params, limit]):
            items.append({"what": "delivery", "position": row["position"],
                          "when": row["updated_at"], "actor": "", "subject": row["name"],
                          "state": row["state"], "detail": row["reason"], "instrument": "",
                          "link": ""})
    if what in ("", "contexts") and not instrument:
        sql, params = "SELECT * FROM context_history WHERE 1 = 1", []
        if actor:
            sql += " AND actor = ?"
            params.append(actor)
        if since:
            sql += " AND recorded_at >= ?"
            params.append(since)
        for row in common.rows(sql + " ORDER BY position DESC LIMIT ?", [*params, limit]):
            items.append({"what": "context", "position": row["position"],
                          "when": row["recorded_at"], "actor": row["actor"],
                          "subject": row["kind"], "state": row["context"],
                          "detail": row["description"], "instrument": "",
                          "link": row["context"]})
    items.sort(key=lambda item: item["position"] or 0, reverse=True)
    filters = {k: v for k, v in (("what", what), ("actor", actor), ("instrument", instrument),
                                 ("since", request.args.get("since", "").strip())) if v}
    data = {"activity": items[:limit], "filters": filters}
    return common.respond("activity.html", data, kinds=_WHAT, title="Recent activity")
