"""``/plots``: the SVG plots, rendered once per log head position."""

from __future__ import annotations

from flask import Blueprint, Response, abort
from markupsafe import Markup

from crds_events.web import plots
from crds_events.web.pages import common

bp = Blueprint("plots", __name__)


def _data() -> dict:
    head = common.head()
    return common.cached("plot_data", head, lambda: plots.plot_data(common.log()), limit=2)


def render(name: str) -> str:
    if name not in plots.PLOTS:
        abort(404, f"plot {name!r}: one of {', '.join(plots.PLOTS)}")
    head = common.head()
    _title, function = plots.PLOTS[name]
    return common.cached("plot_svg", (name, head), lambda: function(_data()[name]), limit=16)


@bp.route("/plots")
@bp.route("/plots.json", endpoint="index_json")
def index():
    if common.wants_json():
        return _data()
    # matplotlib's own SVG (no user text is interpolated unescaped: labels are context
    # names, which are validated file names)
    svgs = [(name, title, Markup(render(name))) for name, (title, _) in plots.PLOTS.items()]
    return common.respond("plots.html", {}, svgs=svgs, title="Plots")


@bp.route("/plots/<name>.svg")
def svg(name: str):
    return Response(render(name), mimetype="image/svg+xml")
