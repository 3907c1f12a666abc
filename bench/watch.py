"""Delivery watch latency: from the archive's rename of ``<name>.cat`` to ``.cat_proc`` to
the `DeliveryArchiving` event being committed (visible to another connection).

A real server (handler runner with the projections, delivery worker and watcher) runs on a
temporary root; N deliveries are published; then, one at a time on an idle server (the
handler runner caught up with the previous event), this script does what the archive
poller does first (``os.rename(name.cat, name.cat_proc)``) and polls the log from its own
connection every millisecond until the event is there. Native (inotify) and polling
observers; loopback file system only, bounded loops.

    .venv/bin/python bench/watch.py [--native N] [--polling N] [--interval S]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fixtures.delivery import confirmed_in_bulk, make_root  # noqa: E402

from crds_events.delivery import publish as delivery  # noqa: E402
from crds_events.server import parts  # noqa: E402
from crds_events.server.core import Server  # noqa: E402
from crds_events.store import SQLiteEventStore  # noqa: E402


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def _runner_lag(reader: SQLiteEventStore, handlers: list[str]) -> int:
    """How far the slowest handler is behind the head (read on our own connection: the
    runner's store belongs to its thread)."""
    marks = ",".join("?" * len(handlers))
    with reader._lock:
        rows = reader.db.conn.execute(
            f"SELECT handler, position FROM _checkpoints WHERE handler IN ({marks})",
            handlers).fetchall()
    done = dict(rows)
    head = reader.head()
    return max(head - done.get(name, 0) for name in handlers)


def measure(mode: str, count: int, interval: float) -> list[float]:
    """Latencies in seconds for ``count`` renames with the observer in ``mode``."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_root(Path(tmp), mode=mode, interval=interval)
        # no periodic scan: the observer alone must see each rename
        server = Server(settings, [partial(parts.delivery, scan_interval=None,
                                           resume_interval=None)], poll_interval=0.02)
        server.start()
        reader = SQLiteEventStore(settings.db_path)
        try:
            confirmed_in_bulk(settings, server.store, count)
            names = [delivery.delivery_name(settings.observatory, n) for n in range(1, count + 1)]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                states = delivery.delivery_states(reader)
                if sum(1 for n in names if states.get(n) and states[n].state == "created") \
                        == count:
                    break
                time.sleep(0.05)
            else:
                raise SystemExit(f"{mode}: deliveries not all created within 60 s")
            time.sleep(max(0.3, 2 * interval))  # let the observer settle after the burst
            handlers = [h.name for h in server.runner.handlers]
            latencies = []
            jitter = random.Random(0)
            for name in names:
                # one rename at a time on an idle server: the handler runner has finished
                # reacting to the previous event (its commits would hold the write lock)
                settle = time.monotonic() + 1.0  # bounded: at most 1 s per rename
                while _runner_lag(reader, handlers) and time.monotonic() < settle:
                    time.sleep(0.005)
                # a random phase, so that renames do not fall in step with the polls
                time.sleep(jitter.uniform(0, interval if mode == "polling" else 0.02))
                stream = f"delivery:{name}"
                version = reader.stream_version(stream)
                started = time.perf_counter()
                os.rename(settings.delivery / f"{name}.cat",
                          settings.delivery / f"{name}.cat_proc")
                limit = started + max(10.0, 4 * interval)
                while time.perf_counter() < limit:
                    records = reader.read_stream(stream, after_version=version)
                    if any(r.type == "DeliveryArchiving" for r in records):
                        latencies.append(time.perf_counter() - started)
                        break
                    time.sleep(0.001)
                else:
                    raise SystemExit(f"{mode}: {name} never reached archiving")
            return latencies
        finally:
            reader.close()
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--native", type=int, default=100, help="renames, native observer")
    parser.add_argument("--polling", type=int, default=30, help="renames, polling observer")
    parser.add_argument("--interval", type=float, default=0.5,
                        help="polling observer interval, seconds (watcher_interval)")
    args = parser.parse_args(argv)
    print("delivery watch latency: rename .cat -> .cat_proc until DeliveryArchiving is "
          "committed (read back by another connection)")
    for mode, count in (("native", args.native), ("polling", args.polling)):
        if count <= 0:
            continue
        latencies = measure(mode, count, args.interval)
        note = f" (interval {args.interval:g} s)" if mode == "polling" else ""
        print(f"  {mode:<8}{note:<16} n={count:<4} p50 {_percentile(latencies, 0.5) * 1e3:7.1f} ms"
              f"  p99 {_percentile(latencies, 0.99) * 1e3:7.1f} ms"
              f"  max {max(latencies) * 1e3:7.1f} ms  mean "
              f"{statistics.fmean(latencies) * 1e3:7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
