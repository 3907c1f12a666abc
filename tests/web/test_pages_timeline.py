"""The event timeline pages: keyset paging, filters, per-stream timelines, "as of event N"
(folded with the projection folds over just the events of what the page shows) and the SVG plots."""

from __future__ import annotations

import pytest
from fixtures.pages import jwst_app

from crds_events.store.eventlog import SQLiteEventStore
from crds_events.web import create_app


@pytest.fixture(scope="module")
def jwst(tmp_path_factory):
    app, settings = jwst_app(tmp_path_factory.mktemp("jwst"))
    return app.test_client(), settings


def _get(client, url, status=200):
    response = client.get(url)
    assert response.status_code == status, (url, response.data[:2000])
    return response


def test_event_timeline_paging_and_filters(jwst):
    client, settings = jwst
    with SQLiteEventStore(settings.db_path) as store:
        truth = store.read_all()
    seen, url = [], "/events.json?limit=7"
    while url:
        data = _get(client, url).json
        seen += [e["position"] for e in data["events"]]
        url = f"/events.json?limit=7&before={data['next_before']}" if data["next_before"] else None
    assert seen == [r.position for r in reversed(truth)]
    only = _get(client, "/events.json?type=ContextSet&limit=500").json["events"]
    assert [e["position"] for e in only] == [r.position for r in reversed(truth)
                                              if r.type == "ContextSet"]
    otto = _get(client, "/events.json?actor=otto&limit=500").json["events"]
    assert otto and all(e["meta"]["actor"] == "otto" for e in otto)
    assert len(otto) == sum(1 for r in truth if r.actor == "otto")
    stream = _get(client, "/events.json?stream=context:*&limit=500").json["events"]
    assert {e["stream"] for e in stream} == {"context:jwst"}
    day = truth[0].recorded_at[:10]
    assert len(_get(client, f"/events.json?since={day}&until={day}&limit=500").json["events"]) \
        == sum(1 for r in truth if r.recorded_at[:10] == day)
    one = _get(client, f"/events/{truth[0].position}.json").json["event"]
    assert one["type"] == truth[0].type
    assert b"Payload" in _get(client, f"/events/{truth[0].position}").data
    assert _get(client, "/streams/context:jwst").status_code == 200


def test_as_of_shows_the_earlier_state(jwst):
    client, settings = jwst
    with SQLiteEventStore(settings.db_path) as store:
        sets = [r for r in store.read_all(types=["ContextSet"])]
    latest_2 = next(r for r in sets if r.data["kind"] == "latest"
                    and r.data["context"] == "jwst_0002.pmap")
    before = _get(client, f"/asof/{latest_2.position - 1}.json").json
    after = _get(client, f"/asof/{latest_2.position}.json").json
    now = {p["kind"]: p["context"] for p in _get(client, "/index.json").json["pointers"].values()}
    assert {p["kind"]: p["context"] for p in before["pointers"]}["latest"] == "jwst_0001.pmap"
    assert {p["kind"]: p["context"] for p in after["pointers"]}["latest"] == "jwst_0002.pmap"
    assert now["latest"] == "jwst_0002.pmap"
    first = _get(client, "/asof/1.json").json
    assert first["file_count"] <= 1 and first["pointers"] == []
    assert sum(after["file_states"].values()) == after["file_count"]
    page = _get(client, f"/asof/{latest_2.position - 1}").data.decode()
    assert "jwst_0001.pmap" in page


def test_plots_are_svg_and_cached_per_head(jwst):
    client, _ = jwst
    svg = _get(client, "/plots/context_changes.svg")
    assert svg.mimetype == "image/svg+xml" and svg.data.startswith(b"<svg")
    assert _get(client, "/plots/context_changes.svg").data == svg.data
    page = _get(client, "/plots").data
    assert page.count(b"<svg") == 4


