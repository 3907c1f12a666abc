"""Home: the context pointers and the latest references per instrument and type."""

from __future__ import annotations

from flask import Blueprint
from werkzeug.exceptions import HTTPException

from crds_events.web.pages import common
from crds_events.web.pages.badness import bad_json

bp = Blueprint("home", __name__)

HOME_ROWS = 25  # rows of the latest-references table per page


@bp.route("/")
@bp.route("/index.json", endpoint="index_json")
def index():
    pointers = common.pointers()
    latest = pointers.get("latest", {}).get("context")
    references, problem = [], ""
    if latest:
        try:
            references = common.latest_references(latest)
        except HTTPException as exc:  # e.g. the latest pmap is not in this file store
            problem = f"{latest}: {exc.description}"
    # one page of the table (a real HST context has ~110 types): the JSON twin has them all
    page = common.int_arg("page", 1, minimum=1, maximum=10_000)
    pages = max(1, -(-len(references) // HOME_ROWS))
    if not common.wants_json():
        references = references[(page - 1) * HOME_ROWS:page * HOME_ROWS]
    data = {"pointers": pointers, "latest_references": references, "problem": problem,
            "page": page, "pages": pages,
            "bad": bad_json([p.get("context") for p in pointers.values()])}
    return common.respond("home.html", data, title="Home")
