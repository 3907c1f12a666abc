"""`LogListener`: one LISTEN connection per process, calling its subscribers when any
process appends to the PostgreSQL log, and again after it reconnects."""

from __future__ import annotations

import threading
import time

from crds_events.store import RawEvent
from crds_events.store.postgres import PostgresEventStore
from crds_events.store.postgres_notify import LogListener

BOUND = 10.0  # generous: a notification arrives in milliseconds


def test_an_append_by_another_connection_wakes_the_subscribers(postgres_url):
    writer = PostgresEventStore(postgres_url)
    listener = LogListener(postgres_url)
    woken = [threading.Event(), threading.Event()]
    for event in woken:
        listener.subscribe(event.set)
    listener.start()
    try:
        assert listener.wait_listening(BOUND)
        time.sleep(0.1)
        for event in woken:  # the wake-up after connecting, for what came before
            event.clear()
        result = writer.append("s", RawEvent("Ping", {}))
        assert all(event.wait(BOUND) for event in woken)
        assert listener.last_position == result.positions[-1]
    finally:
        listener.stop()
        writer.close()


def test_a_dropped_connection_is_listened_again_and_wakes_everyone(postgres_url):
    import psycopg

    listener = LogListener(postgres_url, reconnect_delay=0.1, name="crds-events-listener-t")
    woken = threading.Event()
    listener.subscribe(woken.set)
    failing = []
    listener.subscribe(lambda: failing.append(1) or 1 / 0)  # one bad subscriber is logged
    listener.start()
    try:
        assert listener.wait_listening(BOUND) and woken.wait(BOUND)
        woken.clear()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE application_name = 'crds-events-listener-t'")
        deadline = time.monotonic() + BOUND
        while listener.connections < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert listener.connections == 2
        # whatever was appended while it was away: everyone looks again
        assert woken.wait(BOUND) and len(failing) >= 2
        with PostgresEventStore(postgres_url) as writer:
            woken.clear()
            writer.append("s", RawEvent("Ping", {}))
        assert woken.wait(BOUND)
    finally:
        listener.stop()
