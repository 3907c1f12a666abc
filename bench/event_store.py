"""Event store benchmark: durable appends, batched appends, rebuild of 1,000,000 events.

Each append figure is measured for `SQLiteEventStore` and, in the same run, for plain
`sqlite3` inserts into an equivalent table (same DDL, indexes, WAL, synchronous=FULL,
BEGIN IMMEDIATE), and printed as a ratio. Goals: single >= 0.7x, batched >= 0.5x, rebuild
of 1M events < 60 s.

Then the same for `PostgresEventStore` against plain psycopg (autocommit INSERTs, and
executemany in one transaction, into a table LIKE events INCLUDING ALL: same columns and
indexes), on a durable throwaway cluster (fsync and synchronous_commit on) started with
tests/fixtures/postgres.py, or on ``--postgres URL`` (an empty database). The 1M-event log
is then copied to PostgreSQL (`migrate-store`'s copy), replayed (read + decode) on both, and
its projections rebuilt on PostgreSQL beside SQLite's rebuild (goal < 60 s on both).

    .venv/bin/python bench/event_store.py [--events 1000000] [--single 2000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from crds_events import events as ev
from crds_events.store import SQLiteEventStore
from crds_events.store.eventlog import utc_now
from crds_events.store.projections import default_projections, rebuild

console = Console()
INSERT = ("INSERT INTO events (stream, version, type, schema_version, data, meta, recorded_at, "
          "idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


def plain_connection(path: Path) -> sqlite3.Connection:
    """Plain sqlite3 with the same schema (copied from a store-created file) and settings."""
    SQLiteEventStore(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def sample_event(i: int) -> ev.Event:
    return ev.SubmissionProgress(submission_id=str(i % 100), message=f"certifying file {i}",
                                 step="certify", fraction=0.5)


ROUNDS = 10  # ours and plain alternate in rounds, so disk and CPU noise hits both alike


def bench_single(workdir: Path, n: int) -> tuple[float, float]:
    """Durable single-event appends per second: (ours, plain sqlite3)."""
    store = SQLiteEventStore(workdir / "single.db")
    conn = plain_connection(workdir / "single-plain.db")
    events = [sample_event(i) for i in range(n)]
    versions: dict[str, int] = {}
    ours_s = plain_s = 0.0
    per_round = n // ROUNDS
    for r in range(ROUNDS):
        chunk = range(r * per_round, (r + 1) * per_round)
        start = time.perf_counter()
        for i in chunk:
            store.append(f"submission:{i % 100}", events[i], meta={"actor": "bench"})
        ours_s += time.perf_counter() - start
        start = time.perf_counter()
        for i in chunk:
            stream = f"submission:{i % 100}"
            versions[stream] = versions.get(stream, 0) + 1
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(INSERT, (stream, versions[stream], events[i].type, 1,
                                  json.dumps(events[i].to_data()),
                                  json.dumps({"actor": "bench"}), utc_now(), None))
            conn.execute("COMMIT")
        plain_s += time.perf_counter() - start
    store.close()
    conn.close()
    done = per_round * ROUNDS
    return done / ours_s, done / plain_s


def bench_batched(workdir: Path, batches: int, size: int = 1000) -> tuple[float, float]:
    """Appends per second in transactions of ``size`` events: (ours, plain sqlite3)."""
    store = SQLiteEventStore(workdir / "batched.db")
    conn = plain_connection(workdir / "batched-plain.db")
    events = [sample_event(i) for i in range(size)]
    ours_s = plain_s = 0.0
    for b in range(batches):
        start = time.perf_counter()
        store.append(f"submission:{b}", events, meta={"actor": "bench"})
        ours_s += time.perf_counter() - start
        start = time.perf_counter()
        now = utc_now()
        meta = json.dumps({"actor": "bench"})
        rows = [(f"submission:{b}", v + 1, e.type, 1, json.dumps(e.to_data()), meta, now, None)
                for v, e in enumerate(events)]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT, rows)
        conn.execute("COMMIT")
        plain_s += time.perf_counter() - start
    store.close()
    conn.close()
    return batches * size / ours_s, batches * size / plain_s


def lifecycle(n: int) -> list[ev.Event]:
    """The ~20 events of one submission's life, from upload to release and e-mail."""
    sid, d = str(n), f"hst_{n:05d}"
    refs = (f"r{n}a_bia.fits", f"r{n}b_bia.fits")
    rmap, pmap = f"hst_acs_biasfile_{n:04d}.rmap", f"hst_{n:04d}.pmap"
    files = (*refs, rmap, pmap)
    return [
        ev.SubmissionStarted(sid, "hst", "jdoe", "acs", "new biases", ("a.fits", "b.fits")),
        ev.SubmissionProgress(sid, "certifying", "certify", 0.2),
        *[ev.FileCertified(sid, r, "a.fits", "0" * 40, 2880 * 10, "reference", "acs",
                           "biasfile", "2020-01-01 00:00:00") for r in refs],
        ev.SubmissionProgress(sid, "refactoring", "refactor", 0.6),
        ev.SubmissionReady(sid, files, pmap, generated=(rmap, pmap)),
        ev.EmailQueued(f"{sid}-ready", "READY", ("redcat@x",), "ready", f"<{sid}@x>", "d" * 40),
        ev.EmailSent(f"{sid}-ready", f"<{sid}@x>"),
        ev.SubmissionConfirmed(sid, "jdoe", files, pmap),
        ev.ContextSet("hst", "edit", pmap, f"hst_{n - 1:04d}.pmap"),
        ev.DeliveryCreated(d, "hst", sid, files),
        *[ev.FileCataloged(f, d, "hst", "0" * 40, 2880, "reference", "acs", "biasfile",
                           submission_id=sid) for f in files],
        ev.DeliveryArchiving(d),
        ev.DeliveryArchived(d),
        *[ev.FileReleased(f, d) for f in files],
    ]


