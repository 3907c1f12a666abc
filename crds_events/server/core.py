"""The composition root: one object that owns every long-lived part of a running server.

A `Server` is the event log's writer, the handler runner (its own connection and thread),
and the parts it is built from (`crds_events.server.parts`: e-mail, submissions, delivery,
reprocessing, the web app, the scheduler). It wires them once, in list order: handlers join
the runner after the projections, components start after the runner in that order and stop
in reverse, so whatever depends on the log stops before the log is closed.

Leadership. On a PostgreSQL log several ``serve`` processes may share one database: each
runs its `Component.every_process` components (the web app) from `Server.start`, and only
the process elected by `crds_events.server.leader` runs the others (the singletons: the
handler runner, watchers, workers, scheduler), starting them when elected and stopping them
when it loses the lead. Its LISTEN thread (`crds_events.store.postgres_notify`) wakes the
handler runner and the components that poll the log at every append of any process. On
SQLite the one process leads from start to stop and nothing changes: every component starts
in list order.

``crds-events serve`` calls `Server.serve_forever` on `build_server`'s server, which runs
until SIGINT or SIGTERM and then stops everything cleanly: threads joined, the log closed
with every acknowledged append committed (WAL mode: an interrupted process never leaves a
half-written transaction).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar, overload

from crds_events.config import Settings
from crds_events.errors import CrdsEventsError
from crds_events.handlers.runner import HandlerRunner
from crds_events.mail.compose import recipient_warnings
from crds_events.server.leader import Leadership, leader_for
from crds_events.server.parts import PARTS, Component, Job, PartContext, PartFactory
from crds_events.server.wsgi import WebServer
from crds_events.store import open_store
from crds_events.store.filerepair import FileStoreRepair, repair_file_store
from crds_events.store.handler import Handler
from crds_events.store.postgres import is_postgres_url, redact_url
from crds_events.store.postgres_notify import LogListener
from crds_events.store.projections import default_projections
from crds_events.submissions.review import finish_decisions
from crds_events.web.pages.health import ServerStatus

__all__ = ["Server", "ServerError", "build_server", "default_handlers"]

log = logging.getLogger(__name__)

T = TypeVar("T")

NOTIFY_FALLBACK_POLL = 3.0
"""Seconds between the handler runner's polls on PostgreSQL, where NOTIFY wakes it: the
poll only covers notifications lost while the LISTEN connection was down."""


class ServerError(CrdsEventsError, RuntimeError):
    pass


def default_handlers() -> list[Handler]:
    """The runner's own handlers, before any part's: the projections."""
    return list(default_projections())


class Server:
    """A crds-events server for one root directory (see `crds_events.config.Settings`),
    made of ``parts`` (see `crds_events.server.parts`).

    ``store`` is the writer for request-handling code (web, RPC); the handler runner has its
    own connection so that a long handler batch never blocks a reader in this process.
    ``handlers``: the runner's own handlers (default: the projections).
    """

    def __init__(
        self,
        settings: Settings,
        parts: Sequence[PartFactory] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        handlers: Sequence[Handler] | None = None,
        poll_interval: float = 0.1,
    ):
        self.shared = is_postgres_url(settings.database_url)  # several processes, one log
        if not self.shared and not settings.db_path.is_file():
            raise ServerError(
                f"{settings.db_path}: no event log here; run `crds-events init "
                f"--root {settings.root}` first"
            )
        self.settings = settings
        self.host = host
        self.port = port
        self.store = open_store(settings)
        self._runner_store = open_store(settings)
        self._started: list[Component] = []
        # `_started` changes on the election thread (PostgreSQL) and is read by /health
        self._lock = threading.RLock()
        self._stop_errors: list[str] = []
        self._stopping = threading.Event()
        self.file_repair = FileStoreRepair()  # what the last start's repair found
        try:
            wired, components = self._wire(
                default_handlers() if handlers is None else list(handlers), parts)
            if self.shared:
                poll_interval = max(poll_interval, NOTIFY_FALLBACK_POLL)
            self.runner = HandlerRunner(self._runner_store, wired, poll_interval=poll_interval)
        except BaseException:
            self.store.close()
            self._runner_store.close()
            raise
        runner = self.runner
        self._components = [Component("handlers", runner.start, runner.stop, runner,
                                      alive=lambda: runner.running, wake=runner.wake),
                            *components]
        self.leader: Leadership = leader_for(settings.database_url, on_elected=self._lead,
                                             on_deposed=self._step_down)
        self.listener: LogListener | None = None
        if self.shared:
            self.listener = LogListener(settings.database_url)
            for component in self._components:
                if component.wake is not None:
                    self.listener.subscribe(component.wake)

    def _wire(self, handlers: list[Handler], parts: Sequence[PartFactory]
              ) -> tuple[list[Handler], list[Component]]:
        """Ask each part in turn for its handlers, components and jobs (each part is given
        the jobs of the parts before it: the scheduler part runs them)."""
        components: list[Component] = []
        jobs: list[Job] = []
        names = {"handlers"}
        for make in parts:
            ctx = PartContext(self.store, self.host, self.port, self.status,
                              tuple(handlers), tuple(jobs))
            part = make(self.settings, ctx)
            for component in part.components:
                if component.name in names:
                    raise ServerError(f"this server already has a {component.name} component")
                names.add(component.name)
            handlers += part.handlers
            components += part.components
            jobs += part.jobs
        return handlers, components

    # --- what it is made of -----------------------------------------------------------------

    def component_names(self) -> list[str]:
        """Every component, in start order (the handler runner first)."""
        return [component.name for component in self._components]

    def running_components(self) -> list[str]:
        """Names of the components started and not yet stopped, in start order."""
        with self._lock:
            return [component.name for component in self._started]

    @overload
    def component(self, name: str) -> object: ...

    @overload
    def component(self, name: str, kind: type[T]) -> T: ...

    def component(self, name: str, kind: type | None = None) -> object:
        """The object behind component ``name`` (a worker, a watcher, the web server, the
        scheduler, ...), checked to be a ``kind`` when given."""
        for component in self._components:
            if component.name == name:
                target = component.target
                if kind is not None and not isinstance(target, kind):
                    raise ServerError(f"component {name} is a {type(target).__name__}, "
                                      f"not a {kind.__name__}")
                return target
        raise ServerError(f"this server has no {name} component")

    def status(self) -> ServerStatus:
        """The started components (alive or not), the runner's handlers and who leads,
        for /health."""
        with self._lock:
            started = list(self._started)
        return ServerStatus(
            components={c.name: c.alive() if c.alive is not None else True
                        for c in started},
            handlers=tuple(handler.name for handler in self.runner.handlers),
            leader=self.leader.info().as_dict(),
        )

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        for warning in recipient_warnings(self.settings):
            log.warning("%s", warning)
        if self.shared:
            for component in self._components:
                if component.every_process:
                    self._start_component(component)
            assert self.listener is not None
            self.listener.start()
        self.leader.start()  # SQLite: `_lead` now, on this thread; PostgreSQL: when elected

    def _start_component(self, component: Component) -> None:
        log.info("starting %s", component.name)
        component.start()
        with self._lock:
            self._started.append(component)

    def _lead(self) -> None:
        """Elected: repair, then start the singletons in list order (on SQLite: every
        component). On PostgreSQL this runs on the election thread."""
        self._repair()
        for component in self._components:
            if not (self.shared and component.every_process):
                self._start_component(component)

    def _step_down(self) -> None:
        """No longer leading: stop the singletons in reverse order (errors are logged and
        kept for `stop` to report)."""
        while True:
            with self._lock:
                leading = [c for c in self._started
                           if not (self.shared and c.every_process)]
                if not leading:
                    return
                component = leading[-1]
                self._started.remove(component)
            self._stop_component(component)

    def _stop_component(self, component: Component) -> None:
        try:
            component.stop()
        except Exception as exc:  # noqa: BLE001 - stop the rest before reporting
            log.exception("stopping %s failed", component.name)
            self._stop_errors.append(f"{component.name}: {exc}")

    def _repair(self) -> None:
        """Before anything runs: tidy what a crash or a lost race left in the file store
        (`crds_events.store.filerepair`) and finish interrupted review clean-ups."""
        try:
            self.file_repair = repair_file_store(self.settings, self.store)
            finish_decisions(self.settings, self.store)
        except Exception:  # noqa: BLE001 - tidying must not keep the server from starting
            log.exception("start-up repair failed; starting anyway")

    def stop(self) -> None:
        """Give up the lead (the singletons stop first, then the lock is released), stop
        the other components in reverse order, then close the log. Idempotent."""
        try:
            self.leader.stop()
        except Exception as exc:  # noqa: BLE001 - stop the rest before reporting
            log.exception("stopping the leader election failed")
            self._stop_errors.append(f"leader: {exc}")
        if self.listener is not None:
            self.listener.stop()
        while True:  # what a failed start left, and the every-process components
            with self._lock:
                if not self._started:
                    break
                component = self._started.pop()
            self._stop_component(component)
        self.store.close()
        self._runner_store.close()
        errors, self._stop_errors = self._stop_errors, []
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
            if "web" in self.component_names():
                web = f"web app on {self.component('web', WebServer).url}"
            else:
                web = "no web app"
            if self.shared:
                where = (f"log {redact_url(self.settings.database_url)}; the singletons run "
                         f"in whichever process leads, this is {self.leader.name}")
            else:
                where = f"log {self.settings.db_path}"
            announce(
                f"crds-events serving {self.settings.observatory} from {self.settings.root} "
                f"({where}); {web}. "
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
    """The server ``crds-events serve`` runs: the projections and every part of `PARTS`."""
    return Server(settings, PARTS, host=host, port=port)
