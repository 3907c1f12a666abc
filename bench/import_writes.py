"""Benchmark: other writers during a big `datasets import` (chunked commits).

    .venv/bin/python bench/import_writes.py [--lines 1000000] [--every 0.5]

Writes a catalog of `--lines` synthetic ACS datasets (JSON lines), starts
`crds-events datasets import` on it as its own process (as an operator would, next to the
running server), and while the import runs makes a real write every `--every` seconds from
this process: an instrument lock taken and released (`acquire_lock` / `release_lock`: a
`BEGIN IMMEDIATE` append of a `LockAcquired`/`LockReleased` event, the same kind of
transaction as a submission confirm). Prints the import's time and rate, and the writes'
latencies (each from the call to its commit): the goal is every write within 2 s, since
an import holds the write lock for one chunk (10,000 rows) at most.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def write_catalog(path: Path, lines: int) -> None:
    detectors = ("WFC", "HRC", "SBC")
    with open(path, "w", encoding="utf-8") as out:
        for i in range(lines):
            out.write(json.dumps({"id": f"J{i:08d}:J{i:08d}", "header": {
                "INSTRUME": "ACS", "DETECTOR": detectors[i % 3], "CCDAMP": "ABCD",
                "CCDGAIN": 2.0, "FILTER1": "CLEAR1L", "FILTER2": "F814W",
                "DATE-OBS": f"20{10 + i % 10}-{1 + i % 12:02d}-{1 + i % 28:02d}",
                "TIME-OBS": f"{i % 24:02d}:{i % 60:02d}:00"}}))
            out.write("\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--every", type=float, default=0.5)
    args = parser.parse_args(argv)

    from crds_events.accounts.locks import acquire_lock, release_lock
    from crds_events.config import load_settings
    from crds_events.reprocessing.datasets import dataset_count
    from crds_events.store.eventlog import SQLiteEventStore
    from crds_events.store.root import init_root

    work = Path(tempfile.mkdtemp(prefix="import-writes-"))
    settings = load_settings(work / "root")
    init_root(settings)
    catalog = work / "catalog.jsonl"
    started = time.perf_counter()
    write_catalog(catalog, args.lines)
    print(f"catalog: {args.lines:,} lines, {catalog.stat().st_size / 1e6:.0f} MB "
          f"(written in {time.perf_counter() - started:.1f} s)")

    command = [str(Path(sys.executable).with_name("crds-events")), "datasets", "import",
               "--root", str(settings.root), str(catalog)]
    store = SQLiteEventStore(settings.db_path)
    latencies: list[float] = []
    begin = time.perf_counter()
    importer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    first_row = None
    while importer.poll() is None:
        time.sleep(args.every)
        if first_row is None and dataset_count(store) > 0:
            first_row = time.perf_counter() - begin
        if first_row is None:
            continue  # still checking the lines: nothing is written yet
        start = time.perf_counter()
        acquire_lock(store, "acs", "bench")
        release_lock(store, "acs", "bench")
        latencies.append(time.perf_counter() - start)
    elapsed = time.perf_counter() - begin
    out, err = importer.communicate()
    if importer.returncode != 0:
        print(err)
        return 1
    print(out.strip())
    rows = dataset_count(store)
    store.close()
    shutil.rmtree(work, ignore_errors=True)
    print(f"import: {elapsed:.1f} s ({args.lines / elapsed:,.0f} lines/s); first chunk "
          f"committed after {first_row or 0:.1f} s (the check of every line before it); "
          f"{rows:,} rows")
    if latencies:
        ordered = sorted(latencies)
        p95 = ordered[int(0.95 * (len(ordered) - 1))]
        print(f"writes during the import (lock taken + released, 2 commits each): "
              f"{len(latencies)}, p50 {statistics.median(latencies) * 1000:.0f} ms, "
              f"p95 {p95 * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms "
              f"(goal: every one within 2 s)")
    return 0 if latencies and max(latencies) < 2.0 and rows == args.lines else 1


if __name__ == "__main__":
    sys.exit(main())