def bench_rebuild(workdir: Path, total: int) -> tuple[float, float, int]:
    """Fill a log with ``total`` lifecycle events, then time `rebuild` of all projections
    (and, for scale, a plain sqlite3 scan that JSON-decodes every row)."""
    store = SQLiteEventStore(workdir / "rebuild.db")
    appended, n = 0, 0
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("filling the log", total=total)
        while appended < total:
            with store.transaction() as tx:
                for _ in range(200):
                    events = lifecycle(n)[: total - appended]
                    if not events:
                        break
                    for event in events:
                        tx.append(event.stream, event, meta={"actor": "bench"})
                    appended += len(events)
                    n += 1
            progress.update(task, completed=appended)
        task = progress.add_task("rebuilding projections", total=total)
        start = time.perf_counter()
        head = rebuild(store, default_projections(),
                       progress=lambda done, _: progress.update(task, completed=done))
        elapsed = time.perf_counter() - start
    store.close()

    conn = sqlite3.connect(workdir / "rebuild.db")
    start = time.perf_counter()
    for data, meta in conn.execute("SELECT data, meta FROM events"):
        json.loads(data)
        json.loads(meta)
    scan = time.perf_counter() - start
    conn.close()
    return elapsed, scan, head


PG_INSERT = ("INSERT INTO plain_events (position, stream, version, type, schema_version, data, "
             "meta, recorded_at, idempotency_key) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)")


@contextlib.contextmanager
def postgres_url(given: str | None) -> Iterator[str | None]:
    """``given``, or a durable throwaway cluster's database (None: PostgreSQL missing)."""
    if given:
        yield given
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from fixtures.postgres import missing_reason, running_cluster

    reason = missing_reason()
    if reason:
        console.print(f"[yellow]PostgreSQL figures skipped: {reason}[/]")
        yield None
        return
    with running_cluster(durable=True) as cluster:
        yield cluster.create_database("bench")


