"""Browse and search the files catalog (the ``files`` projection), paged by name."""

from __future__ import annotations

from flask import Blueprint, abort, request, url_for

from crds_events.store.dialect import dialect_of
from crds_events.web.pages import common
from crds_events.web.pages.keepinput import keeps_input

bp = Blueprint("catalog", __name__)

# Only files the store holds are public: an upload still in review, or refused (BAD FILES,
# FAIL, CANCELLED), is seen on its submission's result page, never in the catalog.
_STATES = ("confirmed", "delivered", "archived")
_COLUMNS = ("name", "kind", "instrument", "filekind", "useafter", "state", "available",
            "rejected", "blacklisted", "delivery", "created_at", "updated_at")


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@bp.route("/catalog")
@bp.route("/catalog.json", endpoint="search_json")
@keeps_input("catalog.html", files=[], states=_STATES, next_url=None, title="Catalog")
def search():
    args = {k: request.args.get(k, "").strip() for k in
            ("instrument", "type", "name", "state", "kind", "since", "until", "after")}
    for key, value in args.items():
        if len(value) > 200:
            abort(400, f"parameter {key!r}: longer than 200 characters")
    if args["state"] and args["state"] not in (*_STATES, "bad"):
        abort(400, f"parameter 'state': {args['state']!r} must be one of "
                   f"{', '.join((*_STATES, 'bad'))}")
    if args["kind"] and args["kind"] not in ("reference", "mapping"):
        abort(400, "parameter 'kind': must be reference or mapping")
    since, until = common.date_arg("since"), common.date_arg("until")
    limit = common.int_arg("limit", 100, minimum=1, maximum=1000)
    clauses, params = [f"state IN ({', '.join(repr(s) for s in _STATES)})"], []
    if args["instrument"]:
        # lower() on both sides: SQLite's COLLATE NOCASE, in SQL PostgreSQL also runs
        clauses.append("lower(instrument) = lower(?)")
        params.append(args["instrument"])
    if args["type"]:
        clauses.append("lower(filekind) = lower(?)")
        params.append(args["type"])
    if args["name"]:
        clauses.append(f"name {dialect_of(common.get_db()).like_ci} ? ESCAPE '\\'")
        params.append(_like(args["name"]))
    if args["state"] == "bad":
        clauses.append("(rejected = 1 OR blacklisted = 1)")  # integer flags on both
    elif args["state"]:
        clauses.append("state = ?")
        params.append(args["state"])
    if args["kind"]:
        clauses.append("kind = ?")
        params.append(args["kind"])
    if since:
        clauses.append("created_at >= ?")
        params.append(since)
    if until:
        clauses.append("substr(created_at, 1, ?) <= ?")
        params.extend([len(until), until])
    if args["after"]:
        clauses.append("name > ?")
        params.append(args["after"])
    where = " AND ".join(clauses) or "1 = 1"
    found = common.rows(f"SELECT {', '.join(_COLUMNS)} FROM files WHERE {where} "
                        f"ORDER BY name LIMIT ?", [*params, limit + 1])
    more = len(found) > limit
    found = found[:limit]
    for row in found:
        for flag in ("available", "rejected", "blacklisted"):
            row[flag] = bool(row[flag])
    shown = {k: v for k, v in args.items() if v and k != "after"}
    next_after = found[-1]["name"] if more else None
    data = {"files": found, "filters": shown, "next_after": next_after}
    next_url = url_for("catalog.search", **shown, after=next_after, limit=limit) if more else None
    return common.respond("catalog.html", data, states=_STATES, next_url=next_url,
                          title="Catalog")
