"""Periodic jobs of a running server, on APScheduler 3 (`BackgroundScheduler`).

Jobs are defined in code, not stored: each is a name, a callable taking no arguments and an
interval. Every job runs with ``coalesce=True`` (runs missed while the process was busy or
asleep collapse into one), ``max_instances=1`` (a slow run is never overlapped by the next)
and a misfire grace time of one interval (a run late by more than that is skipped; the next
one comes at its time). A job that raises is logged and counted, and runs again next time.

Which jobs there are is decided by the parts that own the work, not here, so this module
imports none of them: each part of the server (`crds_events.server.parts`) returns its
jobs, and the ``scheduler`` part, last in the list, runs the jobs of the parts before it
(lock expiry, outbox retries, the delivery reconciliation, the held-reprocessing check).

Jobs run in the scheduler's worker threads, so each opens what it needs (a store
connection) itself, or is serialised with the thread that owns it. `Scheduler.stop` shuts
the scheduler down and joins its threads.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from crds_events.errors import CrdsEventsError

__all__ = ["JobStats", "Scheduler", "SchedulerError"]

log = logging.getLogger(__name__)


class SchedulerError(CrdsEventsError, RuntimeError):
    pass


@dataclasses.dataclass
class JobStats:
    """What a job has done so far (read by tests and status pages)."""

    name: str
    seconds: float
    runs: int = 0
    failures: int = 0
    last_started: float | None = None  # time.time()
    last_finished: float | None = None
    last_error: str = ""
    last_result: Any = None


class Scheduler:
    """A `BackgroundScheduler` with named interval jobs (see the module docstring)."""

    def __init__(self, *, max_workers: int = 4):
        self.max_workers = max_workers
        self._scheduler = self._new_scheduler()
        self._jobs: dict[str, tuple[Callable[[], Any], float, bool]] = {}
        self._stats: dict[str, JobStats] = {}
        self._running_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._started = False

    def _new_scheduler(self) -> BackgroundScheduler:
        return BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(self.max_workers)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )

    # --- jobs ---------------------------------------------------------------------------

    def add_job(self, name: str, func: Callable[[], Any], seconds: float, *,
                run_at_start: bool = False) -> None:
        """Run ``func()`` every ``seconds`` (and once at start with ``run_at_start``).

        Names are unique; adding to a running scheduler schedules at once.
        """
        if not name or not isinstance(name, str):
            raise SchedulerError(f"job name {name!r}: must be a non-empty string")
        if not callable(func):
            raise SchedulerError(f"job {name}: {func!r} is not callable")
        if not (isinstance(seconds, int | float) and seconds > 0):
            raise SchedulerError(f"job {name}: interval {seconds!r} must be a positive number "
                                 "of seconds")
        with self._lock:
            if name in self._jobs:
                raise SchedulerError(f"job {name}: already scheduled")
            self._jobs[name] = (func, float(seconds), run_at_start)
            self._stats[name] = JobStats(name, float(seconds))
            self._running_locks[name] = threading.Lock()
            if self._started:
                self._schedule(name)

    def remove_job(self, name: str) -> None:
        with self._lock:
            if name not in self._jobs:
                raise SchedulerError(f"job {name}: no such job")
            del self._jobs[name]
            if self._started:
                self._scheduler.remove_job(name)

    def _schedule(self, name: str) -> None:
        func, seconds, run_at_start = self._jobs[name]
        first = datetime.now(UTC) + (timedelta(0) if run_at_start else timedelta(seconds=seconds))
        self._scheduler.add_job(
            self._run, "interval", args=(name,), id=name, name=name, seconds=seconds,
            next_run_time=first, coalesce=True, max_instances=1,
            misfire_grace_time=max(1, int(seconds)), replace_existing=False,
        )

    def _run(self, name: str) -> Any:
        with self._lock:
            entry = self._jobs.get(name)
            stats = self._stats.get(name)
            guard = self._running_locks.get(name)
        if entry is None or stats is None or guard is None:
            return None
        # a manual run_job and a scheduled run never overlap either
        if not guard.acquire(blocking=False):
            log.info("job %s: still running; this run is skipped", name)
            return None
        try:
            stats.last_started = time.time()
            try:
                result = entry[0]()
            except Exception as exc:  # noqa: BLE001 - logged and counted; runs again next time
                log.exception("job %s failed", name)
                # runs and failures change together, so a reader never sees one without the other
                with self._lock:
                    stats.runs += 1
                    stats.failures += 1
                    stats.last_error = f"{type(exc).__name__}: {exc}"
                    stats.last_finished = time.time()
                return None
            with self._lock:
                stats.runs += 1
                stats.last_result = result
                stats.last_error = ""
                stats.last_finished = time.time()
            return result
        finally:
            guard.release()

    def run_job(self, name: str) -> Any:
        """Run ``name`` now in this thread (its result; None if it failed or was running)."""
        if name not in self._jobs:
            raise SchedulerError(f"job {name}: no such job")
        return self._run(name)

    def job_names(self) -> list[str]:
        with self._lock:
            return sorted(self._jobs)

    def stats(self, name: str) -> JobStats:
        with self._lock:
            stats = self._stats.get(name)
        if stats is None:
            raise SchedulerError(f"job {name}: no such job")
        return dataclasses.replace(stats)

    def describe(self) -> list[dict]:
        """Each job as scheduled: name, seconds, next_run, and the APScheduler policy
        (coalesce, max_instances, misfire_grace_time); next_run is None while stopped."""
        rows = []
        for name in self.job_names():
            job = self._scheduler.get_job(name) if self._started else None
            stats = self.stats(name)
            rows.append({
                "name": name, "seconds": stats.seconds,
                "next_run": job.next_run_time if job is not None else None,
                "coalesce": job.coalesce if job is not None else True,
                "max_instances": job.max_instances if job is not None else 1,
                "misfire_grace_time": (job.misfire_grace_time if job is not None
                                       else max(1, int(stats.seconds))),
                "runs": stats.runs, "failures": stats.failures,
                "last_error": stats.last_error,
            })
        return rows

    def next_run(self, name: str) -> datetime | None:
        job = self._scheduler.get_job(name) if self._started else None
        return job.next_run_time if job is not None else None

    # --- life cycle -----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._started

    def start(self) -> None:
        with self._lock:
            if self._started:
                raise SchedulerError("scheduler already started")
            for name in self._jobs:
                self._schedule(name)
            self._scheduler.start()
            self._started = True

    def stop(self, wait: bool = True) -> None:
        """Stop scheduling; with ``wait`` let running jobs finish and join every thread."""
        with self._lock:
            if not self._started:
                return
            self._started = False
        self._scheduler.shutdown(wait=wait)
        # a fresh one for a later start: a shut-down executor pool cannot be reused
        self._scheduler = self._new_scheduler()

