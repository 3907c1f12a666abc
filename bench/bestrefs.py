"""Benchmark: best references by crds-events vs the crds library, same headers, same run.

    .venv/bin/python bench/bestrefs.py [--count 20000] [--corpus ../shared/corpus] [--seed 1]

1. Full load of `contexts/hst/mappings/hst_0001.pmap` (all 116 mappings): ours
   (`load_context(..., load_all=True)`) vs crds (`load_mapping` + `force_load`), best of 5.
2. Best references (all types) for `--count` headers of every HST instrument, drawn from
   the oracle's header lines (`bestrefs_hst_0001.jsonl`, equal numbers per instrument), by
   ours and by `crds.core.heavy_client.hv_best_references` run offline (CRDS_PATH a temp
   cache whose mappings/hst/ holds the context, CRDS_MODE=local, no server).
   Two draws. The headline, "distinct": new datasets, every header's DATE-OBS moved by a
   random number of days (as pipelines see them: each has its own exposure date), with our
   header-level result cache switched off (`Context.cache_results = False`), so every
   dataset is answered by the rmap lookups. Beside it, "repeated": the headers as drawn
   (parameter combinations repeat, as in an archive), cache on, as the server runs.
   Both sides run in the same process over the same headers, ours then crds's (or, with
   `--chunk N`, alternating every N headers so that load bursts on a shared machine hit
   both); wall-clock and CPU rates are reported. Answers are verified identical (file
   names, lists, `NOT FOUND n/a`, omitted types exactly; other `NOT FOUND` reasons may
   differ in text).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

REPO = Path(__file__).resolve().parent.parent
console = Console()


def _not_found_other(value) -> bool:
    return isinstance(value, str) and value.startswith("NOT FOUND") and value != "NOT FOUND n/a"


def same_answer(ours: dict, theirs: dict) -> bool:
    if set(ours) != set(theirs):
        return False
    for key, want in theirs.items():
        have = ours[key]
        if isinstance(want, tuple):
            want = list(want)
        if _not_found_other(want):
            if not _not_found_other(have):
                return False
        elif have != want:
            return False
    return True


def draw_headers(oracle: Path, count: int, rng: random.Random, distinct: bool) -> list[dict]:
    by_instrument: dict[str, list[dict]] = {}
    with open(oracle, encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if record["kind"] != "error":
                by_instrument.setdefault(record["instrument"], []).append(record["header"])
    instruments = sorted(by_instrument)
    headers = []
    for i in range(count):
        header = dict(rng.choice(by_instrument[instruments[i % len(instruments)]]))
        if distinct and "DATE-OBS" in header:
            try:
                day = datetime.date.fromisoformat(str(header["DATE-OBS"]))
            except ValueError:
                pass
            else:
                header["DATE-OBS"] = (day + datetime.timedelta(days=rng.randint(-400, 400))).isoformat()
        headers.append(header)
    return headers


def crds_cache(mappings: Path) -> Path:
    root = Path(tempfile.mkdtemp(prefix="crds-bench-"))
    target = root / "mappings" / "hst"
    target.mkdir(parents=True)
    for path in mappings.iterdir():
        if path.suffix in (".pmap", ".imap", ".rmap"):
            shutil.copy(path, target / path.name)
    (root / "config" / "hst").mkdir(parents=True)
    return root


def time_best(label: str, function, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    console.print(f"  {label}: {best:.3f} s")
    return best


def run_side_by_side(headers: list[dict], ours, theirs, chunk: int):
    """Both sides over the same headers: all of ours then all of crds's (`chunk` = the
    count), or alternating in chunks of `chunk` headers so that bursts of load on a shared
    machine hit both alike (each side keeps its own order, so caches see the headers as in
    a single pass; but each side then starts every chunk with the CPU caches the other
    left). Returns answers and (wall, cpu) seconds per side. (No live progress bar: its
    refresh thread would be timed with whichever side runs.)"""
    answers: dict[str, list] = {"ours": [], "crds": []}
    times = {"ours": [0.0, 0.0], "crds": [0.0, 0.0]}
    sides = (("ours", ours), ("crds", theirs))
    for begin in range(0, len(headers), chunk):
        part = headers[begin:begin + chunk]
        for name, compute in sides:
            done = answers[name]
            wall, cpu = time.perf_counter(), time.process_time()
            for header in part:
                done.append(compute(header))
            times[name][0] += time.perf_counter() - wall
            times[name][1] += time.process_time() - cpu
        if begin % (chunk * 8) == 0:
            console.print(f"  ... {begin + len(part):,} of {len(headers):,}", end="\r")
    return answers, times


def mismatches(ours: list[dict], theirs: list[dict]) -> list[int]:
    return [
        i for i, (a, b) in enumerate(zip(ours, theirs, strict=True))
        if not (("error" in a and "error" in b) or same_answer(a, b))
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=0,
                        help="alternate the two sides every CHUNK headers (0: one after the "
                             "other, each over the whole draw)")
    parser.add_argument(
        "--corpus",
        default=os.environ.get("CRDS_EVENTS_CORPUS", str(REPO.parent / "shared" / "corpus")),
    )
    args = parser.parse_args(argv)
    corpus = Path(args.corpus)
    mappings = corpus / "contexts" / "hst" / "mappings"
    pmap = mappings / "hst_0001.pmap"
    if not pmap.is_file():
        console.print(f"corpus not found at {corpus} (set --corpus or CRDS_EVENTS_CORPUS)")
        return 2

    cache = crds_cache(mappings)
    os.environ.update(CRDS_PATH=str(cache), CRDS_MODE="local", CRDS_OBSERVATORY="hst")
    os.environ.pop("CRDS_SERVER_URL", None)
    from crds.core import heavy_client
    from crds.core import log as crds_log
    from crds.core import rmap as crds_rmap

    from crds_events.rules.bestrefs import DatasetError, load_context

    crds_log.set_verbose(0)
    console.print(f"load average at the start: {os.getloadavg()[0]:.2f}")

    console.print("[bold]Full context load[/bold] (hst_0001.pmap, every mapping)")
    ours_load = time_best("crds-events", lambda: load_context(pmap, load_all=True))

    def crds_load():
        crds_rmap.load_mapping("hst_0001.pmap").force_load()

    crds_load_time = time_best("crds", crds_load)
    console.print(f"  ratio: ours takes {ours_load / crds_load_time:.2f} of crds's time "
                  f"({crds_load_time / ours_load:.1f}x faster)")

    results: dict = {"load_ours_s": ours_load, "load_crds_s": crds_load_time,
                     "load_ratio": ours_load / crds_load_time}
    rng = random.Random(args.seed)
    oracle = corpus / "oracle" / "bestrefs_hst_0001.jsonl"
    repeated = draw_headers(oracle, args.count, rng, distinct=False)
    distinct = draw_headers(oracle, args.count, rng, distinct=True)

    def theirs(header):
        try:
            return heavy_client.hv_best_references("hst_0001.pmap", header)
        except Exception as exc:  # noqa: BLE001 - a whole-dataset failure
            return {"error": f"NOT FOUND {exc}"}

    # Headline: new datasets (every date moved), our header-level result cache disabled, so
    # every dataset is answered by the rmap lookups (the mode plans and date tables).
    # Beside it: the repeated draw with the cache on, as the server runs.
    draws = (("distinct", distinct, False), ("repeated", repeated, True))
    for name, headers, use_cache in draws:
        context = load_context(pmap, load_all=True)  # fresh caches for each draw
        context.cache_results = use_cache

        def ours(header, context=context):
            try:
                return context.best_references(header)
            except DatasetError as exc:
                return {"error": exc.not_found}

        unique = len({json.dumps(h, sort_keys=True) for h in headers})
        label = ("new datasets: every DATE-OBS moved, header cache OFF" if name == "distinct"
                 else "repeated draw: archive-like repeats, header cache on")
        console.print(f"[bold]Best references, {args.count} headers, {label}[/bold] "
                      f"({unique} distinct headers)")
        heavy_client.hv_best_references("hst_0001.pmap", headers[0])  # load crds's context
        # Both loaded contexts are long-lived: keep them out of the cyclic collector's full
        # passes (as a server would after loading), for both sides alike.
        gc.collect()
        gc.freeze()
        answers, times = run_side_by_side(headers, ours, theirs, args.chunk or len(headers))
        bad = mismatches(answers["ours"], answers["crds"])
        entry = {"distinct_headers": unique, "mismatches": len(bad)}
        for clock, index in (("wall", 0), ("cpu", 1)):
            ours_rate = args.count / times["ours"][index]
            crds_rate = args.count / times["crds"][index]
            console.print(f"  {clock:4}: crds-events {ours_rate:9,.0f}/s   crds {crds_rate:7,.0f}/s"
                          f"   ratio {ours_rate / crds_rate:6.1f}x")
            entry[clock] = {"ours_per_s": ours_rate, "crds_per_s": crds_rate,
                            "ratio": ours_rate / crds_rate}
        console.print(f"  answers identical: {len(headers) - len(bad)}/{len(headers)}")
        for i in bad[:5]:
            console.print(f"  MISMATCH {headers[i]}\n   ours   {answers['ours'][i]}\n"
                          f"   crds   {answers['crds'][i]}")
        results[name] = entry
    shutil.rmtree(cache, ignore_errors=True)
    console.print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    headline = results["distinct"]
    console.print(
        f"[bold]HEADLINE[/bold] new datasets (header cache off): "
        f"{headline['wall']['ratio']:.1f}x crds wall clock, {headline['cpu']['ratio']:.1f}x CPU; "
        f"repeated draw (cache on): {results['repeated']['wall']['ratio']:.1f}x wall; "
        f"full load {results['load_ratio']:.2f} of crds's; answers identical: "
        f"{'yes' if headline['mismatches'] == results['repeated']['mismatches'] == 0 else 'NO'}")
    console.print(json.dumps(results, indent=1))
    return 0 if all(results[n]["mismatches"] == 0 for n in ("distinct", "repeated")) else 1


if __name__ == "__main__":
    sys.exit(main())
