"""One delivery's page and the operators' Redeliver lever.

* ``/deliveries/<name>`` (and ``.json``; any logged-in user): the delivery's state, files,
  submission, problems, the archive's reason for a failure, the redelivery links both ways,
  and its history (every event of its stream). The DELIVERY FAILED e-mail links here.
* ``POST /deliveries/<name>/redeliver`` (operators and admins; CSRF-checked like every
  form): `crds_events.delivery.redeliver.redeliver`, a new ``.cat`` for the same files.
  Refusals answer with the reason and record nothing: 400 (not failed, bad reason),
  403 (role), 409 (already redelivered: names the redelivery and who did it).

The list of every delivery is ``/operate/deliveries`` (`crds_events.web.pages.operate`).
"""

from __future__ import annotations

import re
from typing import Any

from flask import (
    Blueprint,
    Flask,
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
from crds_events.delivery.publish import delivery_states
from crds_events.web import get_state
from crds_events.web.pages.auth import login_required, register_error_pages, role_required

__all__ = ["bp", "register"]

bp = Blueprint("deliveries", __name__)

_NAME = re.compile(r"^[a-z]+_\d{1,8}$")


def _log():
    from crds_events.web.pages.common import log

    return log()


def _history(name: str) -> list[dict]:
    rows = []
    for record in _log().read_stream(ev.delivery_stream(name)):
        data = {k: v for k, v in record.data.items() if k not in ("delivery", "files")}
        rows.append({"position": record.position, "type": record.type,
                     "recorded_at": record.recorded_at, "actor": record.actor or "",
                     "details": ", ".join(f"{k}={v}" for k, v in data.items() if v not in
                                          ("", (), [], None))})
    return rows


@bp.route("/deliveries/<name>")
@bp.route("/deliveries/<name>.json", endpoint="delivery_json")
@login_required
def delivery(name: str) -> Any:
    if not _NAME.match(name):
        abort(404, f"{name[:80]!r}: not a delivery name")
    info = delivery_states(_log(), [name]).get(name)
    if info is None:
        abort(404, f"no delivery {name}")
    history = _history(name)
    if request.path.endswith(".json"):
        return jsonify(delivery=info.to_json(), history=history)
    can_redeliver = (users.can(g.user, "redeliver") and info.state == "failed"
                     and not info.redelivered_as)
    return render_template("forms/delivery.html", d=info, history=history,
                           can_redeliver=can_redeliver)


@bp.route("/deliveries/<name>/redeliver", methods=["POST"])
@role_required("redeliver")
def redeliver(name: str) -> Any:
    from crds_events.delivery.redeliver import (
        RedeliveryConflictError,
        RedeliveryError,
        RedeliveryPermissionError,
        redeliver,
    )

    state = get_state()
    try:
        done = redeliver(state.settings, state.store, name, g.user,
                         request.form.get("reason", ""))
    except RedeliveryPermissionError as exc:
        abort(403, str(exc))
    except RedeliveryConflictError as exc:
        abort(409, str(exc))
    except RedeliveryError as exc:
        abort(400, str(exc))
    flash(f"Delivery {done.delivery} redelivered as {done.redelivery}: its .cat is written "
          f"by the delivery worker.", "info")
    return redirect(url_for("deliveries.delivery", name=done.redelivery))


def register(app: Flask) -> None:
    app.register_blueprint(bp)


register_error_pages(bp)
