#!/usr/bin/env python3
"""A stand-in for SDP's archive poller, for the demo and the tests.

What the real archive does with a CRDS delivery directory, and so what this does:

1. every ``interval`` seconds, each ``<name>.cat`` is renamed ``<name>.cat_proc`` (taken);
2. ``delay`` seconds later the delivery either fails -- the manifest is renamed
   ``<name>.cat_err`` and everything is left for the operators -- or is archived: the files
   it lists are deleted from the directory, then the manifest itself.

Whether a delivery fails is drawn from ``random.Random(f"{seed}:{name}")``, so a given seed
gives every delivery the same fate whatever the order or timing (``error_rate`` is the
probability of failure). Hidden files (the server's temporaries) are never touched. A
``.cat_proc`` found at start-up (the poller was stopped mid-delivery) is finished.

As a library::

    poller = ArchivePoller(directory, delay=0.2, error_rate=0.1, seed=1)
    poller.start(); ...; poller.stop()

As a script::

    python ops/archive_poller.py var/delivery --interval 1 --delay 5 --error-rate 0.05
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import logging
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

__all__ = ["ArchivePoller", "main"]

log = logging.getLogger("archive_poller")


class ArchivePoller:
    """Polls ``directory`` like SDP's archive poller (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike, *, interval: float = 0.5,
                 delay: float = 1.0, error_rate: float = 0.0, seed: int = 0,
                 delete_files: bool = True):
        if interval <= 0 or delay < 0 or not 0.0 <= error_rate <= 1.0:
            raise ValueError("interval must be > 0, delay >= 0, error_rate in [0, 1]")
        self.directory = Path(directory)
        self.interval = interval
        self.delay = delay
        self.error_rate = error_rate
        self.seed = seed
        self.delete_files = delete_files
        self.taken_at: dict[str, float] = {}  # name -> time.time() of the .cat_proc rename
        self.finished_at: dict[str, float] = {}  # name -> time.time() of the last step
        self.outcomes: dict[str, str] = {}  # name -> "archived" | "failed"
        self._due: list[tuple[float, str]] = []  # (monotonic due time, name)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- decisions -----------------------------------------------------------------------

    def fails(self, name: str) -> bool:
        """This delivery's fate under the seed: True when it will end as ``.cat_err``."""
        return random.Random(f"{self.seed}:{name}").random() < self.error_rate

    # --- one pass ----------------------------------------------------------------------------

    def poll_once(self) -> int:
        """Take new manifests and finish those due; how many steps were taken."""
        steps = 0
        try:
            entries = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            entries = []
        now = time.monotonic()
        with self._lock:
            scheduled = {name for _, name in self._due}
            for entry in entries:
                if entry.startswith("."):
                    continue
                if entry.endswith(".cat"):
                    name = entry[:-4]
                    try:
                        os.rename(self.directory / entry, self.directory / f"{name}.cat_proc")
                    except FileNotFoundError:
                        continue
                    self.taken_at[name] = time.time()
                    heapq.heappush(self._due, (now + self.delay, name))
                    steps += 1
                elif entry.endswith(".cat_proc") and entry[:-9] not in scheduled:
                    heapq.heappush(self._due, (now + self.delay, entry[:-9]))  # resumed
            while self._due and self._due[0][0] <= time.monotonic():
                _, name = heapq.heappop(self._due)
                self._finish(name)
                steps += 1
        return steps

    def _finish(self, name: str) -> None:
        proc = self.directory / f"{name}.cat_proc"
        if not proc.exists():
            return
        if self.fails(name):
            os.rename(proc, self.directory / f"{name}.cat_err")
            self.outcomes[name] = "failed"
        else:
            if self.delete_files:
                for line in proc.read_text(encoding="utf-8", errors="replace").splitlines():
                    filename = line.strip().split()[0] if line.strip() else ""
                    if filename and "/" not in filename and not filename.startswith("."):
                        with contextlib.suppress(FileNotFoundError):
                            (self.directory / filename).unlink()
            proc.unlink()
            self.outcomes[name] = "archived"
        self.finished_at[name] = time.time()
        log.info("%s: %s", name, self.outcomes[name])

    @property
    def busy(self) -> bool:
        """True while a taken delivery is waiting for its delay."""
        with self._lock:
            return bool(self._due)

    # --- background thread -----------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("poller already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="archive-poller")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def __enter__(self) -> ArchivePoller:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except OSError:
                log.exception("archive poller pass failed")
            with self._lock:
                wait = self.interval
                if self._due:
                    wait = min(wait, max(0.0, self._due[0][0] - time.monotonic()))
            self._stop.wait(wait)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Simulate SDP's archive poller on a CRDS "
                                                 "delivery directory.")
    parser.add_argument("directory", type=Path, help="the delivery directory to poll")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    parser.add_argument("--delay", type=float, default=2.0,
                        help="seconds between taking a .cat and finishing it")
    parser.add_argument("--error-rate", type=float, default=0.0,
                        help="probability that a delivery ends as .cat_err (0..1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for the fates")
    parser.add_argument("--keep-files", action="store_true",
                        help="do not delete the delivered files when archiving")
    parser.add_argument("--once", action="store_true",
                        help="one pass (take new manifests, finish those due), then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not args.directory.is_dir():
        parser.error(f"{args.directory}: not a directory")
    try:
        poller = ArchivePoller(args.directory, interval=args.interval, delay=args.delay,
                               error_rate=args.error_rate, seed=args.seed,
                               delete_files=not args.keep_files)
    except ValueError as exc:
        parser.error(str(exc))
    if args.once:
        poller.poll_once()
        return 0
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    poller.start()
    try:
        stopped.wait()
    finally:
        poller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
