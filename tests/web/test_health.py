"""/health and /metrics against a real root: numbers compared with the log itself."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from crds_events import events as ev
from crds_events.accounts.users import add_user
from crds_events.config import load_settings
from crds_events.contexts.importcache import import_cache
from crds_events.contexts.pointers import set_context
from crds_events.demo.generate import GeneratorConfig, generate
from crds_events.mail.outbox import outbox_rows
from crds_events.server import parts
from crds_events.server.core import Server
from crds_events.store import SQLiteEventStore
from crds_events.store.root import init_root
from crds_events.web import create_app
from crds_events.web.pages.health import attach_server, render_metrics

SAMPLE = re.compile(r'^(?P<name>[a-z_]+)(\{(?P<labels>[^}]*)\})? (?P<value>[-0-9.e+]+)$')


def parse_metrics(text: str) -> dict[tuple[str, tuple], float]:
    """Prometheus text -> {(name, ((label, value), ...)): value}; every line must parse."""
    samples = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = SAMPLE.match(line)
        assert match, f"not Prometheus text format: {line!r}"
        labels = tuple(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match["labels"] or ""))
        samples[(match["name"], labels)] = float(match["value"])
    return samples


@pytest.fixture
def root(tmp_path):
    settings = load_settings(tmp_path / "root", {"observatory": "jwst"})
    init_root(settings)
    generated = generate(GeneratorConfig(instruments=1, types=2, datasets=0), tmp_path / "g")
    store = SQLiteEventStore(settings.db_path)
    try:
        import_cache(settings, store, generated.mappings_dir, None, generated.pmap,
                     ("latest", "edit"))
    finally:
        store.close()
    return settings


@pytest.mark.slow
def test_metrics_match_the_log(root):
    server = Server(root, [parts.mail])
    try:
        server.runner.run_until_idle()
        add_user(server.store, "ops", "ops@example.org", role="operator")
        set_context(root, server.store, "versions", "jwst_0001.pmap", "health test", "ops")
        server.runner.run_until_idle()  # its e-mail composed (queued), not sent: no worker
        # then events the handlers have not seen yet: a lag to report
        for number in range(3):
            server.store.record(ev.RemoteContextPushed(observatory="jwst", pipeline=f"p{number}",
                                                       context="jwst_0001.pmap"))
        app = create_app(root, server.store, {"TESTING": True})
        response = app.test_client().get("/metrics")
        assert response.status_code == 200
        assert response.content_type.startswith("text/plain; version=0.0.4")
        samples = parse_metrics(response.get_data(as_text=True))

        records = list(server.store.iter_all())
        assert samples[("crds_events_up", ())] == 1
        assert samples[("crds_events_log_head", ())] == records[-1].position
        by_type = Counter(r.type for r in records)
        reported = {labels[0][1]: value for (name, labels), value in samples.items()
                    if name == "crds_events_events_total"}
        assert reported == by_type
        lag = {labels[0][1]: value for (name, labels), value in samples.items()
               if name == "crds_events_handler_lag_positions"}
        assert lag == server.runner.lag()
        assert set(lag.values()) == {3}
        states = Counter(row["state"] for row in outbox_rows(server.store))
        assert states["queued"] > 0  # the Set Context e-mail
        for state in ("queued", "retrying", "sent", "failed"):
            assert samples[("crds_events_outbox_emails", (("state", state),))] == states[state]
        assert samples[("crds_events_reprocessing_held", ())] == 0
        assert samples[("crds_events_reprocessing_oldest_held_age_seconds", ())] == 0
    finally:
        server.stop()


def test_health_reports_components_and_lag(root):
    server = Server(root, [parts.mail])
    app = create_app(root, server.store, {"TESTING": True})
    attach_server(app, server.status)
    server.start()
    try:
        client = app.test_client()
        for _ in range(100):
            body = client.get("/health").get_json()
            if body["ok"] and body["handler_lag"] and not any(body["handler_lag"].values()):
                break
            server._stopping.wait(0.05)
        response = client.get("/health")
        body = response.get_json()
        assert response.status_code == 200, body
        assert body["ok"] is True and body["problems"] == []
        assert body["log_head"] == server.store.head()
        assert body["components"] == {"handlers": True, "mail": True}
        # on SQLite the one process leads (on PostgreSQL: whichever holds the lock)
        assert body["leader"]["self"] is True
        assert body["leader"]["process"] == server.leader.name
        assert body["leader"]["process"].startswith("crds-events@")
        metrics = parse_metrics(client.get("/metrics").get_data(as_text=True))
        assert metrics[("crds_events_component_running", (("component", "mail"),))] == 1
        # a lag over the configured limit makes it unhealthy (503), naming the handler
        app.config["HEALTH_MAX_LAG"] = -1
        response = client.get("/health")
        assert response.status_code == 503
        assert any("positions behind" in p for p in response.get_json()["problems"])
    finally:
        server.stop()


def test_unreadable_log_is_reported_down():
    text = render_metrics({}, up=False)
    assert parse_metrics(text) == {("crds_events_up", ()): 0}


def test_gunicorn_entry_point_serves_health_from_the_root_in_the_environment(root, monkeypatch):
    from werkzeug.test import Client

    from crds_events.web import gunicorn_app

    monkeypatch.setenv("CRDS_EVENTS_ROOT", str(root.root))
    monkeypatch.setattr(gunicorn_app, "_app", None)
    client = Client(gunicorn_app.application)
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    store = SQLiteEventStore(root.db_path)
    try:
        assert body["log_head"] == store.head() > 0
    finally:
        store.close()
    assert body["components"] == {}  # a separate web process: no server attached
    assert "crds_events_log_head" in client.get("/metrics").get_data(as_text=True)
