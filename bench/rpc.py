"""Benchmark: the real crds client syncing from our server, and best-references RPC latency.

    .venv/bin/python bench/rpc.py [--refs 10000] [--calls 2000] [--corpus ../shared/corpus]

1. A temp root gets a synthetic HST context naming ``--refs`` small FITS references (rmaps
   written with the rules checksum helper, imported with import_cache: archived). The real
   ``crds sync --contexts hst_9000.pmap --fetch-references`` (PyPI crds, a subprocess, empty
   CRDS_PATH) downloads them from our server (waitress, 8 threads): files/s, every file
   checked present with the server's sha1 afterwards.
   For comparison, the same real client syncs again with its references taken from a bare
   static server (Python's ``http.server`` on the same directory, ``CRDS_REFERENCE_URI``),
   and a plain sequential urllib loop fetches every file from ours and from the static
   server (the client-independent per-request cost).
2. ``get_best_references`` over one persistent HTTP connection, ``--calls`` calls with
   headers cycling over the synthetic context's selections (and, with the corpus, the
   ACS headers of the hst_0001 oracle): latency p50/p99 in ms, answers checked.
3. ``push_remote_context`` latency at the 1st and at the ``--pipelines``-th registered
   pipeline (each registered with `crds-events pipeline add`'s library call, each having
   pushed once, so the remote-contexts and key projections hold that many rows): a push
   reads one pipeline's rows, so the two should be within 2x. ``--push-only`` runs just
   this part (a small root, no sync).

    .venv/bin/python bench/rpc.py --push-only [--pipelines 10000]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.client
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fixtures.rpc import (  # noqa: E402
    aperture,
    make_root,
    running_server,
    synthetic_reference_name,
)


def _env(url: str, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDS_")}
    env.update(CRDS_SERVER_URL=url, CRDS_PATH=str(cache), CRDS_OBSERVATORY="hst")
    return env


def real_client_sync(url: str, work: Path, refs: int, label: str,
                     reference_uri: str | None = None) -> tuple[float, int]:
    cache = work / f"client_cache_{label}"
    env = _env(url, cache)
    if reference_uri:  # references from another server; RPC and mappings still from ours
        env["CRDS_REFERENCE_URI"] = reference_uri
    started = time.perf_counter()
    result = subprocess.run([str(Path(sys.executable).parent / "crds"), "sync", "--contexts",
                             "hst_9000.pmap", "--fetch-references"], env=env,
                            capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"crds sync failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    source = work / "synthetic" / "references"
    present = 0
    for i in range(refs):
        name = synthetic_reference_name(i)
        found = cache / "references" / "hst" / "acs" / name
        if found.is_file() and found.read_bytes() == (source / name).read_bytes():
            present += 1
    return seconds, present


def urllib_loop(base: str, names: list[str]) -> float:
    started = time.perf_counter()
    for name in names:
        with urllib.request.urlopen(base + name) as response:
            response.read()
    return time.perf_counter() - started


def static_server(directory: Path):
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def rpc_latency(url: str, cases: list[tuple[str, dict, list | None, dict]], calls: int
                ) -> list[float]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port))
    times = []
    for n in range(calls):
        context, header, types, expected = cases[n % len(cases)]
        body = json.dumps({"jsonrpc": "1.0", "method": "get_best_references",
                           "params": [context, header, types], "id": n})
        started = time.perf_counter()
        conn.request("POST", f"/json/get_best_references/{n}/", body)
        reply = json.loads(conn.getresponse().read())
        times.append(time.perf_counter() - started)
        if reply["error"] is not None or not _same(reply["result"], expected):
            raise SystemExit(f"wrong answer for {header}: {reply}")
    conn.close()
    return times


def _push_times(conn: http.client.HTTPConnection, key: str, contexts: list[str], calls: int
                ) -> list[float]:
    """``calls`` pushes by one pipeline alternating between two contexts (each recorded)."""
    times = []
    for n in range(calls):
        body = json.dumps({"jsonrpc": "1.0", "method": "push_remote_context",
                           "params": ["hst", "latest", key, contexts[n % 2]], "id": n})
        started = time.perf_counter()
        conn.request("POST", f"/json/push_remote_context/{n}/", body)
        reply = json.loads(conn.getresponse().read())
        times.append(time.perf_counter() - started)
        if reply["error"] is not None:
            raise SystemExit(f"push refused: {reply['error']}")
    return times


def _caught_up(settings, store) -> None:
    """Wait until the server's projections of pipelines have folded the whole log."""
    from crds_events.store.handler import get_checkpoint

    while True:
        head = store.head()
        done = min(get_checkpoint(store, f"projection:{table}")
                   for table in ("pipeline_keys", "remote_contexts", "pipelines"))
        if done >= head:
            return
        time.sleep(0.05)