def plain_pg(url: str):
    """Plain psycopg (autocommit) and a table with the events table's columns and indexes."""
    import psycopg

    from crds_events.store.postgres import PostgresEventStore

    PostgresEventStore(url).close()
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("DROP TABLE IF EXISTS plain_events")
    conn.execute("CREATE TABLE plain_events (LIKE events INCLUDING ALL)")
    return conn


def bench_single_pg(url: str, n: int) -> tuple[float, float]:
    """Durable single-event appends per second on PostgreSQL: (ours, plain psycopg)."""
    from crds_events.store.postgres import PostgresEventStore

    store = PostgresEventStore(url)
    conn = plain_pg(url)
    events = [sample_event(i) for i in range(n)]
    versions: dict[str, int] = {}
    ours_s = plain_s = 0.0
    per_round = n // ROUNDS
    position = 0
    for r in range(ROUNDS):
        chunk = range(r * per_round, (r + 1) * per_round)
        start = time.perf_counter()
        for i in chunk:
            store.append(f"submission:{i % 100}", events[i], meta={"actor": "bench"})
        ours_s += time.perf_counter() - start
        start = time.perf_counter()
        for i in chunk:
            stream = f"submission:{i % 100}"
            versions[stream] = versions.get(stream, 0) + 1
            position += 1
            conn.execute(PG_INSERT, (position, stream, versions[stream], events[i].type, 1,
                                     json.dumps(events[i].to_data()),
                                     json.dumps({"actor": "bench"}), utc_now(), None))
        plain_s += time.perf_counter() - start
    store.close()
    conn.close()
    done = per_round * ROUNDS
    return done / ours_s, done / plain_s


def bench_batched_pg(url: str, batches: int, size: int = 1000) -> tuple[float, float]:
    """Appends per second in transactions of ``size`` events: (ours, plain psycopg)."""
    from crds_events.store.postgres import PostgresEventStore

    store = PostgresEventStore(url)
    conn = plain_pg(url)
    events = [sample_event(i) for i in range(size)]
    ours_s = plain_s = 0.0
    position = 0
    for b in range(batches):
        start = time.perf_counter()
        store.append(f"batch:{b}", events, meta={"actor": "bench"})
        ours_s += time.perf_counter() - start
        start = time.perf_counter()
        now = utc_now()
        meta = json.dumps({"actor": "bench"})
        rows = [(position + v + 1, f"batch:{b}", v + 1, e.type, 1, json.dumps(e.to_data()),
                 meta, now, None) for v, e in enumerate(events)]
        position += size
        with conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(PG_INSERT, rows)
        plain_s += time.perf_counter() - start
    store.close()
    conn.close()
    return batches * size / ours_s, batches * size / plain_s


