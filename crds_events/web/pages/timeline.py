"""The event timeline: every event newest first, keyset paging, filters, time travel.

``/events`` pages by position (``?before=N``: the page of events older than N), so the
1,000,000th event costs what the first does. Filters: stream, type, actor, since, until
(dates become position bounds by binary search: positions are in recorded order).
``/events/<N>`` shows one event's payload; ``/streams/<stream>`` one stream's timeline;
``/asof/<N>`` the contexts, catalog states and deliveries as they were right after event
N, folded with the projection folds themselves (`crds_events.store.folds.replay`).
"""

from __future__ import annotations

import bisect
import json
import threading
from collections import Counter

from flask import Blueprint, abort, request, url_for

from crds_events.store import folds
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


_STATES_LOCK = threading.Lock()
_AS_OF_FOLDS = (folds.CONTEXT_POINTERS, folds.FILES, folds.DELIVERIES)
SNAPSHOT_EVERY = 50_000  # positions between kept fold states
MAX_SNAPSHOTS = 40


def state_as_of(position: int) -> dict[str, dict]:
    """{table: {key: row}} for the context pointers, the files catalog and the deliveries,
    folded from the log up to ``position`` with the projections' own folds.

    Replaying a large log is seconds of work, so the fold states at every multiple of
    `SNAPSHOT_EVERY` passed on the way are kept (in memory): any later request resumes from
    the nearest one at or below its position. Folds never mutate rows and `replay` returns
    a new dict, so snapshots share unchanged rows safely."""
    snapshots = common.get_state().caches.setdefault("pages:asof_snapshots", {})
    with _STATES_LOCK:
        start = max((p for p in snapshots if p <= position), default=0)
        state = dict(snapshots.get(start, {}))
    log = common.log()
    consumed = sorted(set().union(*(fold.consumes for fold in _AS_OF_FOLDS)))
    cursor = start
    while cursor < position:
        stop = min(position, (cursor // SNAPSHOT_EVERY + 1) * SNAPSHOT_EVERY)
        # one read of the segment serves every fold (each replay skips what it ignores)
        records = list(log.iter_all(cursor, types=consumed, until=stop))
        for fold in _AS_OF_FOLDS:
            state[fold.table] = folds.replay(fold, records, state.get(fold.table))
        cursor = stop
        if stop % SNAPSHOT_EVERY == 0:
            with _STATES_LOCK:
                snapshots.setdefault(stop, dict(state))
                while len(snapshots) > MAX_SNAPSHOTS:
                    snapshots.pop(next(iter(snapshots)))
    for fold in _AS_OF_FOLDS:
        state.setdefault(fold.table, {})
    return state


def _as_of_view(position: int) -> dict:
    """What the page shows of `state_as_of` (sorted once per position, cached)."""
    def build() -> dict:
        states = state_as_of(position)
        files = sorted(states["files"].values(), key=lambda r: r["name"])
        by_state: dict[str, list] = {}
        for row in files:
            by_state.setdefault(row["state"], []).append(row)
        return {
            "files": files, "by_state": by_state, "names": {},
            "counts": dict(sorted(Counter(r["state"] for r in states["files"].values()).items())),
            "pointers": sorted(states["context_pointers"].values(), key=lambda r: r["kind"]),
            "deliveries": sorted(states["deliveries"].values(), key=lambda r: r["name"],
                                 reverse=True),
        }
    return common.cached("asof_view", position, build, limit=8)


@bp.route("/asof/<int:position>")
@bp.route("/asof/<int:position>.json", endpoint="asof_json")
def asof(position: int):
    head = common.head()
    if position < 0 or position > head:
        abort(404, f"event {position}: the log has {head} events")
    view = _as_of_view(position)
    files = view["files"]
    counts, pointers, deliveries = view["counts"], view["pointers"], view["deliveries"]
    state_filter = request.args.get("state", "").strip()
    if state_filter:
        files = view["by_state"].get(state_filter, [])
    after = request.args.get("after", "").strip()
    total = len(files)
    if after:  # keyset: names are sorted
        files = files[bisect.bisect_right(_names(view, state_filter), after):]
    data = {
        "position": position, "head": head, "pointers": pointers,
        "file_states": counts, "file_count": total,
        "files": [_plain(r) for r in files[:_ASOF_ROWS]],
        "next_after": files[_ASOF_ROWS - 1]["name"] if len(files) > _ASOF_ROWS else None,
        "deliveries": [_plain(r) for r in deliveries[:_ASOF_ROWS]],
    }
    record = common.log().get(position) if position else None
    return common.respond("asof.html", data, record=record, limit=_ASOF_ROWS,
                          state_filter=state_filter, title=f"As of event {position}")


def _names(view: dict, state: str) -> list[str]:
    """The sorted names of the view's files (of one state), computed once."""
    names = view["names"]
    if state not in names:
        rows = view["by_state"].get(state, []) if state else view["files"]
        names[state] = [r["name"] for r in rows]
    return names[state]


def _plain(row: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in row.items()}