def push_latency(settings, url: str, pipelines: int, calls: int = 200) -> None:
    """Push latency at the 1st and the ``pipelines``-th registered pipeline (see 3.)."""
    from crds_events.contexts.pipelines import add_pipeline
    from crds_events.store.eventlog import SQLiteEventStore

    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port))
    contexts = ["hst_9000.pmap", "hst_9001.pmap"]
    with SQLiteEventStore(settings.db_path) as store:
        first = add_pipeline(store, "pipeline-00001").key
        _caught_up(settings, store)
        _push_times(conn, first, contexts, 20)  # warm
        at_first = _push_times(conn, first, contexts, calls)
        started = time.perf_counter()
        last = first
        for n in range(2, pipelines + 1):
            last = add_pipeline(store, f"pipeline-{n:05d}").key
            _push_times(conn, last, contexts, 1)  # every pipeline has pushed once
        print(f"registered and pushed once by {pipelines - 1} more pipelines in "
              f"{time.perf_counter() - started:.0f} s")
        _caught_up(settings, store)
        at_last = _push_times(conn, last, contexts, calls)
        again = _push_times(conn, first, contexts, calls)
    conn.close()
    p50 = [statistics.median(t) * 1000 for t in (at_first, at_last, again)]
    print(f"push_remote_context p50: {p50[0]:.2f} ms at the 1st pipeline (1 registered), "
          f"{p50[1]:.2f} ms at the {pipelines:,}th ({pipelines:,} registered, each pushed "
          f"once), {p50[2]:.2f} ms at the 1st again; ratio {p50[1] / p50[0]:.2f}x "
          f"(goal: within 2x); {calls} recorded pushes each")


def _second_context(settings, work: Path) -> None:
    """hst_9001.pmap, a copy of the synthetic context, so pushes can alternate."""
    from fixtures.rpc import write_synthetic_context

    from crds_events.contexts.importcache import import_cache
    from crds_events.store.eventlog import SQLiteEventStore

    mappings, references, pmap = write_synthetic_context(work / "synthetic-9001", 5, 9001)
    with SQLiteEventStore(settings.db_path) as store:
        import_cache(settings, store, mappings, references, pmap)


def _same(got, expected) -> bool:
    def failure(v):
        return isinstance(v, str) and v.startswith("NOT FOUND") and v != "NOT FOUND n/a"
    if isinstance(expected, dict):
        return isinstance(got, dict) and set(got) == set(expected) and all(
            _same(got[k], expected[k]) for k in got)
    return failure(got) if failure(expected) else got == expected


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--refs", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus")
    parser.add_argument("--pipelines", type=int, default=10_000)
    parser.add_argument("--push-only", action="store_true")
    args = parser.parse_args()
    corpus = args.corpus if (args.corpus / "README.md").is_file() else None
    if args.push_only:
        with tempfile.TemporaryDirectory(prefix="bench_push_") as tmp:
            settings = make_root(Path(tmp) / "root", None, 5, Path(tmp))
            _second_context(settings, Path(tmp))
            with running_server(settings) as url:
                push_latency(settings, url, args.pipelines)
        return

    with tempfile.TemporaryDirectory(prefix="bench_rpc_") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        settings = make_root(work / "root", corpus, args.refs, work)
        print(f"setup: {args.refs} references written and imported in "
              f"{time.perf_counter() - started:.1f} s")
        names = [synthetic_reference_name(i) for i in range(args.refs)]
        with running_server(settings) as url:
            seconds, present = real_client_sync(url, work, args.refs, "ours")
            print(f"real crds sync --fetch-references from ours: {present}/{args.refs} files "
                  f"in {seconds:.1f} s = {present / seconds:.0f} files/s (client start-up "
                  f"and mapping sync included)")
            server, thread = static_server(work / "synthetic" / "references")
            try:
                static_uri = f"http://127.0.0.1:{server.server_port}/"
                s_seconds, s_present = real_client_sync(url, work, args.refs, "static",
                                                        static_uri)
                print(f"real crds sync, references from a bare http.server instead: "
                      f"{s_present}/{args.refs} in {s_seconds:.1f} s = "
                      f"{s_present / s_seconds:.0f} files/s (ratio ours/bare "
                      f"{s_seconds / seconds:.2f}x)")
                ours = urllib_loop(url + "/unchecked_get/references/hst/", names)
                bare = urllib_loop(static_uri, names)
            finally:
                server.shutdown()
                server.server_close()
                thread.join()
            print(f"sequential urllib GETs: ours {len(names) / ours:.0f} files/s, "
                  f"bare http.server {len(names) / bare:.0f} files/s "
                  f"(ratio ours/bare {bare / ours:.2f}x)")

            cases = []
            for i in range(0, args.refs, max(1, args.refs // 200)):
                header = {"INSTRUME": "ACS", "DETECTOR": "WFC", "APERTURE": aperture(i),
                          "DATE-OBS": "2010-01-01", "TIME-OBS": "00:00:00"}
                cases.append(("hst_9000.pmap", header, ["bpixtab"],
                              {"bpixtab": synthetic_reference_name(i)}))
            if corpus is not None:
                for line in (corpus / "oracle/bestrefs_hst_0001.jsonl").open():
                    case = json.loads(line)
                    if case["instrument"] == "ACS" and "error" not in case["expected"]:
                        cases.append(("hst_0001.pmap", case["header"], None,
                                      case["expected"]))
            rpc_latency(url, cases, min(len(cases), 200))  # warm: contexts loaded
            times = rpc_latency(url, cases, args.calls)
            ms = [t * 1000 for t in times]
            print(f"get_best_references over one connection: {args.calls} calls, p50 "
                  f"{statistics.median(ms):.2f} ms, p99 {percentile(ms, 0.99):.2f} ms "
                  f"({len(cases)} distinct headers{', ACS oracle included' if corpus else ''})")
            _second_context(settings, work)
            push_latency(settings, url, args.pipelines)
        digest = hashlib.sha1(b"".join(n.encode() for n in names)).hexdigest()[:8]
        print(f"(reference set {digest})")


if __name__ == "__main__":
    main()
