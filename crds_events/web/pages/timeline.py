"""The event timeline: every event newest first, keyset paging, filters, time travel.

``/events`` pages by position (``?before=N``: the page of events older than N), so the
1,000,000th event costs what the first does. Filters: stream, type, actor, since, until
(dates become position bounds by binary search: positions are in recorded order).
``/events/<N>`` shows one event's payload; ``/streams/<stream>`` one stream's timeline;
``/asof/<N>`` the contexts, catalog states and deliveries as they were right after event
N, folded with the projection folds themselves from indexed reads (`crds_events.store.asof`).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections import Counter
from typing import Any

from flask import Blueprint, abort, redirect, render_template, request, url_for

from crds_events.contexts.pointers import get_pointers
from crds_events.store import asof as store_asof
from crds_events.store.folds import CONTEXT_POINTERS
from crds_events.web import visibility
from crds_events.web.pages import common
from crds_events.web.pages.keepinput import keeps_input
from crds_events.web.visibility import event_json

__all__ = ["bp", "event_json"]

bp = Blueprint("timeline", __name__)

_ASOF_ROWS = 200


def _filters() -> tuple[dict[str, Any], dict[str, str]]:
    """The timeline's filters from the query: (keywords of `LogReader.newest`, as shown)."""
    query: dict[str, Any] = {}
    shown: dict[str, str] = {}
    for name in ("stream", "type", "actor"):
        value = request.args.get(name, "").strip()
        if not value:
            continue
        if len(value) > 200:
            abort(400, f"parameter {name!r}: longer than 200 characters")
        shown[name] = value
        if name == "stream" and value.endswith("*"):
            query["stream_prefix"] = value[:-1]
        else:
            query[name] = value
    since, until = common.date_arg("since"), common.date_arg("until")
    if since:
        shown["since"] = request.args["since"]
        query["since"] = common.log().first_position_since(since)
    if until:
        shown["until"] = request.args["until"]
        query["until"] = common.log().last_position_until(until)
    return query, shown


@bp.route("/events")
@bp.route("/events.json", endpoint="events_json")
@keeps_input("events.html", records=[], next_url=None, title="Events")
def events():
    before = common.int_arg("before", None, minimum=1)
    limit = common.int_arg("limit", common.PAGE_SIZE, minimum=1, maximum=500)
    query, shown = _filters()
    records = common.log().newest(limit + 1, before=before, **query)
    more = len(records) > limit
    # what the viewer may see of each event (secrets never, personal data if allowed)
    records = [visibility.visible_record(r) for r in records[:limit]]
    next_before = records[-1].position if more else None
    data = {"events": [event_json(r) for r in records], "filters": shown,
            "next_before": next_before, "head": common.head()}
    next_url = (url_for(request.endpoint, **{**shown, "before": next_before, "limit": limit})
                if next_before else None)
    return common.respond("events.html", data, records=records, next_url=next_url,
                          title="Events")


@bp.route("/events/<int:position>")
@bp.route("/events/<int:position>.json", endpoint="event_json_view")
def event(position: int):
    record = common.log().get(position)
    if record is None:
        abort(404, f"event {position}: no such position in the log")
    record = visibility.visible_record(record)
    data = {"event": event_json(record)}
    return common.respond("event.html", data, record=record,
                          payload=json.dumps(record.data, indent=2, ensure_ascii=False),
                          meta=json.dumps(record.meta, indent=2, ensure_ascii=False))


@bp.route("/streams/<path:stream>")
def stream(stream: str):
    json_twin = False
    if stream.endswith(".json") and not _has_events(stream) and _has_events(stream[:-5]):
        json_twin, stream = True, stream[:-5]
    before = common.int_arg("before", None, minimum=1)
    limit = common.int_arg("limit", common.PAGE_SIZE, minimum=1, maximum=500)
    records = common.log().newest(limit + 1, before=before, stream=stream)
    if not records and before is None:
        abort(404, f"stream {stream!r}: no events")
    more = len(records) > limit
    records = [visibility.visible_record(r) for r in records[:limit]]
    next_before = records[-1].position if more else None
    data = {"stream": stream, "events": [event_json(r) for r in records],
            "next_before": next_before}
    next_url = (url_for("timeline.stream", stream=stream, before=next_before, limit=limit)
                if next_before else None)
    if json_twin:
        return data
    return common.respond("events.html", data, records=records, next_url=next_url,
                          filters={}, title=f"Stream {stream}")


def _has_events(stream: str) -> bool:
    return common.log().stream_version(stream) > 0


