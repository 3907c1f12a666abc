"""Kill a writer process with SIGKILL mid-stream, 20 times, on each backend: the log must
stay whole.

The child appends batches to a few streams, some in a transaction over two streams (as
handlers commit), and, after each commit returns, writes one acknowledgement line per event
to an unbuffered file. After every kill the test reopens the log and checks SQLite's
integrity, gapless positions and versions, that every batch and transaction is there whole
or not at all (each message says its index and its commit's size), and that every
acknowledged event is present exactly as acknowledged.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from crds_events.store import open_store

# A "zygote" imports everything once, then forks one writer per kill (fast: no re-import).
# The writer opens its own connection after the fork, as any new process would.
ZYGOTE = r"""
import os, random, sys
from crds_events import events as ev
from crds_events.store import open_store

db_path, ack_path = sys.argv[1], sys.argv[2]


def write_forever(seed):
    rng = random.Random(seed)
    store = open_store(db_path)
    ack = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    streams = [f"submission:{i}" for i in range(5)]
    versions = {s: store.stream_version(s) for s in streams}
    print("ready", os.getpid(), flush=True)
    n = 0
    while True:
        stream = rng.choice(streams)
        size = rng.randint(1, 4)
        key = f"{seed}-{n}" if rng.random() < 0.3 else None
        together = rng.random() < 0.3  # plus one event on another stream, one commit
        total = size + 1 if together else size
        batch = [ev.SubmissionProgress(stream, f"{seed}-{n}-{i}/{total}") for i in range(size)]
        if together:
            other = rng.choice([s for s in streams if s != stream])
            extra = ev.SubmissionProgress(other, f"{seed}-{n}-{size}/{total}")
            with store.transaction() as tx:
                result = tx.append(stream, batch, versions[stream], idempotency_key=key)
                second = tx.append(other, extra, versions[other])
            versions[other] = second.version
        else:
            result = store.append(stream, batch, versions[stream], idempotency_key=key)
        versions[stream] = result.version
        written = [(p, stream, result.version - size + 1 + i, batch[i].message)
                   for i, p in enumerate(result.positions)]
        if together:
            written.append((second.position, other, second.version, extra.message))
        lines = "".join(f"{p} {s} {v} {m}\n" for p, s, v, m in written)
        os.write(ack, lines.encode())
        n += 1


for line in sys.stdin:
    seed = int(line)
    pid = os.fork()
    if pid == 0:
        write_forever(seed)
    _, status = os.waitpid(pid, 0)
    print("dead", os.WTERMSIG(status) if os.WIFSIGNALED(status) else -1, flush=True)
"""

KILLS = 20


def _check(db_path, ack_path) -> int:
    if not db_path.startswith("postgres"):
        conn = sqlite3.connect(db_path)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            conn.close()
    store = open_store(db_path)  # recovers the WAL like any later reader would
    try:
        records = store.read_all()
    finally:
        store.close()
    assert [r.position for r in records] == list(range(1, len(records) + 1))
    by_stream: dict[str, list[int]] = {}
    for record in records:
        by_stream.setdefault(record.stream, []).append(record.version)
    for stream, versions in by_stream.items():
        assert versions == list(range(1, len(versions) + 1)), stream
    commits: dict[str, list[tuple[int, int]]] = {}  # "seed-n" -> [(index, size)]
    for record in records:
        tag, _, part = record.data["message"].rpartition("-")
        index, size = part.split("/")
        commits.setdefault(tag, []).append((int(index), int(size)))
    for tag, parts in commits.items():  # nothing half-written
        assert sorted(parts) == [(i, parts[0][1]) for i in range(parts[0][1])], tag
    present = {r.position: (r.stream, r.version, r.data["message"]) for r in records}
    with open(ack_path) as stream:
        acked = [line.split() for line in stream if line.endswith("\n")]
    for position, stream_name, version, message in acked:
        assert present.get(int(position)) == (stream_name, int(version), message)
    return len(acked)


@pytest.mark.slow
def test_sigkill_mid_stream_loses_nothing_acknowledged(tmp_path, log_target):
    db_path = log_target
    ack_path = str(tmp_path / "acks.txt")
    rng = random.Random(20)
    acked_before = 0
    zygote = subprocess.Popen(
        [sys.executable, "-c", ZYGOTE, db_path, ack_path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        for kill in range(KILLS):
            zygote.stdin.write(f"{kill}\n")
            zygote.stdin.flush()
            word, pid = zygote.stdout.readline().split()
            assert word == "ready"
            time.sleep(rng.uniform(0.02, 0.2))
            os.kill(int(pid), signal.SIGKILL)
            assert zygote.stdout.readline().split() == ["dead", str(int(signal.SIGKILL))]
            acked = _check(db_path, ack_path)
            assert acked >= acked_before
            acked_before = acked
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=10)
        zygote.stdout.close()
    assert acked_before > KILLS  # the writers really were writing when killed
