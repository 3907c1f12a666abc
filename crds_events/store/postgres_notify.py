"""Wake-ups when the PostgreSQL log grows: one LISTEN connection per process.

Every append on PostgreSQL NOTIFYs channel `postgres_schema.CHANNEL` at commit, whichever
process made it (`crds_events_append`). A `LogListener` holds one dedicated connection
(outside the pool: a pooled connection would carry the LISTEN to its next borrower) that
LISTENs there, and calls its subscribers on every notification: the handler runner and the
outbox worker wait on those calls instead of polling the log.

Notifications can be lost: while the connection is down, or before the first LISTEN. So
every subscriber is also called once after each (re)connection, and each keeps a slow
poll as a fallback. A notification says "look again", never what to do: a subscriber
reads the log after its own checkpoint, so a spurious or a coalesced wake-up is harmless.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from crds_events.store.interface import StoreError
from crds_events.store.postgres_schema import CHANNEL

__all__ = ["LogListener"]

log = logging.getLogger(__name__)


class LogListener:
    """A thread LISTENing on the log's channel of the database at ``url``; `subscribe`
    callables are called (on this thread: keep them short, e.g. set an event) for each
    notification and after each (re)connection."""

    def __init__(self, url: str, *, reconnect_delay: float = 1.0,
                 connect_timeout: float = 5.0, name: str = "crds-events-listener"):
        try:
            import psycopg
        except ImportError:  # pragma: no cover - depends on the installation
            raise StoreError("LISTEN needs psycopg: pip install 'psycopg[binary]'") from None
        self._psycopg = psycopg
        self.url = url
        self.reconnect_delay = reconnect_delay
        self.connect_timeout = connect_timeout
        self.name = name
        self.last_position = 0  # the highest position notified so far
        self.connections = 0  # successful (re)connections, for tests and logs
        self._subscribers: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever the log may have grown."""
        with self._lock:
            self._subscribers.append(callback)

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    def wait_listening(self, timeout: float) -> bool:
        """Block until the LISTEN is in place (True) or ``timeout`` passes (False)."""
        return self._listening.wait(timeout)

    def start(self) -> None:
        if self._thread is not None:
            raise StoreError("listener already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def _signal(self) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback()
            except Exception:  # noqa: BLE001 - one subscriber must not starve the others
                log.exception("%s: a subscriber failed", self.name)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._conn = self._psycopg.connect(
                    self.url, autocommit=True, application_name=self.name,
                    connect_timeout=max(1, int(self.connect_timeout)),
                    keepalives=1, keepalives_idle=10, keepalives_interval=3,
                    keepalives_count=3)
                self._conn.execute(f"LISTEN {CHANNEL}")
                self.connections += 1
                self._listening.set()
                self._signal()  # whatever was appended before the LISTEN
                while not self._stop.is_set():
                    # a short timeout bounds how long `stop` waits; subscribers coalesce
                    # a burst themselves (they set an event), so each one is passed on
                    for notify in self._conn.notifies(timeout=0.5):
                        with contextlib.suppress(ValueError):  # payload: a position
                            self.last_position = max(self.last_position, int(notify.payload))
                        self._signal()
                        if self._stop.is_set():
                            break
            except self._psycopg.Error as exc:
                self._listening.clear()
                log.warning("%s: %s; listening again in %.0f s", self.name,
                            str(exc).strip().splitlines()[0] if str(exc).strip()
                            else type(exc).__name__, self.reconnect_delay)
                self._stop.wait(self.reconnect_delay)
            finally:
                self._listening.clear()
                conn, self._conn = self._conn, None
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001 - a broken connection
                        log.debug("closing the listener connection failed", exc_info=True)
