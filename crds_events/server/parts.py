"""The parts of a running server, declared as data: `PARTS` is what ``crds-events serve`` runs.

A part is a function ``(settings, ctx) -> Part``. It builds its objects and says what the
server does with them: its `Part.handlers` join the handler runner, its `Part.components`
start with the server and stop (joined) before the log closes, and its `Part.jobs` are run
by the scheduler. Options are keyword arguments, bound with `functools.partial`.

`crds_events.server.core.Server` wires a list of parts in order, and the order is the rule:

* handlers run in list order, after the runner's own (the projections);
* components start in list order and stop in reverse; on a PostgreSQL log shared by
  several server processes only the leader runs them (`crds_events.server.leader`), except
  those marked `Component.every_process` (the web app), which every process runs;
* a part gets what it needs of the server, and of the parts before it, from its
  `PartContext`: the server's store and address, a callable for the server's status
  (/health), the handlers and the jobs of the parts before it (the scheduler runs those).

Tests wire the parts they need, e.g. ``Server(settings, [partial(mail, poll_interval=0.1),
submissions])``, and reach a part's object with `Server.component`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from crds_events.accounts.locks import expire_locks
from crds_events.config import Settings
from crds_events.handlers.delivery import DeliveryRequestHandler, DeliveryWorker
from crds_events.handlers.email import DEFAULT_BASE_URL, EmailComposer
from crds_events.handlers.outbox import OutboxWorker
from crds_events.handlers.reprocessing import ReprocessingHandler, ReprocessingService
from crds_events.handlers.submissions import SubmissionStartedHandler, SubmissionWorker
from crds_events.mail.transports import Transport, transport_for
from crds_events.server.scheduler import Scheduler
from crds_events.server.wsgi import DEFAULT_THREADS, WebServer
from crds_events.store import EventStore, log_target, open_store
from crds_events.store.folds import EMAILS
from crds_events.store.handler import Handler
from crds_events.store.projections import TableProjection
from crds_events.submissions.contained import CertifyLimits
from crds_events.watch.delivery import DeliveryWatcher
from crds_events.watch.ingest import IngestWatcher
from crds_events.web import create_app
from crds_events.web.pages.health import ServerStatus, attach_server

__all__ = [
    "LOCK_EXPIRY_JOB",
    "OUTBOX_RETRY_JOB",
    "PARTS",
    "RECONCILE_JOB",
    "REPRO_HELD_JOB",
    "Component",
    "Job",
    "Part",
    "PartContext",
    "PartFactory",
    "delivery",
    "locks",
    "mail",
    "reprocessing",
    "scheduler",
    "submissions",
    "web",
]

LOCK_EXPIRY_JOB = "lock-expiry"
OUTBOX_RETRY_JOB = "outbox-retry"
RECONCILE_JOB = "delivery-reconcile"
REPRO_HELD_JOB = "repro-held"


class Startable(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class Component:
    """Something that runs while the server runs: started, then stopped (joined)."""

    name: str
    start: Callable[[], None]
    stop: Callable[[], None]
    target: object = None  # the object itself (what `Server.component` returns)
    alive: Callable[[], bool] | None = None  # for /health; None: alive while started
    # True: runs in every server process (the web app). False: a singleton, run only by the
    # leader (`crds_events.server.leader`: several processes may share a PostgreSQL log).
    every_process: bool = False
    # Called when the log may have grown (PostgreSQL NOTIFY from any process), so a
    # component that polls the log can look at once; None: it does not poll.
    wake: Callable[[], None] | None = None

    @classmethod
    def of(cls, name: str, target: Startable, **options: Any) -> Component:
        return cls(name, target.start, target.stop, target, **options)


@dataclasses.dataclass(frozen=True)
class Job:
    """A periodic job for the scheduler: ``func()`` every ``seconds``."""

    name: str
    func: Callable[[], Any]
    seconds: float
    run_at_start: bool = False


@dataclasses.dataclass(frozen=True)
class Part:
    """What one part adds to a server."""

    name: str
    handlers: tuple[Handler, ...] = ()
    components: tuple[Component, ...] = ()
    jobs: tuple[Job, ...] = ()


@dataclasses.dataclass(frozen=True)
class PartContext:
    """What a part may use of the server it joins (the ``ctx`` of a part function)."""

    store: EventStore  # the server's writer, shared with the web app
    host: str
    port: int
    status: Callable[[], ServerStatus]  # the server's status, once it runs
    handlers: tuple[Handler, ...] = ()  # the runner's handlers so far
    jobs: tuple[Job, ...] = ()  # the jobs of the parts before this one


PartFactory = Callable[[Settings, PartContext], Part]


def _base_url(host: str, port: int) -> str:
    """The web app's address for links in e-mail (the default one when bound to all)."""
    if host in ("", "0.0.0.0", "::"):
        return DEFAULT_BASE_URL
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"


def _new(handlers: Iterable[Handler], ctx: PartContext) -> tuple[Handler, ...]:
    """``handlers`` the runner does not have yet (the projections may include ours)."""
    known = {handler.name for handler in ctx.handlers}
    return tuple(handler for handler in handlers if handler.name not in known)


# --- the parts -------------------------------------------------------------------------------