def test_as_of_head_equals_the_projection_tables_and_resumes_exactly(tmp_path):
    from crds_events.store.folds import DELIVERIES, FILES
    from crds_events.store.projections import TableProjection, read_table

    app, settings = jwst_app(tmp_path)
    client = app.test_client()
    with SQLiteEventStore(settings.db_path) as store:
        head = store.head()
        files = read_table(store, TableProjection(FILES))
        deliveries = read_table(store, TableProjection(DELIVERIES))
    middle = head // 2
    fresh_middle = _get(create_fresh(settings), f"/asof/{middle}.json?limit=1000").json
    _get(client, f"/asof/{middle // 2}.json")  # a cached earlier state to resume from
    resumed_middle = _get(client, f"/asof/{middle}.json").json
    assert resumed_middle == fresh_middle
    at_head = _get(client, f"/asof/{head}.json").json
    assert at_head["file_count"] == len(files)
    shown = {f["name"]: f for f in at_head["files"]}
    for (name,), row in files.items():
        assert shown[name]["state"] == row["state"]
        assert shown[name]["available"] == row["available"]
    assert {d["name"] for d in at_head["deliveries"]} == {k[0] for k in deliveries}


def create_fresh(settings):
    return create_app(settings, config={"TESTING": True}).test_client()


def test_plot_data_from_the_log(jwst):
    from datetime import datetime

    client, settings = jwst
    data = _get(client, "/plots.json").json
    with SQLiteEventStore(settings.db_path) as store:
        records = store.read_all()

    def at(type_):
        text = next(r.recorded_at for r in records if r.type == type_)
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    hours = (at("DeliveryArchived") - at("SubmissionConfirmed")).total_seconds() / 3600
    assert [round(h, 9) for _, h in data["delivery_latency"]] == [round(hours, 9)]
    assert data["affected_counts"] == [["jwst_0001.pmap", "jwst_0002.pmap", 17]]
    assert len(data["submissions_per_week"]) == 1
    assert [c[1:] for c in data["context_changes"]] == [
        [r.data["kind"], r.data["context"]] for r in records if r.type == "ContextSet"]
    for name in ("delivery_latency", "submissions_per_week", "affected_counts"):
        assert _get(client, f"/plots/{name}.svg").data.startswith(b"<svg")


def test_svg_text_from_the_log_is_escaped():
    from crds_events.web import plots

    svg = plots.affected_counts_svg([("--><script>alert(1)</script>.pmap", "<b>x</b>.pmap", 3)])
    assert "<script" not in svg and "<b>" not in svg


def test_stream_json_twin(jwst):
    client, _ = jwst
    data = _get(client, "/streams/context:jwst.json").json
    assert data["stream"] == "context:jwst" and data["events"]
    assert {e["stream"] for e in data["events"]} == {"context:jwst"}


def test_as_of_resumes_from_snapshots_exactly(tmp_path, monkeypatch):
    # (the page no longer keeps snapshots: a warm app must still answer as a cold one)
    from crds_events.web.pages import timeline

    app, settings = jwst_app(tmp_path)
    with SQLiteEventStore(settings.db_path) as store:
        head = store.head()
    cold = {n: _get(create_fresh(settings), f"/asof/{n}.json").json for n in (7, 23, head)}
    client = app.test_client()
    _get(client, f"/asof/{head}.json")  # leaves snapshots at 5, 10, 15, ...
    for n, expected in cold.items():
        assert _get(client, f"/asof/{n}.json").json == expected
    paged, url = [], f"/asof/{head}.json"
    names = [f["name"] for f in cold[head]["files"]]
    monkeypatch.setattr(timeline, "_ASOF_ROWS", 3)
    while url:
        data = _get(client, url).json
        paged += [f["name"] for f in data["files"]]
        url = f"/asof/{head}.json?after={data['next_after']}" if data["next_after"] else None
    assert paged == names


def _full_replay(records, position):
    from crds_events.store import folds

    upto = [r for r in records if r.position <= position]
    state = {fold.table: folds.replay(fold, upto)
             for fold in (folds.FILES, folds.CONTEXT_POINTERS, folds.DELIVERIES)}
    # deliveries are listed newest first: by the position of their (last) creation
    state["created"] = {r.data["delivery"]: r.position for r in upto
                        if r.type == "DeliveryCreated"}
    return state


