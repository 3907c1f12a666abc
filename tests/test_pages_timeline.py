"""The event timeline pages: keyset paging, filters, per-stream timelines, "as of event N"
(folded with the projection folds, resumed from snapshots) and the SVG plots."""

from __future__ import annotations

import pytest
from page_fixtures import jwst_app

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
    from crds_events.web.pages import timeline

    monkeypatch.setattr(timeline, "SNAPSHOT_EVERY", 5)  # many snapshots on a small log
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
