"""Several `Server` processes on one PostgreSQL log: every one runs its every-process
components, only the leader runs the singletons (the handler runner first), and a leader
killed with SIGKILL is replaced without an event handled twice or lost.

The servers here have one handler (`leader_process.PongHandler`: a Pong per Ping, in the
handler's transaction, no idempotency key) and no other part, so they run before the rest
of the lifecycle runs on PostgreSQL; the whole lifecycle with two servers is in
test_two_servers_lifecycle.py."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

from leader_process import PongHandler
from test_leader import Process, holder, terminate, wait_until

from crds_events.config import load_settings
from crds_events.server.core import Server
from crds_events.server.parts import Component, Part
from crds_events.store import RawEvent
from crds_events.store.postgres import PostgresEventStore

BOUND = 20.0  # generous: takeover is about a second, the fallback poll three


def pongs(store) -> Counter:
    return Counter(record.data["ping"] for record in store.read_stream("pongs"))


def test_the_leader_runs_the_singletons_and_stops_them_when_its_session_ends(
        tmp_path, postgres_url):
    settings = load_settings(tmp_path / "root", {"database_url": postgres_url})
    calls: list[str] = []
    started = threading.Event()

    def recording(settings, ctx) -> Part:  # a singleton of the test's own
        def start() -> None:
            calls.append("start")
            started.set()

        return Part("recording", components=(
            Component("recording", start, lambda: calls.append("stop")),
            Component("everywhere", lambda: calls.append("web start"),
                      lambda: calls.append("web stop"), every_process=True)))

    server = Server(settings, [recording], handlers=[PongHandler()])
    assert server.shared and server.listener is not None
    server.start()
    try:
        assert started.wait(BOUND)
        assert calls == ["web start", "start"]
        assert server.running_components() == ["everywhere", "handlers", "recording"]
        assert server.status().leader["self"] is True
        assert server.status().leader["process"] == server.leader.name
        assert holder(postgres_url) == server.leader.name

        ping = server.store.append("pings", RawEvent("Ping", {})).positions[0]
        assert wait_until(lambda: pongs(server.store) == Counter({ping: 1}), BOUND)

        # the lock's session ends: the singletons stop (reverse order), the every-process
        # component keeps running, and the process campaigns again and leads again
        started.clear()
        assert terminate(postgres_url, server.leader.name) == 1
        assert started.wait(BOUND), calls
        assert calls == ["web start", "start", "stop", "start"]
        assert server.running_components() == ["everywhere", "handlers", "recording"]
        ping = server.store.append("pings", RawEvent("Ping", {})).positions[0]
        assert wait_until(lambda: pongs(server.store)[ping] == 1, BOUND)
    finally:
        server.stop()
    assert calls[-2:] == ["stop", "web stop"]
    assert server.running_components() == []


def test_kill_the_leader_while_it_handles_another_server_takes_over(tmp_path, postgres_url):
    PostgresEventStore(postgres_url).close()  # migrated once, before the servers race
    root = tmp_path / "root"
    root.mkdir()
    servers = [Process("server", str(root), postgres_url) for _ in range(2)]
    store = PostgresEventStore(postgres_url)
    stop_pinging = threading.Event()
    pinged: list[int] = []

    def ping() -> None:  # a steady stream of work across the kill
        while not stop_pinging.is_set():
            pinged.append(store.append("pings", RawEvent("Ping", {})).positions[0])
            time.sleep(0.01)

    pinger = threading.Thread(target=ping)
    try:
        for server in servers:
            assert server.expect("crds-events serving", 60), server.seen
        assert wait_until(lambda: holder(postgres_url) is not None, BOUND)
        first = holder(postgres_url)
        leader = next(s for s in servers if first.endswith(f":{s.popen.pid}"))
        follower = next(s for s in servers if s is not leader)
        pinger.start()
        assert wait_until(lambda: len(pongs(store)) >= 20, BOUND)  # the leader is busy

        os.kill(leader.popen.pid, signal.SIGKILL)
        assert wait_until(lambda: (holder(postgres_url) or "").endswith(
            f":{follower.popen.pid}"), BOUND)
        time.sleep(0.5)  # more pings, for the new leader
        stop_pinging.set()
        pinger.join()

        # every Ping answered exactly once: none lost with the killed transaction, none
        # answered by both servers
        assert wait_until(lambda: set(pongs(store)) == set(pinged), BOUND)
        assert set(pongs(store).values()) == {1}
        assert len(pinged) > 20

        follower.popen.send_signal(signal.SIGTERM)
        assert follower.popen.wait(30) == 0
        assert follower.expect("crds-events stopped cleanly", 10), follower.seen
    finally:
        stop_pinging.set()
        if pinger.is_alive():
            pinger.join()
        for server in servers:
            server.end()
        store.close()


def test_health_of_each_server_names_the_leader(tmp_path, postgres_url):
    import json
    import urllib.error
    import urllib.request

    from crds_events.server import parts
    from crds_events.store.root import init_root

    settings = load_settings(tmp_path / "root", {"database_url": postgres_url}, environ={})
    init_root(settings)
    first = Server(settings, [parts.web], port=0)
    second = Server(settings, [parts.web], port=0)
    first.start()
    try:
        # elected, and its singletons started (the start-up repair runs first)
        assert wait_until(lambda: "handlers" in first.running_components(), BOUND)
        second.start()
        try:
            assert wait_until(lambda: second.leader.info().process == first.leader.name,
                              BOUND)
            bodies = []
            for server in (first, second):
                url = f"{server.component('web').url}/health"
                try:
                    with urllib.request.urlopen(url, timeout=10) as reply:
                        bodies.append(json.load(reply))
                except urllib.error.HTTPError as exc:  # 503 still carries the body
                    bodies.append(json.load(exc))
            leading, following = bodies
            assert leading["leader"]["self"] is True and following["leader"]["self"] is False
            assert following["leader"]["process"] == first.leader.name
            assert leading["components"] == {"handlers": True, "web": True}
            assert following["components"] == {"web": True}  # pages and RPC, no singletons
            assert following["ok"] is True, following["problems"]
        finally:
            second.stop()
    finally:
        first.stop()


def test_every_part_stops_and_starts_again_when_the_lead_is_lost_and_regained(
        tmp_path, postgres_url):
    from crds_events.server.core import build_server
    from crds_events.store.root import init_root

    settings = load_settings(tmp_path / "root", {"database_url": postgres_url}, environ={})
    init_root(settings)
    server = build_server(settings, port=0)
    everything = sorted(server.component_names())
    server.start()
    try:
        assert wait_until(lambda: sorted(server.running_components()) == everything, BOUND)
        assert server.running_components()[0] == "web"  # every process's, before the lead
        assert terminate(postgres_url, server.leader.name) == 1
        assert wait_until(lambda: server.leader.elections == 2
                          and sorted(server.running_components()) == everything, 60), \
            server.running_components()
        assert all(server.status().components.values())
    finally:
        server.stop()
    assert server.running_components() == []
