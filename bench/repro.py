"""Benchmark: affected datasets (reprocessing) by crds-events vs brute force with crds.

    .venv/bin/python bench/repro.py [--count 1000000] [--subset 20000] [--seed 1]
                                    [--corpus ../shared/corpus]

The change: the corpus HST context (hst_0001.pmap) with one rmap changed, ACS darkfile
(daily darks, 3,000 rules under Match/UseAfter), its first reference replaced by a new
file; our own `new_context` makes the new imap and pmap (hst_0003.pmap). That first rule
dates from 1992, so every dataset is a candidate (the worst case for the date filter).

The catalog: `--count` synthetic ACS datasets drawn from the corpus's real ACS headers
(the best-references oracle), each with its own random exposure date and time in 1992-2024,
imported with `crds_events.reprocessing.datasets.import_datasets` (timed too).

1. `--subset` datasets (the catalog's first ones), in their own catalog:
   ours: `crds_events.reprocessing.affected.affected_datasets` (cold: fresh process state);
   crds: `crds.core.heavy_client.hv_best_references` under both contexts for every dataset
   (all types compared, as `crds bestrefs --affected-datasets` does per dataset), offline
   (CRDS_PATH a temp cache with both contexts, CRDS_MODE=local). Same run, as a ratio,
   and the two affected-id sets compared.
2. ours on the whole catalog: time and datasets/s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))
from bestrefs import crds_cache  # noqa: E402  (the same offline crds cache as that bench)

console = Console()


def make_catalog(work: Path, name: str, records_path: Path, count: int):
    from crds_events.config import load_settings
    from crds_events.reprocessing.datasets import import_datasets
    from crds_events.store.eventlog import SQLiteEventStore
    from crds_events.store.root import init_root

    settings = load_settings(work / name)
    init_root(settings)
    store = SQLiteEventStore(settings.db_path)
    start = time.perf_counter()
    result = import_datasets(settings, store, records_path)
    elapsed = time.perf_counter() - start
    assert result.count == count, (result.count, count)
    return store, elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--subset", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--corpus",
        default=os.environ.get("CRDS_EVENTS_CORPUS", str(REPO.parent / "shared" / "corpus")),
    )
    args = parser.parse_args(argv)
    corpus = Path(args.corpus)
    if not (corpus / "contexts" / "hst" / "mappings" / "hst_0001.pmap").is_file():
        console.print(f"corpus not found at {corpus} (set --corpus or CRDS_EVENTS_CORPUS)")
        return 2

    from fixtures.repro import catalog_records, copy_context, derive_context, oracle_headers

    from crds_events.reprocessing.affected import affected_datasets

    work = Path(tempfile.mkdtemp(prefix="crds-events-repro-bench-"))
    try:
        mappings = copy_context(corpus, work / "mappings")
        old, new, swap = derive_context(mappings, "hst_acs_darkfile.rmap", occurrence=0)
        console.print(f"[bold]Change[/bold]: {old} -> {new} (ACS darkfile, {swap})")

        headers = oracle_headers(corpus, "ACS")
        full_path, subset_path = work / "catalog.jsonl", work / "subset.jsonl"
        subset_records = []
        start = time.perf_counter()
        with open(full_path, "w") as full, open(subset_path, "w") as part:
            for i, record in enumerate(catalog_records(headers, args.count, args.seed)):
                line = json.dumps(record) + "\n"
                full.write(line)
                if i < args.subset:
                    part.write(line)
                    subset_records.append(record)
        console.print(f"catalog written: {args.count:,} datasets "
                      f"({time.perf_counter() - start:.1f} s)")
        subset_store, _ = make_catalog(work, "subset", subset_path, args.subset)
        full_store, import_s = make_catalog(work, "full", full_path, args.count)
        console.print(f"import: {args.count:,} datasets in {import_s:.1f} s "
                      f"({args.count / import_s:,.0f}/s)")

        # 1. The subset: ours (cold) vs crds brute force, same run.
        start = time.perf_counter()
        ours_subset = affected_datasets(old, new, mappings, subset_store)
        ours_subset_s = time.perf_counter() - start

        cache = crds_cache(mappings)
        os.environ.update(CRDS_PATH=str(cache), CRDS_MODE="local", CRDS_OBSERVATORY="hst")
        os.environ.pop("CRDS_SERVER_URL", None)
        from crds.core import heavy_client
        from crds.core import log as crds_log

        crds_log.set_verbose(0)

        def crds_refs(context: str, header: dict) -> dict:
            try:
                return dict(heavy_client.hv_best_references(context, header))
            except Exception as exc:  # noqa: BLE001 - a whole-dataset failure
                return {"error": f"NOT FOUND {exc}"}

        crds_refs(old, subset_records[0])
        crds_refs(new, subset_records[0])  # contexts loaded outside the timing
        start = time.perf_counter()
        crds_affected = set()
        for record in subset_records:
            before = crds_refs(old, record["header"])
            after = crds_refs(new, record["header"])
            if any(before.get(k) != after.get(k) for k in set(before) | set(after)):
                crds_affected.add(record["id"])
        crds_s = time.perf_counter() - start
        shutil.rmtree(cache, ignore_errors=True)
        ours_ids = set(ours_subset.ids)
        console.print(f"[bold]Subset: {args.subset:,} datasets[/bold]")
        console.print(f"  crds-events: {ours_subset_s:.2f} s "
                      f"({args.subset / ours_subset_s:,.0f} datasets/s), "
                      f"{ours_subset.count} affected, {ours_subset.distinct} groups")
        console.print(f"  crds:        {crds_s:.2f} s ({args.subset / crds_s:,.0f} datasets/s), "
                      f"{len(crds_affected)} affected")
        console.print(f"  ratio: {crds_s / ours_subset_s:.0f}x; same affected ids: "
                      f"{ours_ids == crds_affected} "
                      f"(only ours {len(ours_ids - crds_affected)}, "
                      f"only crds {len(crds_affected - ours_ids)})")

        # 2. The whole catalog: ours.
        start = time.perf_counter()
        ours_full = affected_datasets(old, new, mappings, full_store)
        full_s = time.perf_counter() - start
        console.print(f"[bold]Whole catalog: {args.count:,} datasets[/bold]")
        console.print(f"  crds-events: {full_s:.2f} s ({args.count / full_s:,.0f} datasets/s), "
                      f"{ours_full.count:,} affected of {ours_full.candidates:,} candidates, "
                      f"{ours_full.distinct:,} groups")
        results = {
            "count": args.count, "subset": args.subset, "import_s": round(import_s, 2),
            "subset_ours_s": round(ours_subset_s, 3), "subset_crds_s": round(crds_s, 2),
            "ratio": round(crds_s / ours_subset_s, 1),
            "subset_same_ids": ours_ids == crds_affected,
            "full_ours_s": round(full_s, 2), "full_per_s": round(args.count / full_s),
            "full_affected": ours_full.count, "full_groups": ours_full.distinct,
        }
        console.print(json.dumps(results, indent=1))
        subset_store.close()
        full_store.close()
        ok = results["subset_same_ids"] and results["ratio"] >= 100 and full_s < 30
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
