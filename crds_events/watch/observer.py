"""The watchdog half shared by the directory watchers (ingest, delivery).

The observer thread does one thing: work out, from an event's paths, which key changed
(a user directory, a delivery name) and put it on the watcher's queue. The watcher's own
worker thread (a `crds_events.handlers.worker.QueueWorker`) drains that queue and does the
work.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crds_events.config import Settings

__all__ = ["start_observer", "stop_observer"]


def start_observer(directory: str | Path, key_of: Callable[[str], object | None],
                   put: Callable[[Any], None], settings: Settings, *, recursive: bool,
                   name: str) -> Any:
    """Start a watchdog observer on ``directory`` that calls ``put(key)`` for each event
    path (source, and destination of a move) whose ``key_of(path)`` is not None.

    Native (inotify) observer, or a ``PollingObserver`` every ``settings.watcher_interval``
    seconds when ``settings.watcher_mode`` is ``"polling"``. Returns the started observer
    (stop it with `stop_observer`).
    """
    from watchdog.events import FileSystemEventHandler

    class _Enqueue(FileSystemEventHandler):
        # Runs on the observer thread: only works out the key and enqueues it.
        def on_any_event(self, event) -> None:
            for path in (event.src_path, getattr(event, "dest_path", "")):
                if path:
                    key = key_of(os.fsdecode(path))
                    if key is not None:
                        put(key)

    if settings.watcher_mode == "polling":
        from watchdog.observers.polling import PollingObserver

        observer = PollingObserver(timeout=settings.watcher_interval)
    else:
        from watchdog.observers import Observer

        observer = Observer()
    observer.schedule(_Enqueue(), str(directory), recursive=recursive)
    observer.name = name
    observer.start()
    return observer


def stop_observer(observer: Any | None) -> None:
    """Stop and join an observer from `start_observer` (None: nothing to do)."""
    if observer is not None:
        observer.stop()
        observer.join(10)

