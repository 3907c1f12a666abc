"""E-mails as sent, in the app: ``/emails/`` (list) and ``/emails/<id>`` (one message).

Each message is shown as the outbox sent it (`crds_events.mail.outbox.Outbox.message`): the
headers (From, To, Cc, Subject, Message-ID, the X-CRDS-Events ones), the body, and its
state - queued, retrying, sent, failed, or not sent (nobody to send it to) - with every
attempt and its error. Both have a ``.json`` twin.

E-mail bodies are private (the issue-14 secrets rule): anonymous visitors are sent to the
login page; operators and admins (``read_all_mail``) read every message; anyone else
reads only their own - sent to their address, or about a submission of theirs - and gets
403 for the others, whose existence the list does not show.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, abort, g, jsonify, render_template, request

from crds_events import events as ev
from crds_events.accounts import users
from crds_events.mail.outbox import outbox_rows
from crds_events.store.folds import EMAILS, replay
from crds_events.web import get_state
from crds_events.web.pages.auth import login_required, register_error_pages
from crds_events.web.pages.common import choice_arg, log

__all__ = ["bp", "register", "may_read", "message_view", "STATES"]

bp = Blueprint("mails", __name__)

STATES = ("queued", "retrying", "sent", "failed", "unsent")
_LIMIT = 500
_MAX_ID = 200


def _own_submissions(user: users.User) -> set[str]:
    """Streams (``submission:<id>``) of the submissions ``user`` started."""
    found = set()
    for record in log().iter_all(types=[ev.SubmissionStarted.type]):
        event = record.event
        if (event.user or record.actor) == user.name:
            found.add(ev.submission_stream(event.submission_id))
    return found


def may_read(user: users.User | None, recipients: tuple[str, ...] | list[str], about: str,
             own: set[str] | None = None) -> bool:
    """May ``user`` read an e-mail to ``recipients`` about stream ``about``?"""
    if user is None or not users.can(user, "view_personal"):
        return False
    if users.can(user, "read_all_mail"):
        return True
    address = (user.email or "").lower()
    if address and address in {r.lower() for r in recipients}:
        return True
    if about.startswith("submission:"):
        return about in (own if own is not None else _own_submissions(user))
    return False


@bp.route("/emails/")
@bp.route("/emails.json", endpoint="index_json")
@login_required
def index() -> Any:
    state = choice_arg("state", STATES)
    user = g.user
    everyone = users.can(user, "read_all_mail")
    own = None if everyone else _own_submissions(user)
    rows = [dict(r) for r in outbox_rows(log(), states=[state] if state else None)
            if everyone or may_read(user, r["recipients"], r["about"], own)][:_LIMIT]
    for row in rows:
        row["recipients"] = list(row["recipients"])
    if request.path.endswith(".json"):
        return jsonify(emails=rows, all=everyone)
    return render_template("forms/mails.html", rows=rows, state=state, states=STATES,
                           everyone=everyone)


def message_view(email_id: str) -> dict[str, Any] | None:
    """The e-mail as sent (headers, body, state, attempts), None when there is none."""
    records = log().read_stream(ev.email_stream(email_id))
    if not records:
        return None
    first = records[0].event
    row = replay(EMAILS, records).get((email_id,)) or {}
    settings = get_state().settings
    if isinstance(first, ev.EmailQueued):
        headers = [("From", settings.smtp_from), ("To", ", ".join(first.to))]
        if first.cc:
            headers.append(("Cc", ", ".join(first.cc)))
        headers += [("Subject", first.subject), ("Message-ID", first.message_id),
                    ("X-CRDS-Events-Kind", first.kind), ("X-CRDS-Events-About", first.about)]
        recipients = [*first.to, *first.cc]
        body = first.body
    elif isinstance(first, ev.EmailNotSent):
        headers = [("Subject", first.subject), ("X-CRDS-Events-Kind", first.kind),
                   ("X-CRDS-Events-About", first.about)]
        recipients, body = [], first.body
    else:
        return None
    attempts = []
    for record in records[1:]:
        event = record.event
        if isinstance(event, ev.EmailSent):
            attempts.append({"attempt": event.attempt, "at": record.recorded_at,
                             "outcome": "sent", "detail": (
                                 f"refused: {', '.join(event.refused)}" if event.refused
                                 else "accepted by the mail server")})
        elif isinstance(event, ev.EmailFailed):
            attempts.append({"attempt": event.attempt, "at": record.recorded_at,
                             "outcome": "will retry" if event.will_retry else "failed",
                             "detail": event.error})
    return {"email_id": email_id, "kind": first.kind, "about": first.about,
            "subject": first.subject, "recipients": recipients, "headers": headers,
            "body": body, "state": row.get("state", ""), "queued_at": records[0].recorded_at,
            "sent_at": row.get("sent_at", ""), "last_error": row.get("last_error", ""),
            "reason": getattr(first, "reason", ""), "attempts": attempts}


@bp.route("/emails/<email_id>")
@login_required
def message(email_id: str) -> Any:
    json_twin = email_id.endswith(".json")
    if json_twin:
        email_id = email_id[:-5]
    if not email_id or len(email_id) > _MAX_ID:
        abort(404, "not an e-mail id")
    view = message_view(email_id)
    if view is None:
        abort(404, f"e-mail {email_id[:80]!r}: no such e-mail")
    if not may_read(g.user, view["recipients"], view["about"]):
        abort(403, f"e-mail {email_id}: not sent to you nor about your submissions; "
                   f"operators read every e-mail")
    if json_twin:
        return jsonify(view)
    return render_template("forms/mail.html", m=view)


def register(app: Flask) -> None:
    app.register_blueprint(bp)


# Once per blueprint (at import): a blueprint may be registered on several apps.
register_error_pages(bp)