# --- as of event N ---------------------------------------------------------------------------
#
# Replaying the log up to N costs seconds on a large log, so the page folds only what it shows
# (`crds_events.store.asof`): a page of the catalog read in keyset order from the file-name
# index, the pointers, the recent deliveries. Counting the files by state needs every file's
# state at N: that is done when the catalog at N is small, or on request (``?counts=1``),
# not on every page.

COUNT_LIMIT = 20_000  # file events up to N below which the page counts files by state
_SCAN_BATCH = 1_000  # names whose state is read at a time for a state filter's page
_SCAN_LIMIT = 10_000  # names looked at per page of a state filter (then: "continue")


def _catalog_page(position: int, after: str, state_filter: str, limit: int
                  ) -> tuple[list[dict], str | None]:
    """(rows, next_after): the next page of the catalog as of ``position``, of one state if
    ``state_filter``. A state's names are found by reading states (`asof.file_states`) in keyset
    order, then only they are folded; after `_SCAN_LIMIT` names the page ends early and
    ``next_after`` continues the scan."""
    conn = common.get_db()
    if not state_filter:
        names = store_asof.catalog_names(conn, position, after, limit + 1)
        rows = store_asof.files_as_of(conn, names[:limit], position)
        return ([rows[n] for n in names[:limit]],
                names[limit - 1] if len(names) > limit else None)
    outcomes = store_asof.last_outcomes(conn, position)
    found: list[str] = []
    cursor, scanned = after, 0
    while scanned < _SCAN_LIMIT:
        states = store_asof.file_states(conn, position, cursor, _SCAN_BATCH, outcomes)
        for name, state in states:
            if state == state_filter:
                if len(found) == limit:
                    rows = store_asof.files_as_of(conn, found, position)
                    return [rows[n] for n in found], found[-1]
                found.append(name)
            cursor = name
        scanned += len(states)
        if len(states) < _SCAN_BATCH:
            cursor = None
            break
    rows = store_asof.files_as_of(conn, found, position)
    return [rows[n] for n in found], cursor


@bp.route("/asof")
def asof_jump():
    """The "as of" box: an event number, or a date (the last event recorded by then),
    sent to that as-of page. A bad entry shows the box again with the entry and why."""
    text = request.args.get("at", "").strip()[:40]
    head = common.head()
    error = ""
    if not text:
        error = "type an event number or a date (YYYY-MM-DD[THH:MM:SS])"
    elif text.isdigit():
        position = int(text)
        if position > head:
            error = f"event {position}: the log has {head} events"
    else:
        try:
            moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
        except ValueError:
            error = f"{text!r} is neither an event number nor a date (YYYY-MM-DD[THH:MM:SS])"
        else:
            when = (moment.strftime("%Y-%m-%d") if len(text) <= 10
                    else moment.strftime("%Y-%m-%dT%H:%M:%S"))
            position = common.log().last_position_until(when)
            if not position:
                error = f"no event was recorded by {text}"
    if error:
        return render_template("asof_jump.html", at=text, error=error, head=head,
                               title="As of"), 400
    return redirect(url_for("timeline.asof", position=position))


@bp.route("/asof/<int:position>")
@bp.route("/asof/<int:position>.json", endpoint="asof_json")
def asof(position: int):
    head = common.head()
    if position < 0 or position > head:
        abort(404, f"event {position}: the log has {head} events")
    state_filter = request.args.get("state", "").strip()
    after = request.args.get("after", "").strip()
    counts, total = None, None
    conn = common.get_db()
    if request.args.get("counts") or store_asof.small_catalog(conn, position, COUNT_LIMIT):
        states = common.cached(
            "asof_file_states", position,
            lambda: [s for _, s in store_asof.file_states(conn, position)], limit=4)
        counts = dict(sorted(Counter(states).items()))
        total = counts.get(state_filter, 0) if state_filter else len(states)
    files, next_after = _catalog_page(position, after, state_filter, _ASOF_ROWS)
    data = {
        "position": position, "head": head, "pointers": _pointers_as_of(position),
        "file_states": counts, "file_count": total,
        "files": [_plain(r) for r in files], "next_after": next_after,
        "deliveries": [_plain(r) for r in store_asof.deliveries_as_of(conn, position,
                                                                        _ASOF_ROWS)],
    }
    record = common.log().get(position) if position else None
    record = visibility.visible_record(record) if record is not None else None
    return common.respond("asof.html", data, record=record, limit=_ASOF_ROWS,
                          state_filter=state_filter, title=f"As of event {position}")


def _pointers_as_of(position: int) -> list[dict]:
    """The pointers' rows as of ``position``, by kind, as the projection table has them
    (the `CONTEXT_POINTERS` columns)."""
    rows = get_pointers(common.log(), as_of=position).values()
    return [{column: row[column] for column in CONTEXT_POINTERS.columns} for row in rows]


def _plain(row: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in row.items()}
