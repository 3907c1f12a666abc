"""Benchmark: best references by crds-events vs the crds library, same headers, same run.

    .venv/bin/python bench/bestrefs.py [--count 20000] [--corpus ../shared/corpus] [--seed 1]

1. Full load of `contexts/hst/mappings/hst_0001.pmap` (all 116 mappings): ours
   (`load_context(..., load_all=True)`) vs crds (`load_mapping` + `force_load`), best of 3.
2. Best references (all types) for `--count` headers of every HST instrument, drawn from
   the oracle's header lines (`bestrefs_hst_0001.jsonl`, equal numbers per instrument), by
   ours and by `crds.core.heavy_client.hv_best_references` run offline (CRDS_PATH a temp
   cache whose mappings/hst/ holds the context, CRDS_MODE=local, no server).
   Two draws: "as drawn" (datasets repeat parameter combinations, as in an archive) and
   "distinct" (every header's DATE-OBS moved by a random number of days, so almost no two
   datasets share their parameters). Answers are verified identical (file names, lists,
   `NOT FOUND n/a`, omitted types exactly; other `NOT FOUND` reasons may differ in text).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

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


def time_best(label: str, function, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    console.print(f"  {label}: {best:.3f} s")
    return best


def run_bestrefs(label: str, headers: list[dict], compute) -> tuple[list, float]:
    answers = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(label, total=len(headers))
        start = time.perf_counter()
        for i, header in enumerate(headers):
            answers.append(compute(header))
            if i % 500 == 0:
                progress.update(task, completed=i)
        elapsed = time.perf_counter() - start
    return answers, elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
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

    console.print("[bold]Full context load[/bold] (hst_0001.pmap, every mapping)")
    ours_load = time_best("crds-events", lambda: load_context(pmap, load_all=True))

    def crds_load():
        crds_rmap.load_mapping("hst_0001.pmap").force_load()

    crds_load_time = time_best("crds", crds_load)
    console.print(f"  ratio: ours takes {ours_load / crds_load_time:.2f} of crds's time "
                  f"({crds_load_time / ours_load:.1f}x faster)")

    results = {"load_ours_s": ours_load, "load_crds_s": crds_load_time}
    rng = random.Random(args.seed)
    for name, distinct in (("as drawn", False), ("distinct", True)):
        headers = draw_headers(corpus / "oracle" / "bestrefs_hst_0001.jsonl", args.count, rng, distinct)
        context = load_context(pmap, load_all=True)  # fresh caches for each draw

        def ours(header, context=context):
            try:
                return context.best_references(header)
            except DatasetError as exc:
                return {"error": exc.not_found}

        def theirs(header):
            try:
                return heavy_client.hv_best_references("hst_0001.pmap", header)
            except Exception as exc:  # noqa: BLE001 - a whole-dataset failure
                return {"error": f"NOT FOUND {exc}"}

        console.print(f"[bold]Best references, {args.count} headers ({name})[/bold]")
        heavy_client.hv_best_references("hst_0001.pmap", headers[0])  # load crds's context
        our_answers, our_time = run_bestrefs("crds-events", headers, ours)
        their_answers, their_time = run_bestrefs("crds", headers, theirs)
        mismatches = [
            i for i, (a, b) in enumerate(zip(our_answers, their_answers, strict=True))
            if not (("error" in a and "error" in b) or same_answer(a, b))
        ]
        ours_rate, crds_rate = args.count / our_time, args.count / their_time
        console.print(f"  crds-events: {ours_rate:,.0f} datasets/s ({our_time:.2f} s)")
        console.print(f"  crds:        {crds_rate:,.0f} datasets/s ({their_time:.2f} s)")
        console.print(f"  ratio: {ours_rate / crds_rate:.1f}x; answers identical: "
                      f"{len(headers) - len(mismatches)}/{len(headers)}")
        for i in mismatches[:5]:
            console.print(f"  MISMATCH {headers[i]}\n   ours   {our_answers[i]}\n   crds   {their_answers[i]}")
        results[name] = {
            "ours_per_s": ours_rate, "crds_per_s": crds_rate, "mismatches": len(mismatches),
        }
    shutil.rmtree(cache, ignore_errors=True)
    console.print(json.dumps(results, indent=1))
    return 0 if all(results[n]["mismatches"] == 0 for n in ("as drawn", "distinct")) else 1


if __name__ == "__main__":
    sys.exit(main())