def _expected_page(state, position, *, state_filter="", after="", rows=200):
    files = sorted(state["files"].values(), key=lambda r: r["name"])
    counts = {}
    for row in files:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    if state_filter:
        files = [r for r in files if r["state"] == state_filter]
    total = len(files)
    if after:
        files = [r for r in files if r["name"] > after]
    plain = [{k: list(v) if isinstance(v, tuple) else v for k, v in r.items()} for r in files]
    return {
        "file_states": dict(sorted(counts.items())), "file_count": total,
        "files": plain[:rows], "next_after": files[rows - 1]["name"] if len(files) > rows else None,
        "pointers": [{k: list(v) if isinstance(v, tuple) else v for k, v in r.items()}
                     for r in sorted(state["context_pointers"].values(), key=lambda r: r["kind"])],
        "deliveries": [{k: list(v) if isinstance(v, tuple) else v for k, v in r.items()}
                       for r in sorted(state["deliveries"].values(),
                                       key=lambda r: state["created"][r["name"]],
                                       reverse=True)[:rows]],
    }


def _lifecycle_app(tmp_path):
    """The jwst app plus a lifecycle of file events in every order the FILES fold sees:
    outcomes and releases before a file exists, certify -> confirm -> catalog -> release,
    a rejection, a failure naming an archived file, mark bad / ok with blacklists.
    Returns (app, records, settings)."""
    from crds_events import events as ev
    from crds_events.store.interface import RawEvent

    app, settings = jwst_app(tmp_path)
    with SQLiteEventStore(settings.db_path) as store:
        files = sorted(r.data["name"] for r in store.read_all(types=["FileCataloged"]))
        assert len(files) >= 3

        def certified(sid, name):
            return ev.FileCertified(submission_id=sid, name=name, original_name=name,
                                    sha1="1" * 40, size=10, kind="reference",
                                    instrument="nircam", filekind="flat")
        new = ["jwst_nircam_flat_9001.fits", "jwst_nircam_flat_9002.fits"]
        late = "jwst_nircam_flat_9003.fits"
        # an outcome and a release before the file exists (ignored by the fold) ...
        store.record(ev.SubmissionCancelled(submission_id="s-9", by="sam", files=(late,)))
        store.record(ev.FileReleased(name=late))
        store.record(certified("s-8", new[0]))
        store.record(certified("s-8", new[1]))
        store.record(ev.SubmissionConfirmed(submission_id="s-8", by="sam", files=tuple(new),
                                            new_context="jwst_0002.pmap"))
        store.record(ev.FileCataloged(name=new[0], delivery="jwst_0009", observatory="jwst",
                                      sha1="1" * 40, size=10, kind="reference",
                                      instrument="nircam", filekind="flat"))
        store.record(ev.FileReleased(name=new[0], delivery="jwst_0009"))
        store.record(certified("s-9", late))  # ... then it does
        # deliveries: an event before its creation (ignored), a creation of an older name
        # after a newer one (listed by creation), a failure
        store.record(ev.DeliveryArchived(delivery="jwst_0009"))
        for name in ("jwst_0009", "jwst_0000"):
            store.record(ev.DeliveryCreated(delivery=name, observatory="jwst",
                                            submission_id="s-8", files=tuple(new)))
        store.record(ev.DeliveryFailed(delivery="jwst_0009", reason="<i>disk</i>"))
        # a pointer set with the v1 schema ("pointer", no "previous"), then set again
        # without a previous: the row's previous comes from the v1 event
        store.append("context:jwst", RawEvent("ContextSet", {
            "observatory": "jwst", "pointer": "versions", "context": "jwst_0001.pmap",
            "description": "v1"}, schema_version=1))
        store.record(ev.ContextSet(observatory="jwst", kind="versions", context="jwst_0002.pmap"))
        store.record(ev.SubmissionRejected(submission_id="s-9", reason="no", files=(late,)))
        # an outcome naming an archived file, then a rejection and a rehabilitation
        store.record(ev.SubmissionFailed(submission_id="s-7", error="x", files=(files[2],)))
        store.record(ev.FileMarkedBad(name=files[0], by="otto", reason="<b>bad</b>",
                                      blacklisted=tuple(files[1:3])), meta={"actor": "otto"})
        store.record(ev.FileMarkedOk(name=files[0], by="otto", unblacklisted=(files[1],)),
                     meta={"actor": "otto"})
        records = store.read_all()
    return app, records, settings


