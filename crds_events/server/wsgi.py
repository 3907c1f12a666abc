"""The production web server: waitress (pure Python, threaded) serving `create_app`.

The server's ``web`` part (`crds_events.server.parts`) runs one as the ``web`` component: it
binds the server's host and port when the server starts (127.0.0.1:8000 by default) and,
on stop, stops accepting, lets the requests in progress finish (bounded), closes every
connection and joins its threads, so ``serve`` ends with nothing left running.

Limits: request bodies over ``max_request_body_size`` are refused by waitress before the app
sees them (the app has its own, smaller limit for JSON-RPC); idle connections close after
``channel_timeout`` seconds; at most ``connection_limit`` connections are open at once.

Threads: ``threads`` serve pages, JSON-RPC and downloads; the app's stream budget
(`crds_events.web.streams`, ``stream_limit`` streams at once) gets as many threads again,
so open event streams can never hold all the threads and stall everyone else. Channels
keep reading while a request runs (``channel_request_lookahead``), so a stream notices at
once when its client goes away and gives its slot back.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from waitress import wasyncore
from waitress.server import create_server

__all__ = ["WebServer", "DEFAULT_THREADS"]

log = logging.getLogger(__name__)

DEFAULT_THREADS = 8


def _app_state(app: Any) -> Any:
    """The crds-events app's `WebState` (None for another WSGI app)."""
    return getattr(app, "extensions", {}).get("crds_events")


class WebServer:
    """One waitress server for a WSGI ``app``, started and stopped from other threads."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8000, *,
                 threads: int = DEFAULT_THREADS, channel_timeout: int = 120,
                 max_request_body_size: int = 2 * 1024**3, connection_limit: int = 200,
                 stop_timeout: float = 10.0):
        self.app = app
        self.host = host
        self.port = port
        budget = getattr(_app_state(app), "streams", None)
        self.page_threads = threads
        self.stream_threads = budget.total if budget is not None else 0
        self.options = dict(threads=threads + self.stream_threads,
                            channel_timeout=channel_timeout, channel_request_lookahead=1,
                            max_request_body_size=max_request_body_size,
                            connection_limit=connection_limit, ident="crds-events",
                            asyncore_use_poll=True, clear_untrusted_proxy_headers=True)
        self.stop_timeout = stop_timeout
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` actually bound (port 0 binds a free port)."""
        if self._server is None:
            raise RuntimeError("web server not started")
        return f"http://{self.host}:{self._server.effective_port}"

    @property
    def bound_port(self) -> int:
        if self._server is None:
            raise RuntimeError("web server not started")
        return int(self._server.effective_port)

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("web server already started")
        self._server = create_server(self.app, host=self.host, port=self.port, **self.options)
        self._thread = threading.Thread(target=self._server.run, name="crds-events-web")
        self._thread.start()
        log.info("web server listening on %s", self.url)

    def stop(self) -> None:
        """Stop accepting, finish requests in progress, close connections, join threads."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        app_state = _app_state(self.app)
        if app_state is not None:
            app_state.stopping.set()  # streaming responses end instead of holding a worker
        # Workers finish their current request and exit; queued requests are dropped.
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=self.stop_timeout)
        # Closing dispatchers belongs to the loop thread: hand it the job through the trigger.
        # OSError (EBADF): the loop already closed its trigger; nothing is left to hand over
        with contextlib.suppress(OSError):
            server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        thread.join(self.stop_timeout)
        if thread.is_alive():  # the trigger was lost (should not happen): close from here
            with contextlib.suppress(OSError):
                wasyncore.close_all(server._map)
            thread.join(self.stop_timeout)
        self._server = self._thread = None
        if app_state is not None:
            app_state.close()

