"""The composition root: one object that owns every long-lived part of a running server.

Today: the event log writer and the handler runner thread. Later issues add their parts
(directory observers, the scheduler, the web app) with `Server.add_component`; components
start in the order added and stop in reverse, so whatever depends on the log stops before
the log is closed.

``crds-events serve`` calls `Server.serve_forever`, which runs until SIGINT or SIGTERM and
then stops everything cleanly: threads joined, the log closed with every acknowledged append
committed (WAL mode: an interrupted process never leaves a half-written transaction).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from crds_events.config import Settings
from crds_events.handlers import Handler
from crds_events.handlers.runner import HandlerRunner
from crds_events.store.eventlog import SQLiteEventStore
from crds_events.store.projections import default_projections

__all__ = ["Server", "ServerError", "default_handlers"]

log = logging.getLogger(__name__)


class ServerError(RuntimeError):
    pass


@dataclass
class _Component:
    name: str
    start: Callable[[], None]
    stop: Callable[[], None]


def default_handlers() -> list[Handler]:
    """The handlers a server runs: today the projections; later issues append theirs."""
    return list(default_projections())


class Server:
    """A crds-events server for one root directory (see `crds_events.config.Settings`).

    ``store`` is the writer for request-handling code (web, RPC); the handler runner has its
    own connection so that a long handler batch never blocks a reader in this process.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        handlers: Sequence[Handler] | None = None,
        poll_interval: float = 0.1,
    ):
        if not settings.db_path.is_file():
            raise ServerError(
                f"{settings.db_path}: no event log here; run `crds-events init "
                f"--root {settings.root}` first"
            )
        self.settings = settings
        self.host = host
        self.port = port
        self.store = SQLiteEventStore(settings.db_path)
        self._runner_store = SQLiteEventStore(settings.db_path)
        self.runner = HandlerRunner(
            self._runner_store,
            default_handlers() if handlers is None else handlers,
            poll_interval=poll_interval,
        )
        self.web: Any = None  # the WebServer, once crds_events.server.wsgi.register has added it
        self._components: list[_Component] = []
        self._started: list[_Component] = []
        self._stopping = threading.Event()
        self.add_component("handlers", self.runner.start, self.runner.stop)

    def add_component(self, name: str, start: Callable[[], None], stop: Callable[[], None]) -> None:
        """Register a part to start with the server and stop (joined) before the log closes."""
        if self._started:
            raise ServerError("cannot add components to a running server")
        self._components.append(_Component(name, start, stop))

    def running_components(self) -> list[str]:
        """Names of the components started and not yet stopped, in start order."""
        return [component.name for component in self._started]

    def start(self) -> None:
        for component in self._components:
            log.info("starting %s", component.name)
            component.start()
            self._started.append(component)

    def stop(self) -> None:
        """Stop started components in reverse order, then close the log. Idempotent."""
        errors = []
        while self._started:
            component = self._started.pop()
            try:
                component.stop()
            except Exception as exc:  # noqa: BLE001 - stop the rest before reporting
                log.exception("stopping %s failed", component.name)
                errors.append(f"{component.name}: {exc}")
        self.store.close()
        self._runner_store.close()
        if errors:
            raise ServerError("; ".join(errors))

    def request_stop(self) -> None:
        """Make `serve_forever` return (thread-safe; what the signal handlers call)."""
        self._stopping.set()

    def serve_forever(self, announce: Callable[[str], None] = print) -> None:
        """Start, run until SIGINT/SIGTERM (or `request_stop`), stop cleanly."""
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, lambda *_: self.request_stop())
        try:
            self.start()
            web = f"web app on {self.web.url}" if self.web is not None else "no web app"
            announce(
                f"crds-events serving {self.settings.observatory} from {self.settings.root} "
                f"(log {self.settings.db_path}); {web}. "
                "Ctrl-C or SIGTERM stops."
            )
            while not self._stopping.wait(0.5):
                pass
            announce("crds-events stopping...")
        finally:
            try:
                self.stop()
            finally:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
        announce("crds-events stopped cleanly.")


def build_server(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000) -> Server:
    """The server `crds-events serve` runs: projections and every part later issues add.

    Order matters twice. Handlers that react to one another's events join the runner in
    order: the e-mail composer before submissions and delivery, so it sees the events they
    cause. Components stop in reverse order: the scheduler is added last so that it (and the
    jobs it runs) stops before the parts those jobs call.
    """
    from crds_events.handlers import delivery, email, reprocessing, submissions
    from crds_events.server import scheduler, wsgi

    server = Server(settings, host=host, port=port)
    outbox = email.register(server)
    submissions.register(server)
    delivery.register(server)
    repro = reprocessing.register(server)
    wsgi.register(server)
    jobs = scheduler.register(server, outbox=outbox)
    delivery.schedule_reconcile(server, 60.0)
    jobs.add_job("repro-held", repro.check_held, 60.0)
    return server
