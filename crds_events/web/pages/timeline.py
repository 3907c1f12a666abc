"""The event timeline: every event newest first, keyset paging, filters, time travel.

``/events`` pages by position (``?before=N``: the page of events older than N), so the
1,000,000th event costs what the first does. Filters: stream, type, actor, since, until
(dates become position bounds by binary search: positions are in recorded order).
``/events/<N>`` shows one event's payload; ``/streams/<stream>`` one stream's timeline;
``/asof/<N>`` the contexts, catalog states and deliveries as they were right after event
N, folded with the projection folds themselves (`crds_events.store.folds.replay`).
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter

from flask import Blueprint, abort, request, url_for

from crds_events.store import folds
from crds_events.store.eventlog import _COLUMNS, _row_to_record
from crds_events.store.migrations import CONTEXT_POINTER_KEY, FILE_NAME_INDEX_WHERE
from crds_events.web.pages import common

bp = Blueprint("timeline", __name__)

_ASOF_ROWS = 200


def _position_at(when: str, side: str) -> int:
    """First position recorded at/after ``when`` (side='since') or last at/before
    (side='until'), by binary search on the primary key."""
    conn = common.get_db()
    lo, hi = 1, common.head()
    if side == "since":
        answer = hi + 1
        while lo <= hi:
            mid = (lo + hi) // 2
            row = conn.execute("SELECT recorded_at FROM events WHERE position = ?", (mid,)).fetchone()
            if row and row[0] >= when:
                answer, hi = mid, mid - 1
            else:
                lo = mid + 1
        return answer
    answer = 0
    while lo <= hi:
        mid = (lo + hi) // 2
        row = conn.execute("SELECT recorded_at FROM events WHERE position = ?", (mid,)).fetchone()
        # "until 2026-01-02" includes that whole day
        if row and row[0][:len(when)] <= when:
            answer, lo = mid, mid + 1
        else:
            hi = mid - 1
    return answer


def event_json(record) -> dict:
    return {"position": record.position, "stream": record.stream, "version": record.version,
            "type": record.type, "schema_version": record.schema_version,
            "data": record.data, "meta": record.meta, "recorded_at": record.recorded_at}


def _filters() -> tuple[list[str], list, dict]:
    clauses: list[str] = []
    params: list = []
    shown: dict[str, str] = {}
    for name in ("stream", "type", "actor"):
        value = request.args.get(name, "").strip()
        if not value:
            continue
        if len(value) > 200:
            abort(400, f"parameter {name!r}: longer than 200 characters")
        shown[name] = value
        if name == "actor":
            clauses.append("json_extract(meta, '$.actor') = ?")
        elif name == "stream" and value.endswith("*"):
            clauses.append("stream >= ? AND stream < ?")
            params.append(value[:-1])
            value = value[:-1] + "\U0010ffff"
        else:
            clauses.append(f"{name} = ?")
        params.append(value)
    since, until = common.date_arg("since"), common.date_arg("until")
    if since:
        shown["since"] = request.args["since"]
        clauses.append("position >= ?")
        params.append(_position_at(since, "since"))
    if until:
        shown["until"] = request.args["until"]
        clauses.append("position <= ?")
        params.append(_position_at(until, "until"))
    return clauses, params, shown


@bp.route("/events")
@bp.route("/events.json", endpoint="events_json")
def events():
    before = common.int_arg("before", None, minimum=1)
    limit = common.int_arg("limit", common.PAGE_SIZE, minimum=1, maximum=500)
    clauses, params, shown = _filters()
    records = common.log().newest(clauses, params, before, limit + 1)
    more = len(records) > limit
    records = records[:limit]
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
    records = common.log().newest(["stream = ?"], [stream], before, limit + 1)
    if not records and before is None:
        abort(404, f"stream {stream!r}: no events")
    more = len(records) > limit
    records = records[:limit]
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
    return common.get_db().execute("SELECT 1 FROM events WHERE stream = ? LIMIT 1",
                                   (stream,)).fetchone() is not None


# --- as of event N ---------------------------------------------------------------------------
#
# Replaying the log up to N costs seconds on a large log, so the page folds only what it shows,
# with the projection folds themselves: a fold row depends only on the events whose
# ``fold.keys`` name it, so folding exactly those events (up to N, in position order) gives
# the row a full replay would. The catalog's names at N are read in keyset order from the
# file-name index (store migration m004), so a page costs the same at any N and any depth.
# Counting the files by state needs every file's state at N: that is done when the catalog
# at N is small, or on request (``?counts=1``), not on every page.

_FILE_TYPES = tuple(sorted(folds.FILES.consumes))
# The state a FILES row takes from each event type (the fold's `_file_apply`): a row's state
# is that of the last such event of its file, since rows are created by FileCertified /
# FileCataloged, never removed, and ignore outcomes that come before them.
_STATE_OF = {
    "FileCertified": "submitted", "FileCataloged": "delivered", "FileReleased": "archived",
    "SubmissionConfirmed": "confirmed", "SubmissionForced": "confirmed",
    "SubmissionRejected": "cancelled", "SubmissionFailed": "cancelled",
    "SubmissionCancelled": "cancelled",
}
_CREATING = ("FileCertified", "FileCataloged")
_NAMED = ("FileCertified", "FileCataloged", "FileReleased", "FileMarkedBad", "FileMarkedOk")
# Events whose fold keys are lists in ``data`` (``files``, ``blacklisted``...): few, so they
# are scanned by type and filtered by key (mark bad / ok name one file *and* list others).
_LISTING = (*(t for t in _FILE_TYPES if t not in _NAMED), "FileMarkedBad", "FileMarkedOk")
if set(_STATE_OF) | set(_NAMED) != set(_FILE_TYPES):  # pragma: no cover - guards the fold
    raise RuntimeError("timeline: the FILES fold consumes event types the as-of page "
                       "does not know; update _STATE_OF / _NAMED")
_NAME = "json_extract(data, '$.name')"  # as in the events_file_name index
COUNT_LIMIT = 20_000  # file events up to N below which the page counts files by state
_SCAN_BATCH = 1_000  # names whose state is read at a time for a state filter's page
_SCAN_LIMIT = 10_000  # names looked at per page of a state filter (then: "continue")


def _in(values) -> str:
    return ",".join("?" * len(values))


def _execute(sql: str, params: list) -> list[tuple]:
    """``sql`` with ``INDEXED BY`` the as-of indexes of store migration m004 where it says
    ``{hint}`` (file names) or ``{pointer_hint}`` (the planner, without statistics, prefers
    the type index), or without them on a log not yet migrated."""
    conn = common.get_db()
    try:
        return conn.execute(sql.format(hint="INDEXED BY events_file_name",
                                       pointer_hint="INDEXED BY events_context_pointer"),
                            params).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such index" not in str(exc):
            raise
        return conn.execute(sql.format(hint="", pointer_hint=""), params).fetchall()


def _records(where: str, params: list) -> list:
    sql = f"SELECT {_COLUMNS} FROM events WHERE {where} ORDER BY position"
    return [_row_to_record(r) for r in common.get_db().execute(sql, params)]


def catalog_names(position: int, after: str, limit: int) -> list[str]:
    """The first ``limit`` names after ``after`` (by name) of the files that exist as of
    ``position`` (a FileCertified or FileCataloged event at or before it)."""
    rows = _execute(
        f"SELECT DISTINCT {_NAME} FROM events {{hint}} WHERE {FILE_NAME_INDEX_WHERE} "
        f"AND type IN ({_in(_CREATING)}) AND {_NAME} > ? AND position <= ? "
        f"ORDER BY {_NAME} LIMIT ?", [*_CREATING, after, position, limit])
    return [r[0] for r in rows]


def files_as_of(names: list[str], position: int) -> dict[str, dict]:
    """The FILES rows of ``names`` as of ``position``: the fold over just their events."""
    if not names:
        return {}
    wanted = set(names)
    found = {r.position: r for r in _records(
        f"{FILE_NAME_INDEX_WHERE} AND {_NAME} IN ({_in(names)}) AND position <= ?",
        [*names, position])}
    for record in _records(f"type IN ({_in(_LISTING)}) AND position <= ?",
                           [*_LISTING, position]):
        if any(key[0] in wanted for key in folds.FILES.keys(record)):
            found[record.position] = record
    state = folds.replay(folds.FILES, (found[p] for p in sorted(found)))
    return {n: state[(n,)] for n in names if (n,) in state}


def _last_outcomes(position: int) -> dict[str, tuple[int, str]]:
    """name -> (position, state) of the last submission outcome naming it, up to N."""
    outcomes = [t for t in _LISTING if t in _STATE_OF]
    last: dict[str, tuple[int, str]] = {}
    for record in _records(f"type IN ({_in(outcomes)}) AND position <= ?",
                           [*outcomes, position]):
        for (name,) in folds.FILES.keys(record):
            last[name] = (record.position, _STATE_OF[record.type])
    return last


def file_states(position: int, after: str = "", limit: int = -1,
                outcomes: dict | None = None) -> list[tuple[str, str]]:
    """(name, state) of the files of the catalog as of ``position``, by name, the first
    ``limit`` (-1: all) after ``after``: grouped from the file-name index, without folding
    (``outcomes``: `_last_outcomes` of ``position``, when the caller already has them)."""
    outcomes = _last_outcomes(position) if outcomes is None else outcomes
    state_types = [t for t in _NAMED if t in _STATE_OF]
    rows = _execute(
        f"SELECT {_NAME}, type, max(position) FROM events {{hint}} "
        f"WHERE {FILE_NAME_INDEX_WHERE} AND type IN ({_in(state_types)}) "
        f"AND {_NAME} > ? AND position <= ? GROUP BY {_NAME} "
        f"HAVING sum(type IN ({_in(_CREATING)})) > 0 ORDER BY {_NAME} LIMIT ?",
        [*state_types, after, position, *_CREATING, limit])
    found = []
    for name, type_, at in rows:
        outcome = outcomes.get(name)
        found.append((name, outcome[1] if outcome and outcome[0] > at else _STATE_OF[type_]))
    return found


def _small_catalog(position: int) -> bool:
    (count,) = _execute(
        f"SELECT count(*) FROM (SELECT 1 FROM events {{hint}} WHERE {FILE_NAME_INDEX_WHERE} "
        f"AND position <= ? LIMIT ?)", [position, COUNT_LIMIT + 1])[0]
    return count <= COUNT_LIMIT


# the key of the events_context_pointer index, spelled as there for the planner to use it
_OBSERVATORY, _POINTER = CONTEXT_POINTER_KEY


def _pointer_keys() -> list[tuple[str, str]]:
    """Every (observatory, kind) a ContextSet ever named: a skip scan of the pointer index
    (one seek per key; there are a handful)."""
    keys: list[tuple[str, str]] = []
    select = (f"SELECT {_OBSERVATORY}, {_POINTER} FROM events {{pointer_hint}} "
              "WHERE type = 'ContextSet' AND ")
    observatory, kind = "", None
    while True:
        row = None
        if kind is not None:
            row = _execute(select + f"{_OBSERVATORY} = ? AND {_POINTER} > ? "
                           f"ORDER BY {_POINTER} LIMIT 1", [observatory, kind])
        if not row:
            row = _execute(select + f"{_OBSERVATORY} > ? ORDER BY {_OBSERVATORY}, {_POINTER} "
                           "LIMIT 1", [observatory])
        if not row:
            return keys
        observatory, kind = row[0]
        keys.append((observatory, kind))


def pointers_as_of(position: int) -> list[dict]:
    """The context pointers as of ``position``. A pointer row is made by its last ContextSet
    from the one before (whose context is the default ``previous``), so folding each
    pointer's last two events up to N gives the row a full replay would."""
    tail: list[int] = []
    for observatory, kind in _pointer_keys():
        tail += [r[0] for r in _execute(
            f"SELECT position FROM events {{pointer_hint}} WHERE type = 'ContextSet' "
            f"AND {_OBSERVATORY} = ? AND {_POINTER} = ? AND position <= ? "
            "ORDER BY position DESC LIMIT 2", [observatory, kind, position])]
    records = _records(f"position IN ({_in(tail)})", tail) if tail else []
    state = folds.replay(folds.CONTEXT_POINTERS, records)
    return sorted(state.values(), key=lambda r: r["kind"])


