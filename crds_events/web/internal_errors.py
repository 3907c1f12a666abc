"""The last resort: an uncaught exception becomes a plain 500 - no traceback, no server path.

Every bad input is meant to be refused earlier with a 4xx naming the field; whatever still
escapes is a bug. Flask has already logged it with its traceback (server side) when the
handler runs; the client gets only "internal error" and the time to quote to the operator
(JSON for ``.json`` twins and the upload API, a page otherwise).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from flask import Flask, render_template, request
from werkzeug.exceptions import InternalServerError

from crds_events.store.dialect import DatabaseUnavailable

__all__ = ["install", "MESSAGE", "UNAVAILABLE"]

log = logging.getLogger(__name__)

MESSAGE = "internal error: the server could not answer this request (the server log has the " \
          "details)"


def _internal_error(exc: InternalServerError) -> Any:
    original = getattr(exc, "original_exception", None)
    when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if original is not None:  # Flask logged the traceback; note what the client was told
        log.error("500 for %s %s at %s (%s)", request.method, request.path, when,
                  type(original).__name__)
    message = f"{MESSAGE}; at {when}"
    if request.path.endswith(".json") or request.path.startswith(("/upload/", "/json")):
        return {"error": message, "status": 500}, 500
    try:
        return render_template("error.html", code=500, name="Internal Server Error",
                               message=message), 500
    except Exception:  # noqa: BLE001 - the template itself may be what failed
        return message, 500, {"Content-Type": "text/plain; charset=utf-8"}


UNAVAILABLE = "the event log's database is unavailable; try again in a moment"


def _database_unavailable(exc: DatabaseUnavailable) -> Any:
    """A PostgreSQL log that cannot be reached (restarting, failing over, the network) is
    not a bug: 503, which clients and load balancers retry, and no 500 logged as one."""
    log.warning("503 for %s %s: %s", request.method, request.path, exc)
    if request.path.endswith(".json") or request.path.startswith(("/upload/", "/json")):
        return {"error": UNAVAILABLE, "status": 503}, 503, {"Retry-After": "5"}
    try:
        return render_template("error.html", code=503, name="Service Unavailable",
                               message=UNAVAILABLE), 503, {"Retry-After": "5"}
    except Exception:  # noqa: BLE001 - the template may need the database too
        return UNAVAILABLE, 503, {"Content-Type": "text/plain; charset=utf-8",
                                  "Retry-After": "5"}


def install(app: Flask) -> None:
    """Register the 500 handler on ``app`` (it sees every uncaught exception when Flask is
    not propagating them, i.e. whenever it is not under test), and the 503 of a database
    gone."""
    app.register_error_handler(InternalServerError, _internal_error)
    app.register_error_handler(DatabaseUnavailable, _database_unavailable)
