"""Small helpers every test package uses: polling for a condition, a free loopback port."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.05) -> T:
    """Call ``predicate`` until it returns something truthy or ``timeout`` seconds pass.

    Returns the last value (falsy on a timeout), so ``assert wait_for(...)`` fails on time-out
    and ``value = wait_for(...)`` hands back what was waited for.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