def deliveries_as_of(position: int, limit: int) -> list[dict]:
    """The ``limit`` deliveries created last up to ``position`` (newest first), as of it."""
    fold = folds.DELIVERIES
    created: dict[str, int] = {}  # name -> position of its (last) DeliveryCreated
    for name, at in common.get_db().execute(  # newest first: read only as far as needed
            "SELECT json_extract(data, '$.delivery'), position FROM events "
            "WHERE type = 'DeliveryCreated' AND position <= ? ORDER BY position DESC",
            (position,)):
        created.setdefault(name, at)
        if len(created) == limit:
            break
    if not created:
        return []
    # a delivery's row starts at its DeliveryCreated (the fold ignores earlier events), so
    # only events from the oldest of these creations on can change these rows
    types = sorted(fold.consumes)
    names = list(created)
    records = [r for r in _records(
        f"type IN ({_in(types)}) AND position BETWEEN ? AND ? "
        f"AND json_extract(data, '$.delivery') IN ({_in(names)})",
        [*types, min(created.values()), position, *names])
        if any(key[0] in created for key in fold.keys(r))]
    state = folds.replay(fold, records)
    return [state[(n,)] for n in names if (n,) in state]


def _catalog_page(position: int, after: str, state_filter: str, limit: int
                  ) -> tuple[list[dict], str | None]:
    """(rows, next_after): the next page of the catalog as of ``position``, of one state if
    ``state_filter``. A state's names are found by reading states (`file_states`) in keyset
    order, then only they are folded; after `_SCAN_LIMIT` names the page ends early and
    ``next_after`` continues the scan."""
    if not state_filter:
        names = catalog_names(position, after, limit + 1)
        rows = files_as_of(names[:limit], position)
        return ([rows[n] for n in names[:limit]],
                names[limit - 1] if len(names) > limit else None)
    outcomes = _last_outcomes(position)
    found: list[str] = []
    cursor, scanned = after, 0
    while scanned < _SCAN_LIMIT:
        states = file_states(position, cursor, _SCAN_BATCH, outcomes)
        for name, state in states:
            if state == state_filter:
                if len(found) == limit:
                    rows = files_as_of(found, position)
                    return [rows[n] for n in found], found[-1]
                found.append(name)
            cursor = name
        scanned += len(states)
        if len(states) < _SCAN_BATCH:
            cursor = None
            break
    rows = files_as_of(found, position)
    return [rows[n] for n in found], cursor


@bp.route("/asof/<int:position>")
@bp.route("/asof/<int:position>.json", endpoint="asof_json")
def asof(position: int):
    head = common.head()
    if position < 0 or position > head:
        abort(404, f"event {position}: the log has {head} events")
    state_filter = request.args.get("state", "").strip()
    after = request.args.get("after", "").strip()
    counts, total = None, None
    if request.args.get("counts") or _small_catalog(position):
        states = common.cached("asof_file_states", position,
                               lambda: [s for _, s in file_states(position)], limit=4)
        counts = dict(sorted(Counter(states).items()))
        total = counts.get(state_filter, 0) if state_filter else len(states)
    files, next_after = _catalog_page(position, after, state_filter, _ASOF_ROWS)
    data = {
        "position": position, "head": head, "pointers": pointers_as_of(position),
        "file_states": counts, "file_count": total,
        "files": [_plain(r) for r in files], "next_after": next_after,
        "deliveries": [_plain(r) for r in deliveries_as_of(position, _ASOF_ROWS)],
    }
    record = common.log().get(position) if position else None
    return common.respond("asof.html", data, record=record, limit=_ASOF_ROWS,
                          state_filter=state_filter, title=f"As of event {position}")


def _plain(row: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in row.items()}