def test_as_of_pages_equal_a_full_replay_at_every_position(tmp_path, monkeypatch):
    """Every position of a real lifecycle log (submissions, confirm, delivery, release,
    mark bad / ok, context sets): the page's catalog rows (first page, a keyset page, a state
    filter), counts, pointers and deliveries equal those of a cold full replay up to N."""
    from crds_events.web.pages import timeline

    app, records, settings = _lifecycle_app(tmp_path)
    monkeypatch.setattr(timeline, "_ASOF_ROWS", 2)  # several keyset pages on a small catalog
    client = app.test_client()
    checked_states = set()
    for position in range(0, records[-1].position + 1):
        state = _full_replay(records, position)
        got = _get(client, f"/asof/{position}.json").json
        expected = _expected_page(state, position, rows=2)
        assert {k: got[k] for k in expected} == expected, position
        if expected["next_after"]:
            after = expected["next_after"]
            got = _get(client, f"/asof/{position}.json?after={after}").json
            want = _expected_page(state, position, after=after, rows=2)
            assert got["files"] == want["files"] and got["next_after"] == want["next_after"]
        for name in expected["file_states"]:
            checked_states.add(name)
            got = _get(client, f"/asof/{position}.json?state={name}").json
            want = _expected_page(state, position, state_filter=name, rows=2)
            assert (got["files"], got["file_count"]) == (want["files"], want["file_count"])
    assert {"submitted", "confirmed", "delivered", "archived", "cancelled"} <= checked_states


def test_as_of_large_catalog_pages_and_state_scans_equal_a_full_replay(tmp_path, monkeypatch):
    """As if the catalog were large: no counts unless asked (``?counts=1``), and a state
    filter that scans names a few at a time, continuing through ``next_after``; every row,
    count and continuation still equals a full replay."""
    from crds_events.web.pages import timeline

    app, records, settings = _lifecycle_app(tmp_path)
    monkeypatch.setattr(timeline, "COUNT_LIMIT", 0)
    monkeypatch.setattr(timeline, "_SCAN_BATCH", 2)
    monkeypatch.setattr(timeline, "_SCAN_LIMIT", 3)
    monkeypatch.setattr(timeline, "_ASOF_ROWS", 2)
    client = app.test_client()
    head = records[-1].position
    for position in sorted({1, head // 3, head // 2, head - 5, head - 2, head}):
        state = _full_replay(records, position)
        expected = _expected_page(state, position, rows=2)
        got = _get(client, f"/asof/{position}.json").json
        if expected["file_count"]:  # (an empty catalog is counted: nothing to fold)
            assert got["file_states"] is None and got["file_count"] is None
        assert (got["files"], got["next_after"]) == (expected["files"], expected["next_after"])
        assert got["pointers"] == expected["pointers"]
        assert got["deliveries"] == expected["deliveries"]
        counted = _get(client, f"/asof/{position}.json?counts=1").json
        assert counted["file_states"] == expected["file_states"]
        assert counted["file_count"] == expected["file_count"]
        for name in ("archived", "cancelled", "submitted", "confirmed", "delivered"):
            want = [f for f in _expected_page(state, position, state_filter=name,
                                              rows=10**6)["files"]]
            seen, url, pages = [], f"/asof/{position}.json?state={name}", 0
            while url:
                data = _get(client, url).json
                assert len(data["files"]) <= 2
                seen += data["files"]
                pages += 1
                url = (f"/asof/{position}.json?state={name}&after={data['next_after']}"
                       if data["next_after"] else None)
            assert seen == want, (position, name)
            assert pages >= len(want) / 2
    assert b"count files by state" in _get(client, f"/asof/{head}").data


def test_as_of_without_the_file_name_index_still_answers_the_same(tmp_path):
    """A log opened by an older server (no m004 indexes yet): same answers, planner's
    choice."""
    import sqlite3

    app, records, settings = _lifecycle_app(tmp_path)
    client = app.test_client()
    head = records[-1].position
    with_index = {n: _get(client, f"/asof/{n}.json?state=archived").json
                  for n in (head // 2, head)}
    db = sqlite3.connect(settings.db_path)
    db.execute("DROP INDEX events_file_name")
    db.execute("DROP INDEX events_context_pointer")
    db.close()
    fresh = app.test_client()
    for n, expected in with_index.items():
        assert _get(fresh, f"/asof/{n}.json?state=archived").json == expected
