"""Feeds registered handlers the events after their checkpoints.

Each step, for one handler, is one write transaction::

    BEGIN IMMEDIATE
      checkpoint = _checkpoints[handler]          # re-read under the write lock
      records    = events after checkpoint of the consumed types (at most `batch`)
      handler.handle_batch(tx, records)           # table writes, appends
      _checkpoints[handler] = last position examined
    COMMIT

so a handler's effects and its checkpoint commit together (exactly once), and a crash or an
exception leaves both as they were. Because the checkpoint is re-read under the write lock,
two runners on one database cannot process the same event twice either.

`HandlerRunner.start` runs the steps in a background thread until `stop` (which joins it).
When idle it sleeps ``poll_interval`` seconds, or less when `HandlerRunner.wake` is called
(on PostgreSQL, by the process's LISTEN thread at every append of any process; the poll then
only covers lost notifications).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from crds_events.store.eventlog import SQLiteEventStore
from crds_events.store.handler import Handler, get_checkpoint, set_checkpoint

__all__ = ["HandlerRunner"]

log = logging.getLogger(__name__)


class HandlerRunner:
    """Runs handlers over the log. Give it its own `SQLiteEventStore` (connection)."""

    def __init__(
        self,
        store: SQLiteEventStore,
        handlers: Iterable[Handler],
        *,
        batch: int = 500,
        poll_interval: float = 0.1,
        error_backoff: float = 2.0,
    ):
        self.store = store
        self.handlers: list[Handler] = list(handlers)
        names = [h.name for h in self.handlers]
        if len(set(names)) != len(names) or not all(names):
            raise ValueError(f"handler names must be unique and non-empty: {names}")
        self.batch = batch
        self.poll_interval = poll_interval
        self.error_backoff = error_backoff
        self.errors: list[tuple[str, int, BaseException]] = []  # (handler, checkpoint, error)
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by `wake` and `stop`: look again now
        self._thread: threading.Thread | None = None
        self._setup_done = False

    # --- stepping -------------------------------------------------------------------------

    def setup(self) -> None:
        """Create every handler's tables (idempotent)."""
        with self.store.transaction() as tx:
            for handler in self.handlers:
                handler.setup(tx)
        self._setup_done = True

    def step(self, handler: Handler) -> int:
        """Process at most one batch for ``handler``; return how many events it was given."""
        if not self._setup_done:
            self.setup()
        with self.store.transaction() as tx:
            checkpoint = get_checkpoint(tx, handler.name)
            head = tx.head()
            if checkpoint >= head:
                return 0
            types = handler.consumes or None
            records = tx.read_all(checkpoint, types=types, limit=self.batch)
            # A full batch may stop short of the head; otherwise everything up to the head
            # (as seen before the handler appended anything) has been examined.
            last = records[-1].position if len(records) == self.batch else head
            if records:
                handler.handle_batch(tx, records)
            set_checkpoint(tx, handler.name, last)
            return len(records)

    def run_once(self) -> int:
        """One step for every handler that is behind; total events handled."""
        if not self._setup_done:
            self.setup()
        head = self.store.head()
        total = 0
        for handler in self.handlers:
            if get_checkpoint(self.store, handler.name) < head:
                total += self.step(handler)
        return total

    def run_until_idle(self, max_steps: int = 1_000_000) -> int:
        """Step until every handler has reached the head (including events handlers
        appended along the way); total events handled."""
        if not self._setup_done:
            self.setup()
        total = 0
        for _ in range(max_steps):
            head = self.store.head()
            if all(get_checkpoint(self.store, h.name) >= head for h in self.handlers):
                return total
            total += self.run_once()
        raise RuntimeError(f"handlers not idle after {max_steps} steps")

    def lag(self) -> dict[str, int]:
        """How many positions each handler is behind the head."""
        head = self.store.head()
        return {h.name: head - get_checkpoint(self.store, h.name) for h in self.handlers}

    # --- background thread ---------------------------------------------------------------

    def start(self) -> None:
        """Run in a background thread until `stop`."""
        if self._thread is not None:
            raise RuntimeError("runner already started")
        self.setup()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="crds-events-handlers")
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the loop to stop after its current step and join the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError("handler runner did not stop in time")
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        """The log may have grown: step now rather than at the next poll (thread-safe)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            # cleared before looking, so a wake-up during the step is not lost
            self._wake.clear()
            try:
                handled = self._run_once_guarded()
            except Exception:  # noqa: BLE001 - logged; the loop must survive to retry
                log.exception("handler runner step failed")
                handled = 0
            if handled == 0:
                self._wake.wait(self.poll_interval)

    def _run_once_guarded(self) -> int:
        """Like `run_once`, but a failing handler is logged and retried after a back-off
        instead of stopping the others (its checkpoint has not moved)."""
        head = self.store.head()
        total = 0
        for handler in self.handlers:
            if self._stop.is_set():
                break
            if get_checkpoint(self.store, handler.name) >= head:
                continue
            try:
                total += self.step(handler)
            except Exception as exc:  # noqa: BLE001
                checkpoint = get_checkpoint(self.store, handler.name)
                self.errors.append((handler.name, checkpoint, exc))
                log.exception("handler %s failed after position %d", handler.name, checkpoint)
                self._stop.wait(self.error_backoff)
        return total

