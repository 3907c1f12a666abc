"""Login back-off: a sliding window of failed logins per account and per client address.

After `LIMIT` failures within `WINDOW` seconds for an account, or from an address, further
attempts for it are refused - even with the right password - until the oldest failure
leaves the window (`LoginBackoff.retry_after` says how long). A successful login clears the
account's failures (not the address's: one right password must not unlock guessing at every
other account from the same place).

The window is kept in memory, per process: a restart forgets it, and under gunicorn each
worker process counts on its own (so an attacker spreading over W workers gets W x `LIMIT`
tries a minute - still 40 a minute instead of thousands). Nothing goes to the event log:
a failed login is not a fact worth keeping forever, and recording it would let anonymous
callers grow the log.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

__all__ = ["LoginBackoff", "LIMIT", "WINDOW"]

LIMIT = 10  # failures within the window, per account or per address
WINDOW = 60.0  # seconds
# Keys remembered at most (anonymous callers choose the account names, so the table must
# not grow without bound): beyond it the least recently failed keys are forgotten first.
MAX_KEYS = 50_000


class LoginBackoff:
    """Failed logins per key (``account:<name>``, ``address:<ip>``); thread-safe."""

    def __init__(self, limit: int = LIMIT, window: float = WINDOW, *,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS):
        self.limit = limit
        self.window = window
        self._clock = clock
        self._max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        """The key's failures still in the window (the key is dropped when none are)."""
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, keys: Iterable[str]) -> int:
        """Seconds until any of ``keys`` may try again (0: allowed now)."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            for key in keys:
                times = self._recent(key, now)
                if times is not None and len(times) >= self.limit:
                    # the attempt is allowed once enough failures have left the window
                    wait = max(wait, times[-self.limit] + self.window - now)
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, keys: Iterable[str]) -> None:
        """Count one failed login against each of ``keys``."""
        now = self._clock()
        with self._lock:
            for key in keys:
                times = self._recent(key, now)
                if times is None:
                    times = self._failures[key] = deque(maxlen=self.limit)
                times.append(now)
                self._failures.move_to_end(key)
            while len(self._failures) > self._max_keys:
                self._failures.popitem(last=False)

    def succeeded(self, key: str) -> None:
        """Forget ``key``'s failures (a right password for the account)."""
        with self._lock:
            self._failures.pop(key, None)
