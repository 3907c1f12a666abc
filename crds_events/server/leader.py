"""Which server process runs the singletons: the leader.

Several ``crds-events serve`` processes may share one PostgreSQL log. Every process serves
pages and JSON-RPC; exactly one at a time runs the singletons (the handler runner, the
watchers, the submission, delivery and outbox workers, the scheduler), because two
observers or two mailers on one root would do their work twice. The leader is the process
holding a PostgreSQL session-level advisory lock:

* one dedicated connection per process, outside the pool (a pooled connection would hand
  the lock's session to whoever borrows it next), named ``crds-events@<host>:<pid>``
  (``application_name``, what /health and ``pg_stat_activity`` show);
* about once a second a follower tries ``pg_try_advisory_lock``; the winner starts the
  singletons (`Leader.on_elected`);
* the leader runs ``SELECT 1`` once a second and stops its singletons (`Leader.on_deposed`)
  the moment that fails: its session, and so the lock, may be gone;
* a leader killed with SIGKILL loses its socket, PostgreSQL ends the session and drops the
  lock at once, and a follower takes over within about a second;
* a leader whose host vanishes is caught by timeouts, in an order that matters: the leader
  gives up after ``tcp_user_timeout`` (5 s of unacknowledged heartbeat) while the database
  ends the session only after its own keepalives (10 s idle, then 3 probes 3 s apart), so
  the old leader has stopped before a new one can be elected. Whatever still overlaps is
  fenced by the log itself: handlers re-read their checkpoint under the write lock
  (`crds_events.store.handler`), appends check stream versions and idempotency keys, and an
  e-mail resent carries the same Message-ID.

The lock's key is two numbers: `LEADER_CLASS` and a hash of the log's schema, so two logs
in two schemas of one database each have their own leader.

On SQLite there is one server process per root: `SoleLeader` always leads.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from crds_events.errors import CrdsEventsError

__all__ = ["LEADER_CLASS", "Leader", "LeaderInfo", "Leadership", "SoleLeader",
           "leader_for", "process_name"]

log = logging.getLogger(__name__)

LEADER_CLASS = 0x63726473  # "crds": first key of the leader lock (second: the schema's hash)

_KEY = "%s, hashtext(current_schema())"
_TRY_LOCK = f"SELECT pg_try_advisory_lock({_KEY})"
# Who holds the lock: pg_locks shows a two-int4 advisory lock as (classid, objid,
# objsubid = 2); an int4 cast to oid keeps its bits, as pg_locks stores it.
_HOLDER = (
    "SELECT a.application_name, a.pid, a.backend_start::text FROM pg_locks l "
    "JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND l.classid = %s::oid AND l.objid = hashtext(current_schema())::oid")

# libpq side: give up on a heartbeat unacknowledged for 5 s; keepalives on an idle socket.
_CLIENT_OPTIONS = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
                   "keepalives_count": 2, "tcp_user_timeout": 5000}
# Server side: end the session of a vanished leader only after the leader has given up
# (see the module docstring); plain SETs, so a URL's own ``options`` are kept.
_SERVER_SETTINGS = ("SET tcp_keepalives_idle = 10", "SET tcp_keepalives_interval = 3",
                    "SET tcp_keepalives_count = 3")


class LeaderError(CrdsEventsError, RuntimeError):
    pass


def process_name() -> str:
    """This process as /health and ``pg_stat_activity`` name it."""
    return f"crds-events@{socket.gethostname()}:{os.getpid()}"


@dataclasses.dataclass(frozen=True)
class LeaderInfo:
    """Who leads, as this process last saw it."""

    process: str  # crds-events@host:pid of the leader ("" when none is known)
    me: bool  # this process leads
    since: float | None = None  # time.time() this process was elected (None: not us)

    def as_dict(self) -> dict[str, Any]:
        return {"process": self.process or None, "self": self.me,
                "since": self.since}


class Leadership(Protocol):
    """What a server asks of its leader election."""

    name: str

    @property
    def leading(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def info(self) -> LeaderInfo: ...


class SoleLeader:
    """SQLite: the one server process of a root leads from `start` to `stop`."""

    def __init__(self, on_elected: Callable[[], None], on_deposed: Callable[[], None]):
        self.name = process_name()
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self._since: float | None = None

    @property
    def leading(self) -> bool:
        return self._since is not None

    def start(self) -> None:
        self._since = time.time()
        try:
            self.on_elected()
        except BaseException:
            self._since = None
            raise

    def stop(self) -> None:
        if self._since is not None:
            self._since = None
            self.on_deposed()

    def info(self) -> LeaderInfo:
        return LeaderInfo(self.name, self.leading, self._since)


class Leader:
    """The PostgreSQL advisory-lock election of one process (see the module docstring).

    ``on_elected`` is called on the election thread when this process wins the lock;
    ``on_deposed`` when it loses it (heartbeat failed) or gives it up (`stop`), before the
    lock is released. ``interval``: seconds between attempts and between heartbeats.
    ``retry_after_failure``: seconds a process whose ``on_elected`` raised waits before
    trying again (another process may do better meanwhile).
    """

    def __init__(self, url: str, *, on_elected: Callable[[], None],
                 on_deposed: Callable[[], None], interval: float = 1.0,
                 connect_timeout: float = 5.0, retry_after_failure: float = 10.0,
                 name: str | None = None):
        try:
            import psycopg
        except ImportError:  # pragma: no cover - depends on the installation
            raise LeaderError("leader election needs psycopg: pip install 'psycopg[binary]'") \
                from None
        self._psycopg = psycopg
        self.url = url
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self.interval = interval
        self.connect_timeout = connect_timeout
        self.retry_after_failure = retry_after_failure
        self.name = name or process_name()
        self.elections = 0  # times this process was elected (tests, logs)
        self._conn: Any = None
        self._since: float | None = None
        self._holder = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- what others read ---------------------------------------------------------------

    @property
    def leading(self) -> bool:
        return self._since is not None

    def info(self) -> LeaderInfo:
        since = self._since
        if since is not None:
            return LeaderInfo(self.name, True, since)
        return LeaderInfo(self._holder, False)

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Campaign in a background thread until `stop`."""
        if self._thread is not None:
            raise LeaderError("leader election already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="crds-events-leader",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 300.0) -> None:
        """Step down (``on_deposed`` runs and returns first) and release the lock."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise LeaderError("leader election thread did not stop in time")

    # --- the thread ------------------------------------------------------------------------

    def _connect(self) -> Any:
        conn = self._psycopg.connect(
            self.url, autocommit=True, application_name=self.name,
            connect_timeout=max(1, int(self.connect_timeout)), **_CLIENT_OPTIONS)
        for statement in _SERVER_SETTINGS:
            conn.execute(statement)
        return conn

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                pause = self.interval
                try:
                    if self._conn is None:
                        self._conn = self._connect()
                    if self.leading:
                        self._conn.execute("SELECT 1")
                    elif self._conn.execute(_TRY_LOCK, (LEADER_CLASS,)).fetchone()[0]:
                        if not self._elected():
                            pause = self.retry_after_failure
                    else:
                        row = self._conn.execute(_HOLDER, (LEADER_CLASS,)).fetchone()
                        self._holder = row[0] if row else ""
                except self._psycopg.Error as exc:
                    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else \
                        type(exc).__name__
                    if self.leading:
                        log.error("%s: lost the leader lock's connection (%s); stopping the "
                                  "singletons", self.name, reason)
                    else:
                        log.warning("%s: leader election: %s", self.name, reason)
                    self._step_down()
                    self._close()
                self._stop.wait(pause)
        finally:
            self._step_down()
            self._close()  # ends the session: the lock goes with it

    def _elected(self) -> bool:
        """Won the lock: start the singletons. False if they failed to start (then they
        are stopped again and the lock given up)."""
        self._since = time.time()
        self._holder = self.name
        self.elections += 1
        log.info("%s: elected leader; starting the singletons", self.name)
        try:
            self.on_elected()
        except Exception:  # noqa: BLE001 - give another process its chance
            log.exception("%s: starting the singletons failed; giving up the lead", self.name)
            self._step_down()
            self._close()
            return False
        return True

    def _step_down(self) -> None:
        if self._since is None:
            return
        self._since = None
        self._holder = ""
        try:
            self.on_deposed()
        except Exception:  # noqa: BLE001 - the lock must be released all the same
            log.exception("%s: stopping the singletons failed", self.name)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a broken connection may not close cleanly
                log.debug("closing the leader connection failed", exc_info=True)


def leader_for(database_url: str, *, on_elected: Callable[[], None],
               on_deposed: Callable[[], None], interval: float = 1.0) -> Leadership:
    """A `Leader` for a PostgreSQL log, a `SoleLeader` for anything else (SQLite)."""
    if database_url.startswith(("postgresql://", "postgres://")):
        return Leader(database_url, on_elected=on_elected, on_deposed=on_deposed,
                      interval=interval)
    return SoleLeader(on_elected, on_deposed)
