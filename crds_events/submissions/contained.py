"""Certify one uploaded file in a child process, under a time and a memory limit.

An uploaded file is the one input a stranger fully controls, and certify reads all of it
(headers, arrays, YAML trees). A few hundred bytes can stand for minutes of CPU or gigabytes
of memory; run in the server's own thread, that pins the submission worker, and a crash
takes the server with it. So each file is certified in a child process with
``RLIMIT_AS`` (memory) and ``RLIMIT_CPU`` set, which the parent also kills after a wall
clock limit; a file that goes past either gets an ERROR naming the limit ("certify of X
exceeded 60 s"), which makes its submission BAD FILES.

Children come from a ``forkserver`` (started once, with certify and its libraries already
imported), so a child costs a fork, not an interpreter start; ``fork`` itself is unsafe in a
server full of threads. `stop_all` kills the running children of a stopping worker, so
SIGTERM never waits for a stuck certify. A file whose certify is interrupted so
raises `CertifyInterrupted` (a BaseException: it passes the steps' "record and go on"
handlers, and the submission stays pending, to be processed again after the restart).
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crds_events.certify import certify_files
from crds_events.certify.result import FileResult
from crds_events.config import Settings

__all__ = ["CertifyInterrupted", "CertifyLimits", "certify_contained", "stop_all"]


@dataclass(frozen=True)
class CertifyLimits:
    """Per file: wall-clock (and CPU) seconds, and bytes of address space."""

    seconds: float = 60.0
    memory: int = 2 << 30

    def describe(self) -> str:
        return f"{self.seconds:g} s / {_size(self.memory)}"

    @classmethod
    def from_settings(cls, settings: Settings) -> CertifyLimits:
        """The limits configured by ``certify_seconds`` / ``certify_memory``."""
        return cls(seconds=settings.certify_seconds, memory=settings.certify_memory)


class CertifyInterrupted(BaseException):  # noqa: N818 - a stop, like KeyboardInterrupt
    """The server is stopping: the certify child was killed, the file was not judged."""


def _size(memory: int) -> str:
    gib = memory / (1 << 30)
    return f"{gib:g} GiB" if gib >= 1 else f"{memory / (1 << 20):g} MiB"


# --- the child ---------------------------------------------------------------------------


def _child(conn: Any, path: str, options: dict, limits: CertifyLimits,
           server_pid: int) -> None:
    """In the child: set the limits, certify, send the FileResult (or what went wrong)."""
    import resource

    _exit_with_server(server_pid)

    resource.setrlimit(resource.RLIMIT_AS, (limits.memory, limits.memory))
    cpu = max(1, math.ceil(limits.seconds))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, then SIGKILL
    try:
        [found] = certify_files([path], **options)
        conn.send(("ok", found))
    except MemoryError:
        conn.send(("memory", None))
    except BaseException as exc:  # noqa: BLE001 - reported as the file's error
        conn.send(("error", f"{type(exc).__name__}: {str(exc)[:2000]}"))
    finally:
        conn.close()


def _exit_with_server(server_pid: int) -> None:
    """End this child when the server that asked for it is gone (killed): nobody would read
    its verdict, and it must not burn CPU up to its limit. (Its parent is the fork server,
    which outlives the server as long as any child of its lives, so the server is what
    is watched.)"""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            try:
                os.kill(server_pid, 0)
            except ProcessLookupError:
                break
            except PermissionError:
                pass  # alive (another user's pid would be a reuse: not within a run)
            time.sleep(0.5)
        os._exit(3)

    threading.Thread(target=watch, name="server-watch", daemon=True).start()


# --- the parent --------------------------------------------------------------------------

# Imported once in the fork server instead of in each child: what certify imports on first
# use (astropy.io.fits alone is 0.4 s), and the command line (multiprocessing runs a
# script's main module again in every child: for the `crds-events` console script that is
# `from crds_events.cli import main`, for scripts such as bench/ the server's parts; cheap
# once the fork server has them). About 40 ms a file over certifying in-process.
_PRELOAD = ("astropy.io.fits", "asdf", "crds_events.certify.references",
            "crds_events.certify.mappings", "crds_events.files.headers", "crds_events.cli",
            "crds_events.server.parts")

_context_lock = threading.Lock()
_context: Any = None
# Running children -> the cancel event they were started with (None: never cancelled).
_running: dict[Any, threading.Event | None] = {}
_running_lock = threading.Lock()


def _mp_context() -> Any:
    global _context
    with _context_lock:
        if _context is None:
            context = multiprocessing.get_context("forkserver")
            # Children are forked from a server that has certify (astropy, asdf, numpy)
            # imported already: a child starts in milliseconds.
            context.set_forkserver_preload([__name__, *_PRELOAD])
            _context = context
        return _context


def stop_all(cancel: threading.Event) -> None:
    """Set `cancel` and kill every running certify child started with it (a server
    stopping: its worker threads then see `CertifyInterrupted` at once)."""
    cancel.set()
    with _running_lock:
        processes = [process for process, event in _running.items() if event is cancel]
    for process in processes:
        with contextlib.suppress(OSError, ValueError):  # ended meanwhile
            process.kill()


def certify_contained(path: str | os.PathLike, limits: CertifyLimits | None = None,
                      *, name: str | None = None, cancel: threading.Event | None = None,
                      **options: Any) -> FileResult:
    """`certify_files([path], **options)` in a child under ``limits``; its FileResult, or
    one with an ERROR saying which limit the file exceeded or how the child died.

    ``cancel``: set (by `stop_all`) when the server stops; the child is killed and
    `CertifyInterrupted` raised instead of a verdict."""
    limits = limits or CertifyLimits()
    path = os.fspath(path)
    name = name or Path(path).name
    if cancel is not None and cancel.is_set():
        raise CertifyInterrupted(name)
    context = _mp_context()
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(send, path, options, limits, os.getpid()),
                              name=f"crds-events-certify {name}", daemon=True)
    try:
        process.start()
        with _running_lock:
            _running[process] = cancel
        if cancel is not None and cancel.is_set():
            process.kill()  # stop_all came between the start and the registration
        send.close()  # the child holds the other end: EOF when it dies
        outcome: tuple[str, Any] | None = None
        if receive.poll(limits.seconds):
            try:
                outcome = receive.recv()
            except (EOFError, OSError):
                outcome = None  # died without a word: killed by a limit or a signal
        else:
            process.kill()
            outcome = ("timeout", None)
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()
    finally:
        receive.close()
        with _running_lock:
            _running.pop(process, None)
    if cancel is not None and cancel.is_set() and (outcome is None or outcome[0] != "ok"):
        raise CertifyInterrupted(name)
    return _result(path, name, outcome, process.exitcode, limits)


def _result(path: str, name: str, outcome: tuple[str, Any] | None, exitcode: int | None,
            limits: CertifyLimits) -> FileResult:
    if outcome is not None and outcome[0] == "ok":
        return outcome[1]
    result = FileResult(path)
    if outcome is not None and outcome[0] == "timeout":
        reason = f"certify of {name} exceeded {limits.seconds:g} s (the limit for one file)"
    elif outcome is not None and outcome[0] == "memory":
        reason = f"certify of {name} exceeded {_size(limits.memory)} of memory"
    elif outcome is not None and outcome[0] == "error":
        reason = f"certify of {name} failed: {outcome[1]}"
    else:
        signal = -exitcode if exitcode is not None and exitcode < 0 else None
        reason = (f"certify of {name} exceeded {limits.describe()} (the process died"
                  + (f" with signal {signal})" if signal else f", exit status {exitcode})"))
    result.add("error", "limits", reason)
    return result
