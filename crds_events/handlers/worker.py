"""`QueueWorker`: the one shape of every worker thread of a running server.

A worker owns (or is given) a log connection, has a queue that others put work on, runs one
or more threads that take work off it, and stops by putting `STOP` on the queue once per
thread and joining them. Its connection is opened by `QueueWorker.start` on the starting
thread, before any worker thread needs it, and closed by `QueueWorker.stop` when the worker
opened it itself. A stopped worker can be started again.

The default thread loop takes one item at a time and hands it to `QueueWorker.handle`; an
item that raises is logged and the loop goes on (one bad item must not stop the worker).
Workers whose loop also keeps time (a periodic scan, a resume pass, a poll) override
`QueueWorker.run` and read the queue with a timeout, still returning on `STOP`.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import Any

from crds_events.store import EventStore, open_store

__all__ = ["STOP", "QueueWorker"]

log = logging.getLogger(__name__)

STOP = object()
"""Put on a worker's queue (by `QueueWorker.stop`): the thread that takes it returns."""


class QueueWorker:
    """A queue, thread(s) taking work off it, the log connection they use, and a clean stop.

    Subclasses set ``thread_name`` (``{n}`` in it is replaced by the thread's number) and
    ``stop_timeout`` (seconds `stop` waits for each thread), and override `handle` (one
    item) or `run` (the whole loop). ``store``: the log to use (default: the worker's own
    connection to ``db_path``, opened by `start` and closed by `stop`).
    """

    thread_name: str = "crds-events-worker"
    stop_timeout: float = 60.0
    raise_if_stuck: bool = False
    """True: `stop` raises when a thread outlives ``stop_timeout`` (keeping the connection
    open for it); False: it carries on and closes the connection anyway."""

    def __init__(self, db_path: str | Path, *, store: EventStore | None = None,
                 threads: int = 1):
        # a PostgreSQL URL stays a string (Path would fold its "//")
        self.db_path = db_path if isinstance(db_path, str) and "://" in db_path \
            else Path(db_path)
        self.threads = threads
        self._store = store
        self._own_store = store is None
        self._queue: queue.Queue = queue.Queue()
        self._threads: list[threading.Thread] = []

    @property
    def store(self) -> EventStore:
        """The log this worker appends to (its own connection is opened on first use)."""
        if self._store is None:
            self._store = open_store(self.db_path)
        return self._store

    @property
    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    # --- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        """Open the connection, `resume`, then start the threads."""
        if self._threads:
            raise RuntimeError(f"{self.thread_name}: already started")
        self.store  # noqa: B018 - open the connection on this thread, before the workers
        self.resume()
        for n in range(self.threads):
            thread = threading.Thread(target=self.run, name=self.thread_name.format(n=n))
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """`STOP` for each thread, join them (``stop_timeout`` each), close our connection."""
        for _ in self._threads:
            self._queue.put(STOP)
        for thread in self._threads:
            thread.join(self.stop_timeout)
        stuck = [thread.name for thread in self._threads if thread.is_alive()]
        if stuck and self.raise_if_stuck:
            raise RuntimeError(f"{', '.join(stuck)} did not stop in time")
        self._threads = []
        if self._own_store and self._store is not None:
            self._store.close()
            self._store = None

    def resume(self) -> None:
        """Called by `start` before the threads run: enqueue work left over from a previous
        run (default: nothing)."""

    # --- the thread --------------------------------------------------------------------

    def put(self, item: Any) -> None:
        """Queue ``item`` for a worker thread."""
        self._queue.put(item)

    def run(self) -> None:
        """A worker thread: `handle` each item until `STOP`."""
        while True:
            item = self._queue.get()
            if item is STOP:
                return
            try:
                self.handle(item)
            except Exception:  # noqa: BLE001 - one bad item must not stop the worker
                log.exception("%s failed", self.describe(item))

    def handle(self, item: Any) -> None:
        """Do the work ``item`` stands for (the default `run` calls it)."""
        raise NotImplementedError(f"{type(self).__name__}.handle")

    def describe(self, item: Any) -> str:
        """What ``item`` is, for the log line when handling it fails."""
        return f"{self.thread_name}: {item!r}"
