"""The outbox worker: the thread of a running server that sends queued e-mail.

`crds_events.mail.outbox.Outbox` decides what is due and records each attempt; this worker
only keeps calling its `retry_due`, outside any write transaction: again at once while
there was something to send, else every ``poll_interval`` seconds (sooner when woken), and
after ``error_backoff`` seconds when a pass failed.
"""

from __future__ import annotations

import logging
import queue
from datetime import datetime
from pathlib import Path
from typing import Any

from crds_events import events as ev
from crds_events.handlers.worker import STOP, QueueWorker
from crds_events.mail.outbox import Outbox
from crds_events.mail.transports import Transport

__all__ = ["OutboxWorker"]

log = logging.getLogger(__name__)

_WAKE = object()  # put on the queue by `OutboxWorker.wake`


class OutboxWorker(QueueWorker):
    """A server component: a thread that keeps calling `Outbox.retry_due`.

    Opens its own store connection on `start` and closes it on `stop` (which joins, and
    raises if the thread is still sending after the timeout).
    """

    thread_name = "crds-events-outbox"
    stop_timeout = 60.0
    raise_if_stuck = True

    def __init__(
        self,
        db_path: str | Path,
        transport: Transport,
        *,
        sender: str,
        poll_interval: float = 1.0,
        error_backoff: float = 5.0,
        **policy: Any,
    ):
        super().__init__(db_path)
        self.transport = transport
        self.sender = sender
        self.poll_interval = poll_interval
        self.error_backoff = error_backoff
        self.policy = policy
        self.outbox: Outbox | None = None

    def start(self) -> None:
        self.outbox = Outbox(self.store, self.transport, sender=self.sender, **self.policy)
        super().start()

    def wake(self) -> None:
        """Look for due e-mail now rather than at the next poll."""
        self.put(_WAKE)

    def retry_due(self, now: datetime | None = None) -> list[ev.Event]:
        """For the scheduler: attempt due e-mails now (serialised with the thread)."""
        if self.outbox is None:
            raise RuntimeError("outbox worker not started")
        return self.outbox.retry_due(now)

    def run(self) -> None:
        outbox = self.outbox
        assert outbox is not None
        while True:
            wait = self.poll_interval
            try:
                if outbox.retry_due():
                    wait = 0.0
            except Exception:  # noqa: BLE001 - logged; the loop must survive to retry
                log.exception("outbox step failed")
                wait = self.error_backoff
            if self._woken(wait) is STOP:
                return

    def _woken(self, wait: float) -> object:
        """Wait up to ``wait`` seconds for the queue; `STOP` if it says so. Wake-ups that
        piled up count as one."""
        try:
            item = self._queue.get(timeout=wait) if wait else self._queue.get_nowait()
        except queue.Empty:
            return None
        while item is not STOP:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return _WAKE
        return STOP
