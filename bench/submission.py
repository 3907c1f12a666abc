"""Submission benchmark: manifest written -> READY, and drop-directory throughput.

Runs a real server in-process (handler runner, ingest observer, submission worker) on a
temp root holding a 5-instrument JWST context (tests/fixtures/submissions.py), and measures

1. the time from the manifest being written (renamed into place) to `SubmissionReady` for
   one submission of 1, 10 and 100 FITS flats (median of 3; each run is then cancelled);
2. 50 submissions dropped at once by 5 users on 5 instruments (10 rounds; a user's next
   drop waits only until the previous manifest has been taken): submissions per second
   from the first drop to the last READY.

    .venv/bin/python bench/submission.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fixtures.submissions import FILTERS, make_flat, seed_root  # noqa: E402

from crds_events import events as ev  # noqa: E402
from crds_events.config import load_settings  # noqa: E402
from crds_events.server import parts  # noqa: E402
from crds_events.server.core import Server  # noqa: E402
from crds_events.store.root import init_root  # noqa: E402
from crds_events.submissions import review  # noqa: E402
from crds_events.submissions.dropbox import drop_submission  # noqa: E402
from crds_events.submissions.manifest import MANIFEST_NAME  # noqa: E402

INSTRUMENTS = ["nircam", "miri", "niriss", "nirspec", "fgs"]
SETTLE = 0.2


def _flats(directory: Path, instrument: str, count: int, seed: int) -> list[Path]:
    paths = []
    for i in range(count):
        day = 1 + i // len(FILTERS)
        paths.append(make_flat(directory / f"{instrument}_{seed}_{i}.fits", instrument,
                               FILTERS[i % len(FILTERS)], seed=seed * 1000 + i,
                               useafter=f"2024-01-{day:02d}T00:00:00" if day <= 28 else
                               f"2024-02-{day - 28:02d}T00:00:00"))
    return paths


def _fields(instrument: str) -> dict:
    return {"deliverer": "bench", "instrument": instrument.upper(),
            "description": "benchmark delivery"}


def time_to_ready(server: Server, work: Path, count: int, seed: int) -> float:
    settings, store = server.settings, server.store
    files = _flats(work / f"n{count}_{seed}", "nircam", count, seed)
    start = time.perf_counter()
    sid = drop_submission(settings, "bench", files, _fields("nircam"))
    outcome = review.follow(store, sid, timeout=900, poll=0.02)
    elapsed = time.perf_counter() - start
    if not isinstance(outcome, ev.SubmissionReady):
        raise SystemExit(f"{count} references: expected READY, got {outcome}")
    review.cancel(settings, store, sid, "bench", reason="benchmark")
    return elapsed


def throughput(server: Server, work: Path, total: int, seed: int) -> tuple[float, float]:
    settings, store = server.settings, server.store
    users = [f"user{i}" for i in range(len(INSTRUMENTS))]
    rounds = total // len(users)
    prepared = [[_flats(work / f"c{r}_{u}", inst, 1, seed + r * 10 + k)
                 for k, (u, inst) in enumerate(zip(users, INSTRUMENTS, strict=True))]
                for r in range(rounds)]
    ids = []
    start = time.perf_counter()
    for r in range(rounds):
        for k, (user, instrument) in enumerate(zip(users, INSTRUMENTS, strict=True)):
            manifest = settings.ingest / user / MANIFEST_NAME
            deadline = time.monotonic() + 120
            while manifest.exists():  # the previous drop is not taken yet
                if time.monotonic() > deadline:
                    raise SystemExit(f"{manifest} never taken")
                time.sleep(0.01)
            ids.append(drop_submission(settings, user, prepared[r][k], _fields(instrument)))
    for sid in ids:
        outcome = review.follow(store, sid, timeout=900, poll=0.02)
        if not isinstance(outcome, ev.SubmissionReady):
            raise SystemExit(f"{sid}: expected READY, got {outcome}")
    elapsed = time.perf_counter() - start
    return elapsed, len(ids) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 and 10 references only")
    parser.add_argument("--threads", type=int, default=2, help="submission worker threads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        settings = load_settings(tmp / "root", {"observatory": "jwst"}, environ={})
        init_root(settings)
        seed_root(settings, tmp / "context", INSTRUMENTS)
        server = Server(settings, [partial(parts.submissions, settle=SETTLE, scan_interval=30.0,
                                           threads=args.threads)], poll_interval=0.02)
        server.start()
        try:
            print(f"settle time (two looks apart): {SETTLE} s; worker threads: {args.threads}")
            sizes = [1, 10] if args.quick else [1, 10, 100]
            for n, count in enumerate(sizes):
                runs = [time_to_ready(server, tmp, count, seed=100 * n + k) for k in range(3)]
                print(f"{count:>4} reference(s): manifest -> READY median "
                      f"{statistics.median(runs):.2f} s  (runs: "
                      f"{', '.join(f'{r:.2f}' for r in runs)})")
            total = 10 if args.quick else 50
            elapsed, rate = throughput(server, tmp, total, seed=5000)
            print(f"{total} submissions, {len(INSTRUMENTS)} users on {len(INSTRUMENTS)} "
                  f"instruments: {elapsed:.2f} s to the last READY = {rate:.2f} submissions/s")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
