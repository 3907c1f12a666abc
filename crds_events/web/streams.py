"""The budget of long-lived responses (server-sent event streams).

A stream holds a server thread for as long as it is open, so streams without a bound could
take every thread and leave pages and JSON-RPC queued behind them (issue 14: 8 open
submission monitors made an anonymous ``get_default_context`` wait 23.5 s). Each app keeps
one `StreamBudget`: at most ``stream_limit`` streams open at once in all and
``stream_limit_per_user`` per user (settings); a stream beyond it is refused at once
(429 with Retry-After) instead of waiting for a thread. `crds_events.server.wsgi.WebServer`
runs that many threads more than the page threads, so the page threads are never all held.
Every stream also ends after a bounded time (the browser reconnects), so slots turn over.
"""

from __future__ import annotations

import threading
from collections import Counter

from crds_events.errors import CrdsEventsError

__all__ = ["StreamBudget", "StreamSlot", "StreamBudgetExceeded", "RETRY_AFTER"]

RETRY_AFTER = 5  # seconds a refused client is asked to wait (streams end within 25 s)


class StreamBudgetExceeded(CrdsEventsError):
    """No stream slot is free for this user (or on this server); the message says which."""


class StreamSlot:
    """One open stream's place in the budget; `release` gives it back (once, idempotent)."""

    def __init__(self, budget: StreamBudget, user: str):
        self._budget = budget
        self.user = user
        self._released = False

    def release(self) -> None:
        # called from both the stream's end and the response's close: count once
        with self._budget._lock:
            if self._released:
                return
            self._released = True
            self._budget._release(self.user)


class StreamBudget:
    """At most ``total`` streams open at once, at most ``per_user`` of them for one user."""

    def __init__(self, total: int, per_user: int):
        if total < 1 or per_user < 1:
            raise ValueError(f"stream budget: total {total} and per user {per_user} "
                             "must both be at least 1")
        self.total = total
        self.per_user = per_user
        self._lock = threading.Lock()
        self._open: Counter[str] = Counter()

    def acquire(self, user: str) -> StreamSlot:
        """A slot for one more stream of ``user``, or `StreamBudgetExceeded`."""
        with self._lock:
            if self._open[user] >= self.per_user:
                raise StreamBudgetExceeded(
                    f"too many open progress streams: {user} has {self._open[user]} open "
                    f"(at most {self.per_user} per user); close one or retry in "
                    f"{RETRY_AFTER} s")
            in_use = sum(self._open.values())
            if in_use >= self.total:
                raise StreamBudgetExceeded(
                    f"too many open progress streams: {in_use} open on this server (at "
                    f"most {self.total}); retry in {RETRY_AFTER} s")
            self._open[user] += 1
            return StreamSlot(self, user)

    def _release(self, user: str) -> None:  # with the lock held
        self._open[user] -= 1
        if self._open[user] <= 0:
            del self._open[user]

    def open_streams(self) -> dict[str, int]:
        """Open streams per user (a copy)."""
        with self._lock:
            return dict(self._open)
