"""Home: the context pointers and the latest references per instrument and type."""

from __future__ import annotations

from flask import Blueprint
from werkzeug.exceptions import HTTPException

from crds_events.web.pages import common

bp = Blueprint("home", __name__)


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
    data = {"pointers": pointers, "latest_references": references, "problem": problem}
    return common.respond("home.html", data, title="Home")
