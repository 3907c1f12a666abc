"""``/health`` (JSON) and ``/metrics`` (Prometheus text format) for monitoring.

Both read the log database through the request's read-only connection, so they work the
same in the server's own web app and in a gunicorn worker that only reads. Where the app
runs inside a server (`attach_server` was given its status), ``/health`` also lists the
server's components, says whether the handler thread is alive, and names the process that
leads (``"leader": {"process": "crds-events@host:pid", "self": ...}``: on a PostgreSQL log
only that one of several server processes runs the singletons; on SQLite, this one).

/health answers 200 with ``{"ok": true, ...}``, or 503 with ``"ok": false`` and the
``problems`` when the log cannot be read, a component is not running, or a handler is more
than ``HEALTH_MAX_LAG`` positions behind (app config; default 10,000). Its ``warnings`` list
what is not broken but probably not meant: no redcat or DPAS recipient configured
(`crds_events.mail.compose.recipient_warnings`; their e-mails are recorded as not sent).

/metrics (``text/plain; version=0.0.4``):

    crds_events_up                               1 when the log can be read
    crds_events_log_head                         position of the last event
    crds_events_events_total{type=...}           events in the log by type
    crds_events_handler_lag_positions{handler=}  head minus the handler's checkpoint
    crds_events_outbox_emails{state=...}         e-mails by outbox state (queued, retrying,
                                                 sent, failed, unsent: no recipients)
    crds_events_reprocessing_held                reprocessing results held for the pipeline
    crds_events_reprocessing_oldest_held_age_seconds
                                                 age of the oldest held one (0 when none)
    crds_events_component_running{component=}    1 per running server component (in-server)
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime

from flask import Blueprint, Flask, Response, current_app, jsonify

from crds_events.mail.compose import recipient_warnings
from crds_events.store import log_target
from crds_events.store.postgres import redact_url
from crds_events.store.reader import LogReader
from crds_events.web import get_db, get_state

__all__ = ["ServerStatus", "bp", "attach_server", "collect", "render_metrics"]

bp = Blueprint("health", __name__)

SERVER_KEY = "crds_events.server_status"
DEFAULT_MAX_LAG = 10_000
OUTBOX_STATES = ("queued", "retrying", "sent", "failed", "unsent")


@dataclasses.dataclass(frozen=True)
class ServerStatus:
    """What a running server tells /health about itself."""

    components: dict[str, bool]  # started components, in start order -> alive
    handlers: tuple[str, ...]  # the handlers its runner runs (each has a lag, run yet or not)
    # who runs the singletons: {"process": "crds-events@host:pid" or None, "self": bool,
    # "since": time.time() elected or None} (`crds_events.server.leader.LeaderInfo`)
    leader: dict | None = None


def attach_server(app: Flask, status: Callable[[], ServerStatus]) -> None:
    """Let /health report the server's components: ``status`` is asked on each request
    (given where the server builds its app)."""
    app.extensions[SERVER_KEY] = status


def _table_exists(db: sqlite3.Connection, name: str) -> bool:
    from crds_events.store.dialect import dialect_of

    return dialect_of(db).table_exists(db, name)


def _age_seconds(stamp: str, now: float) -> float:
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, now - when.timestamp())


def collect(db: sqlite3.Connection, server: ServerStatus | None = None,
            now: float | None = None) -> dict:
    """Everything /health and /metrics report, read from the database `db` (and the
    server's own `ServerStatus`, in a server)."""
    now = time.time() if now is None else now
    log = LogReader(db)
    head = log.head()
    by_type = log.count_by_type()
    lag = {}
    if _table_exists(db, "_checkpoints"):
        lag = {name: max(0, head - position) for name, position in
               db.execute("SELECT handler, position FROM _checkpoints ORDER BY handler")}
    if server is not None:  # a handler that has not checkpointed yet is the whole log behind
        for handler in server.handlers:
            lag.setdefault(handler, head)
    outbox = dict.fromkeys(OUTBOX_STATES, 0)
    if _table_exists(db, "emails"):
        outbox.update(db.execute("SELECT state, count(*) FROM emails GROUP BY state"))
    held, oldest = 0, 0.0
    if _table_exists(db, "repro_held"):
        stamps = [row[0] for row in db.execute("SELECT held_at FROM repro_held")]
        held = len(stamps)
        oldest = max((_age_seconds(stamp, now) for stamp in stamps), default=0.0)
    return {"head": head, "events_by_type": by_type, "handler_lag": lag, "outbox": outbox,
            "reprocessing_held": held, "oldest_held_age_seconds": round(oldest, 3),
            "components": dict(server.components) if server is not None else {},
            "leader": server.leader if server is not None else None}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_metrics(facts: dict, up: bool = True) -> str:
    """The Prometheus text exposition of `facts` (from `collect`)."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[dict, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            text = ",".join(f'{key}="{_escape(str(val))}"' for key, val in labels.items())
            lines.append(f"{name}{{{text}}} {value:g}" if text else f"{name} {value:g}")

    metric("crds_events_up", "gauge", "1 when the event log can be read.", [({}, 1 if up else 0)])
    if up:
        metric("crds_events_log_head", "gauge", "Position of the last event in the log.",
               [({}, facts["head"])])
        metric("crds_events_events_total", "counter", "Events in the log, by type.",
               [({"type": t}, n) for t, n in facts["events_by_type"].items()])
        metric("crds_events_handler_lag_positions", "gauge",
               "Log positions a handler is behind the head.",
               [({"handler": h}, n) for h, n in facts["handler_lag"].items()])
        metric("crds_events_outbox_emails", "gauge", "E-mails in the outbox, by state.",
               [({"state": s}, n) for s, n in facts["outbox"].items()])
        metric("crds_events_reprocessing_held", "gauge",
               "Reprocessing results held until the pipeline pushes the new context.",
               [({}, facts["reprocessing_held"])])
        metric("crds_events_reprocessing_oldest_held_age_seconds", "gauge",
               "Age of the oldest held reprocessing result (0 when none).",
               [({}, facts["oldest_held_age_seconds"])])
        if facts["components"]:
            metric("crds_events_component_running", "gauge", "1 per running server component.",
                   [({"component": c}, 1 if ok else 0) for c, ok in facts["components"].items()])
    return "\n".join(lines) + "\n"


def _server() -> ServerStatus | None:
    status = current_app.extensions.get(SERVER_KEY)
    return status() if status is not None else None


@bp.route("/health")
def health():
    settings = get_state().settings
    try:
        facts = collect(get_db(), _server())
    except sqlite3.Error as exc:  # PostgreSQL's errors too (`store.dialect.DatabaseError`)
        where = log_target(settings)
        where = redact_url(where) if isinstance(where, str) else where
        return jsonify({"ok": False, "problems": [f"event log {where}: {exc}"],
                        "warnings": recipient_warnings(settings),
                        "observatory": settings.observatory}), 503
    problems = [f"component {name} is not running"
                for name, running in facts["components"].items() if not running]
    max_lag = int(current_app.config.get("HEALTH_MAX_LAG", DEFAULT_MAX_LAG))
    problems += [f"handler {name} is {lag} positions behind (limit {max_lag})"
                 for name, lag in facts["handler_lag"].items() if lag > max_lag]
    body = {"ok": not problems, "problems": problems,
            "warnings": recipient_warnings(settings), "observatory": settings.observatory,
            "log_head": facts["head"], "handler_lag": facts["handler_lag"],
            "components": facts["components"], "leader": facts["leader"],
            "outbox": facts["outbox"],
            "reprocessing_held": facts["reprocessing_held"]}
    return jsonify(body), 200 if not problems else 503


@bp.route("/metrics")
def metrics():
    try:
        text = render_metrics(collect(get_db(), _server()))
    except sqlite3.Error:
        text = render_metrics({}, up=False)
    return Response(text, mimetype="text/plain", content_type="text/plain; version=0.0.4; charset=utf-8")