def bench_copy_and_replay(source: Path, url: str
                          ) -> tuple[float, float, float, int, float]:
    """Copy the SQLite log at ``source`` to an empty PostgreSQL log (verified), read and
    decode every event on each, then rebuild every projection on PostgreSQL: (copy s,
    replay s on PostgreSQL, replay s on SQLite, n, rebuild s on PostgreSQL)."""
    import psycopg

    from crds_events.store.postgres import PostgresEventStore
    from crds_events.store.transfer import copy_sqlite_to_postgres

    with psycopg.connect(url, autocommit=True) as conn:  # the append benches' log goes
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    report = copy_sqlite_to_postgres(source, url)
    timings = []
    for store in (PostgresEventStore(url), SQLiteEventStore(source)):
        start = time.perf_counter()
        count = sum(1 for record in store.iter_all(batch=20_000) if record.event)
        timings.append(time.perf_counter() - start)
        store.close()
        assert count == report.events
    with PostgresEventStore(url) as store, Progress(transient=True) as progress:
        task = progress.add_task("rebuilding projections on PostgreSQL", total=report.events)
        start = time.perf_counter()
        rebuild(store, default_projections(),
                progress=lambda done, _: progress.update(task, completed=done))
        rebuild_s = time.perf_counter() - start
    return report.seconds, timings[0], timings[1], report.events, rebuild_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events to rebuild")
    parser.add_argument("--single", type=int, default=2000, help="single appends to time")
    parser.add_argument("--batches", type=int, default=100, help="1,000-event batches")
    parser.add_argument("--postgres", default=None, metavar="URL",
                        help="an empty PostgreSQL database (default: a throwaway cluster)")
    args = parser.parse_args()
    pg: dict[str, float] = {}
    # On the repository's own disk, not a tmpfs: fsync must cost what it costs.
    base = Path(__file__).resolve().parent.parent / "var"
    base.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base, prefix="bench-") as tmp:
        workdir = Path(tmp)
        console.print(f"[bold]event store benchmark[/] (sqlite {sqlite3.sqlite_version}, "
                      f"WAL, synchronous=FULL) in {workdir}")
        single, single_plain = bench_single(workdir, args.single)
        batched, batched_plain = bench_batched(workdir, args.batches)
        rebuild_s, scan_s, head = bench_rebuild(workdir, args.events)
        with postgres_url(args.postgres) as url:
            if url:
                console.print("PostgreSQL: single appends, batched appends, copy, replay")
                pg["single"], pg["single_plain"] = bench_single_pg(url, args.single)
                pg["batched"], pg["batched_plain"] = bench_batched_pg(url, args.batches)
                pg["copy"], pg["replay"], pg["replay_sqlite"], pg["n"], pg["rebuild"] = \
                    bench_copy_and_replay(workdir / "rebuild.db", url)

    table = Table(title="crds-events event store vs plain sqlite3")
    for column in ("measure", "crds-events", "plain sqlite3", "ratio", "goal"):
        table.add_column(column, justify="right" if column != "measure" else "left")
    table.add_row("durable single appends/s", f"{single:,.0f}", f"{single_plain:,.0f}",
                  f"{single / single_plain:.2f}x", ">= 0.7x")
    table.add_row("batched appends/s (1,000/txn)", f"{batched:,.0f}", f"{batched_plain:,.0f}",
                  f"{batched / batched_plain:.2f}x", ">= 0.5x")
    table.add_row(f"rebuild all projections, {head:,} events", f"{rebuild_s:.1f} s",
                  f"{scan_s:.1f} s (scan + json only)", f"{rebuild_s / scan_s:.1f}x slower",
                  "< 60 s")
    console.print(table)
    ok = single / single_plain >= 0.7 and batched / batched_plain >= 0.5 and rebuild_s < 60
    if pg:
        table = Table(title="crds-events on PostgreSQL vs plain psycopg (durable cluster)")
        for column in ("measure", "crds-events", "plain psycopg", "ratio", "goal"):
            table.add_column(column, justify="right" if column != "measure" else "left")
        table.add_row("durable single appends/s", f"{pg['single']:,.0f}",
                      f"{pg['single_plain']:,.0f}", f"{pg['single'] / pg['single_plain']:.2f}x",
                      ">= 0.7x")
        table.add_row("batched appends/s (1,000/txn)", f"{pg['batched']:,.0f}",
                      f"{pg['batched_plain']:,.0f}",
                      f"{pg['batched'] / pg['batched_plain']:.2f}x", ">= 0.5x")
        table.add_row(f"migrate-store copy of {pg['n']:,.0f} events (verified)",
                      f"{pg['copy']:.1f} s", "", "", "")
        table.add_row(f"replay (read + decode) {pg['n']:,.0f} events", f"{pg['replay']:.1f} s",
                      f"SQLite: {pg['replay_sqlite']:.1f} s", "", "")
        table.add_row(f"rebuild all projections, {pg['n']:,.0f} events", f"{pg['rebuild']:.1f} s",
                      f"SQLite: {rebuild_s:.1f} s", "", "< 60 s")
        console.print(table)
        ok = ok and pg["single"] / pg["single_plain"] >= 0.7 and \
            pg["batched"] / pg["batched_plain"] >= 0.5 and pg["rebuild"] < 60
    console.print("[green]all goals met[/]" if ok else "[red]some goal missed[/]")


if __name__ == "__main__":
    main()
