"""Two processes append to one stream at the same expected version: exactly one wins."""

from __future__ import annotations

import multiprocessing

from crds_events import events as ev
from crds_events.store import ConcurrencyError, SQLiteEventStore

ROUNDS = 25
STREAM = "submission:race"


def _racer(db_path: str, worker: str, barrier, results) -> None:
    store = SQLiteEventStore(db_path)
    try:
        for round_no in range(ROUNDS):
            barrier.wait()  # the previous round is fully over
            version = store.stream_version(STREAM)
            barrier.wait()  # both have read the same version: now race
            batch = [ev.SubmissionProgress("race", f"{worker} {round_no} {i}") for i in range(3)]
            try:
                store.append(STREAM, batch, version)
                results.put((round_no, worker, "won", version))
            except ConcurrencyError as exc:
                assert exc.expected == version and exc.actual == version + 3
                results.put((round_no, worker, "conflict", version))
    finally:
        store.close()


def test_two_processes_one_wins_each_round(tmp_path):
    db_path = str(tmp_path / "events.db")
    SQLiteEventStore(db_path).close()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    workers = [ctx.Process(target=_racer, args=(db_path, name, barrier, results))
               for name in ("A", "B")]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in range(2 * ROUNDS)]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    results.close()
    results.join_thread()

    by_round: dict[int, list] = {}
    for round_no, worker, outcome, version in outcomes:
        by_round.setdefault(round_no, []).append((worker, outcome, version))
    winners = {}
    for round_no, entries in by_round.items():
        assert sorted(o for _, o, _ in entries) == ["conflict", "won"], entries
        assert {v for _, _, v in entries} == {3 * round_no}  # both raced at the same version
        winners[round_no] = next(w for w, o, _ in entries if o == "won")

    store = SQLiteEventStore(db_path)
    try:
        records = store.read_all()
        assert [r.position for r in records] == list(range(1, 3 * ROUNDS + 1))
        assert [r.version for r in records] == list(range(1, 3 * ROUNDS + 1))
        for round_no in range(ROUNDS):  # each batch whole, from the round's winner only
            batch = records[3 * round_no: 3 * round_no + 3]
            assert [r.event.message for r in batch] == [
                f"{winners[round_no]} {round_no} {i}" for i in range(3)]
    finally:
        store.close()
