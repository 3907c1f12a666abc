"""A server process SIGKILLed while an e-mail is in flight: after restart the e-mail is sent
again with the same Message-ID and recorded once (at least once, never lost)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from email import message_from_bytes, policy
from functools import partial

import pytest
from aiosmtpd.controller import Controller
from helpers import free_port

from crds_events import events as ev
from crds_events.config import load_settings
from crds_events.server import parts
from crds_events.server.core import Server
from crds_events.store.eventlog import SQLiteEventStore
from crds_events.store.root import init_root

CHILD = """
import sys
from functools import partial
from crds_events.config import load_settings
from crds_events.server import parts
from crds_events.server.core import Server

settings = load_settings(sys.argv[1], environ={})
server = Server(settings, [partial(parts.mail, poll_interval=0.02)], poll_interval=0.02)
server.serve_forever(announce=lambda message: print(message, flush=True))
"""


class HoldFirstReply:
    """Accepts every message, but holds the reply to the first DATA until released: the
    sender is killed while it waits, after the server already has the message."""

    def __init__(self):
        self.received: list = []
        self.first_arrived = threading.Event()
        self.release = False

    async def handle_DATA(self, server, session, envelope):
        self.received.append(message_from_bytes(envelope.content, policy=policy.default))
        if len(self.received) == 1:
            self.first_arrived.set()
            deadline = time.monotonic() + 20
            while not self.release and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        return "250 Message accepted"


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkill_mid_send_resends_same_message_id(tmp_path):
    handler = HoldFirstReply()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        root = tmp_path / "root"
        root.mkdir()
        # the child process reads its settings from the root's config file
        (root / "crds-events.toml").write_text(
            f'observatory = "hst"\n[smtp]\nhost = "127.0.0.1"\nport = {controller.port}\n'
            # dpas too: no start-up warning line before "serving" (the child's first line)
            '[recipients]\nredcat = ["redcat@example.org"]\ndpas = ["dpas@example.org"]\n')
        settings = load_settings(root, environ={})
        init_root(settings)
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(settings.root)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("CRDS_EVENTS_")},
        )
        try:
            assert "serving" in child.stdout.readline()  # started: the composer is set up
            with SQLiteEventStore(settings.db_path) as log:
                log.record(ev.SubmissionFailed("s1", "boom"), meta={"actor": "alice"})
            assert handler.first_arrived.wait(15), "the child never sent the e-mail"
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
            child.stdout.close()
        handler.release = True

        with SQLiteEventStore(settings.db_path) as log:
            (queued,) = [r.event for r in log.read_all(types=["EmailQueued"])]
            assert log.read_all(types=["EmailSent"]) == []  # killed before it was recorded

        server = Server(settings, [partial(parts.mail, poll_interval=0.02)], poll_interval=0.02)
        server.start()
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not server.store.read_all(types=["EmailSent"]):
                time.sleep(0.02)
            sent = [r.event for r in server.store.read_all(types=["EmailSent"])]
            queued_again = server.store.read_all(types=["EmailQueued"])
        finally:
            server.stop()
        assert sent == [ev.EmailSent(queued.email_id, queued.message_id, 1)]
        assert len(queued_again) == 1  # the restarted composer did not queue it twice
        assert [m["Message-ID"] for m in handler.received] == [queued.message_id] * 2
    finally:
        handler.release = True
        controller.stop()