def mail(settings: Settings, ctx: PartContext, *, base_url: str | None = None,
         transport: Transport | None = None, poll_interval: float = 1.0,
         context_kinds: Iterable[str] | None = None, mail_history: bool = False,
         retry_every: float = 30.0, **policy: Any) -> Part:
    """E-mail: the ``emails`` projection and the composer join the runner; the outbox
    worker is the "mail" component; the scheduler's "outbox-retry" job sends due e-mail
    every ``retry_every`` seconds. ``policy``: `Outbox` keywords (backoff_base,
    backoff_max, max_attempts, batch)."""
    composer = EmailComposer(settings, base_url=base_url or _base_url(ctx.host, ctx.port),
                             context_kinds=context_kinds, mail_history=mail_history)
    worker = OutboxWorker(log_target(settings), transport or transport_for(settings),
                          sender=settings.smtp_from, poll_interval=poll_interval, **policy)
    return Part("mail", handlers=_new((TableProjection(EMAILS), composer), ctx),
                components=(Component.of("mail", worker, wake=worker.wake),),
                jobs=(Job(OUTBOX_RETRY_JOB, worker.retry_due, retry_every),))


def submissions(settings: Settings, ctx: PartContext, *, settle: float = 0.5,
                scan_interval: float = 60.0, threads: int = 4,
                certify_limits: CertifyLimits | None = None) -> Part:
    """Submissions: the started-submission handler joins the runner; the processing worker
    (``threads`` threads: instruments in parallel) and the ingest watcher are components.
    ``certify_limits``: time and memory for certifying one upload (default 60 s, 2 GiB)."""
    worker = SubmissionWorker(settings, threads=threads, certify_limits=certify_limits)
    watcher = IngestWatcher(settings, settle=settle, scan_interval=scan_interval)
    return Part("submissions", handlers=_new((SubmissionStartedHandler(worker),), ctx),
                components=(Component.of("submission-worker", worker),
                            Component.of("ingest-watcher", watcher)))


def delivery(settings: Settings, ctx: PartContext, *, scan_interval: float | None = 60.0,
             resume_interval: float | None = 30.0,
             reconcile_every: float | None = None) -> Part:
    """Delivery: the request handler joins the runner; the delivery-directory watcher and
    the publishing worker are components.

    ``scan_interval``: seconds between full reconciliations run by the watcher itself.
    ``reconcile_every``: hand them to the scheduler instead (the "delivery-reconcile" job;
    the watcher keeps its start-up scan).
    """
    watcher = DeliveryWatcher(settings,
                              scan_interval=None if reconcile_every else scan_interval)
    worker = DeliveryWorker(settings, resume_interval=resume_interval,
                            on_created=watcher.enqueue)
    jobs = (Job(RECONCILE_JOB, watcher.reconcile, reconcile_every),) if reconcile_every else ()
    return Part("delivery", handlers=_new((DeliveryRequestHandler(settings, worker),), ctx),
                # The watcher starts first: a .cat published by the worker is always watched.
                components=(Component.of("delivery-watcher", watcher),
                            Component.of("delivery-worker", worker)),
                jobs=jobs)


def reprocessing(settings: Settings, ctx: PartContext, *, held_every: float = 60.0) -> Part:
    """Reprocessing: the handler joins the runner; the affected-datasets worker is the
    "reprocessing" component; the scheduler's "repro-held" job checks held results every
    ``held_every`` seconds."""
    service = ReprocessingService(settings)
    return Part("reprocessing", handlers=_new((ReprocessingHandler(service),), ctx),
                components=(Component.of("reprocessing", service),),
                jobs=(Job(REPRO_HELD_JOB, service.check_held, held_every),))


def web(settings: Settings, ctx: PartContext, *, threads: int = DEFAULT_THREADS) -> Part:
    """The web app (pages, JSON-RPC, downloads, uploads) on the server's address, sharing
    its store for writes, as the "web" component; /health reports the server's status."""
    app = create_app(settings, store=ctx.store)
    attach_server(app, ctx.status)
    server = WebServer(app, ctx.host, ctx.port, threads=threads)
    return Part("web", components=(Component.of("web", server, every_process=True),))


def _expire_locks(db_path: str | Path) -> Callable[[], list]:
    def expire() -> list:
        with open_store(db_path) as store:
            return expire_locks(store)

    return expire


def locks(settings: Settings, ctx: PartContext, *, expire_every: float = 60.0) -> Part:
    """Instrument locks: the scheduler's "lock-expiry" job records expired locks."""
    return Part("locks", jobs=(Job(LOCK_EXPIRY_JOB, _expire_locks(log_target(settings)),
                                   expire_every),))


def scheduler(settings: Settings, ctx: PartContext, *, max_workers: int = 4) -> Part:
    """The scheduler, running the jobs of the parts before it, as the "scheduler"
    component."""
    jobs = Scheduler(max_workers=max_workers)
    for job in ctx.jobs:
        jobs.add_job(job.name, job.func, job.seconds, run_at_start=job.run_at_start)
    return Part("scheduler", components=(Component.of("scheduler", jobs),))


PARTS: tuple[PartFactory, ...] = (
    # E-mail first: the composer joins the runner before the handlers whose events it
    # mails, and the outbox worker starts before (and stops after) the parts causing e-mail.
    mail,
    submissions,
    partial(delivery, reconcile_every=60.0),
    reprocessing,
    web,
    locks,
    # Last: it stops first, so that no job runs against a part that has stopped.
    scheduler,
)
