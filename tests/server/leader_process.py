"""A server process of its own for the leader tests (run as a script, not collected).

``leader_process.py leader URL``: a bare `Leader` campaigning on URL; prints ``ready
<name>``, then ``elected`` and ``deposed`` as they happen; SIGTERM stops it cleanly.

``leader_process.py server ROOT URL``: a `Server` on the PostgreSQL log at URL with one
handler, `PongHandler`, and no other part; prints its announcement, runs until SIGTERM.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Sequence

from crds_events.config import load_settings
from crds_events.server.core import Server
from crds_events.server.leader import Leader
from crds_events.store import RawEvent, RecordedEvent, Transaction
from crds_events.store.handler import Handler


class PongHandler(Handler):
    """Answers each ``Ping`` with a ``Pong`` naming its position, in the handler's
    transaction (no idempotency key: only the checkpoint keeps it exactly once). A little
    slow per batch, so that a SIGKILL lands inside a transaction now and then."""

    name = "pong"
    consumes = frozenset({"Ping"})

    def handle_batch(self, tx: Transaction, records: Sequence[RecordedEvent]) -> None:
        time.sleep(0.05)
        for record in records:
            tx.append("pongs", RawEvent("Pong", {"ping": record.position}))


def run_leader(url: str) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    leader = Leader(url, on_elected=lambda: print("elected", flush=True),
                    on_deposed=lambda: print("deposed", flush=True), interval=0.2)
    leader.start()
    print("ready", leader.name, flush=True)
    stop.wait()
    leader.stop()
    print("stopped", flush=True)


def run_server(root: str, url: str) -> None:
    settings = load_settings(root, {"database_url": url, "observatory": "hst"})
    server = Server(settings, [], handlers=[PongHandler()])
    server.serve_forever(announce=lambda line: print(line, flush=True))


if __name__ == "__main__":
    if sys.argv[1] == "leader":
        run_leader(sys.argv[2])
    else:
        run_server(sys.argv[2], sys.argv[3])
