"""The one read layer between the event log and a web viewer.

Every page, ``.json`` twin, stream view, as-of view and server-sent event stream that shows
events, or rows derived from them, shows them through this module:

* `event_json` / `visible_record`: a recorded event as the current viewer may see it
  (`crds_events.events.visibility.redact`: secret fields never, personal fields only to
  viewers allowed them; the idempotency key, which may quote submission content, likewise);
* `visible_event`: the decoded event with the same fields withheld, for pages that compose
  text from events (the submission monitor);
* `redact_row`: a projection row's personal columns withheld (activity, submissions, e-mails).

Who may see personal data: a signed-in, enabled user whose role may ``view_personal``
(`crds_events.accounts.users.can`); anonymous visitors see what CRDS shows the public:
contexts, rules, files, deliveries and history.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from flask import g, has_request_context

from crds_events.accounts import users
from crds_events.events.registry import Event, decode
from crds_events.events.visibility import HIDDEN, redact
from crds_events.store.interface import RecordedEvent

__all__ = ["may_see_personal", "event_json", "visible_record", "visible_event",
           "visible_data", "redact_row", "SUBMISSION_ROW_PERSONAL", "EMAIL_ROW_PERSONAL"]

# Columns of the projection rows that carry personal data (derived from the personal fields
# of the events they fold: the manifest, progress and outcome texts, the e-mail headers).
SUBMISSION_ROW_PERSONAL = ("deliverer", "description", "uploaded", "message")
EMAIL_ROW_PERSONAL = ("message_id", "subject", "recipients", "last_error")


def may_see_personal(user: users.User | None = None) -> bool:
    """May ``user`` (default: the request's signed-in user) see personal data?"""
    if user is None and has_request_context():
        user = g.get("user")
    return users.can(user, "view_personal")


def visible_data(record: RecordedEvent, personal: bool | None = None) -> dict[str, Any]:
    """``record``'s payload as the viewer may see it."""
    if personal is None:
        personal = may_see_personal()
    return redact(record.type, record.data, personal=personal)


def visible_record(record: RecordedEvent, personal: bool | None = None) -> RecordedEvent:
    """A copy of ``record`` holding only what the viewer may see (for templates)."""
    if personal is None:
        personal = may_see_personal()
    return dataclasses.replace(
        record, data=redact(record.type, record.data, personal=personal),
        idempotency_key=record.idempotency_key if personal else None)


def event_json(record: RecordedEvent, personal: bool | None = None) -> dict[str, Any]:
    """The JSON form of ``record`` that pages and twins answer, for the current viewer."""
    return {"position": record.position, "stream": record.stream, "version": record.version,
            "type": record.type, "schema_version": record.schema_version,
            "data": visible_data(record, personal), "meta": dict(record.meta),
            "recorded_at": record.recorded_at}


def visible_event(record: RecordedEvent, personal: bool | None = None) -> Event:
    """``record.event`` with secret fields emptied and, unless allowed, personal ones
    withheld: the same types (a tuple stays a tuple), so code composing text from it works."""
    if personal is None:
        personal = may_see_personal()
    event = record.event
    hidden = set(event.secret_fields) | (set() if personal else set(event.personal_fields))
    if not hidden:
        return event
    data = event.to_data()
    for name in hidden:
        value = data[name]
        if name in event.secret_fields:
            data[name] = type(value)() if isinstance(value, str | tuple | dict) else None
        elif isinstance(value, str) and value:
            data[name] = HIDDEN
        elif isinstance(value, tuple | dict):
            data[name] = type(value)()
    return decode(event.type, event.schema_version, data)


def redact_row(row: Mapping[str, Any], columns: Iterable[str],
               personal: bool | None = None) -> dict[str, Any]:
    """``row`` with its personal ``columns`` withheld unless the viewer may see them."""
    if personal is None:
        personal = may_see_personal()
    shown = dict(row)
    if personal:
        return shown
    for column in columns:
        value = shown.get(column)
        if isinstance(value, str) and value:
            shown[column] = HIDDEN
        elif isinstance(value, list | tuple | dict):
            shown[column] = type(value)()
    return shown
