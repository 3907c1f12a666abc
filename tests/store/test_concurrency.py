"""Writers at once, on each backend: two processes append to one stream at the same
expected version (exactly one wins each round); two processes append with the same
idempotency key (exactly one records it); appenders race while a reader tails the log (the
reader never skips a position, although commits may finish out of order)."""

from __future__ import annotations

import multiprocessing
import threading

from crds_events import events as ev
from crds_events.store import ConcurrencyError, open_store

ROUNDS = 25
STREAM = "submission:race"


def _racer(db_path: str, worker: str, barrier, results) -> None:
    store = open_store(db_path)
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


def test_two_processes_one_wins_each_round(log_target):
    db_path = log_target
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

    store = open_store(db_path)
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


def _same_key(target: str, worker: str, barrier, results) -> None:
    store = open_store(target)
    try:
        for round_no in range(ROUNDS):
            barrier.wait()
            result = store.append(f"delivery:{round_no}",
                                  ev.SubmissionProgress("key", f"{worker} {round_no}"),
                                  idempotency_key=f"cat_proc:{round_no}")
            results.put((round_no, worker, result.duplicate, result.positions))
    finally:
        store.close()


def test_the_same_idempotency_key_from_two_processes_is_recorded_once(log_target):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    results = ctx.Queue()
    workers = [ctx.Process(target=_same_key, args=(log_target, name, barrier, results))
               for name in ("A", "B")]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in range(2 * ROUNDS)]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    results.close()
    results.join_thread()
    store = open_store(log_target)
    try:
        records = store.read_all()
    finally:
        store.close()
    assert len(records) == ROUNDS  # one event per key, whoever won
    by_key = {r.idempotency_key: r for r in records}
    for round_no in range(ROUNDS):
        entries = [o for o in outcomes if o[0] == round_no]
        assert sorted(duplicate for _, _, duplicate, _ in entries) == [False, True], entries
        assert {positions for *_, positions in entries} == {
            (by_key[f"cat_proc:{round_no}"].position,)}
        winner = next(w for _, w, duplicate, _ in entries if not duplicate)
        assert by_key[f"cat_proc:{round_no}"].data["message"] == f"{winner} {round_no}"


def test_a_tailing_reader_never_skips_a_position(log_target):
    writers, per_writer = 4, 60
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def write(n: int) -> None:
        store = open_store(log_target)
        try:
            for i in range(per_writer):
                # batches of 1-3 to several streams: commits of different sizes interleave
                store.append(f"submission:{n}-{i % 3}",
                             [ev.SubmissionProgress(str(n), f"{n} {i} {j}")
                              for j in range(1 + i % 3)])
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
            raise
        finally:
            store.close()

    def tail() -> None:
        store = open_store(log_target)
        try:
            after = 0
            while True:
                done = stop.is_set()  # read once more after the writers finished
                for record in store.read_all(after):
                    seen.append(record.position)
                    after = record.position
                if done:
                    return
        finally:
            store.close()

    reader = threading.Thread(target=tail, name="tail")
    reader.start()
    threads = [threading.Thread(target=write, args=(n,), name=f"writer-{n}")
               for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    stop.set()
    reader.join(timeout=60)
    assert not errors
    total = writers * sum(1 + i % 3 for i in range(per_writer))
    # every position exactly once, in order: a skipped one would be missing here, since the
    # reader only ever asks for what comes after the last position it saw
    assert seen == list(range(1, total + 1))
