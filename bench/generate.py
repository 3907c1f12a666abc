"""Generated contexts at growing scale: generation time, context load, best references.

    .venv/bin/python bench/generate.py [--quick]

For each scale (instruments x types x datasets) it generates a JWST-like context
(`crds_events.demo.generate`; references written only at the default scale), loads it with
`crds_events.rules.bestrefs.load_context(load_all=True)` and computes best references for
every dataset of the catalog (the reprocessing workload: unique parameter tuples are what
cost). The crds library cannot run these JWST rules here without stdatamodels, so there is
no ratio: these figures are what the other benchmarks scale up with.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crds_events.demo.generate import GeneratorConfig, generate  # noqa: E402
from crds_events.rules.bestrefs import load_context  # noqa: E402

SCALES = [
    GeneratorConfig(instruments=5, types=20, datasets=100_000),
    GeneratorConfig(instruments=10, types=30, datasets=200_000, references="none"),
    GeneratorConfig(instruments=20, types=40, cases=32, datasets=400_000, references="none"),
]


def run(config: GeneratorConfig, directory: Path, limit: int | None) -> dict:
    started = time.perf_counter()
    result = generate(config, directory)
    generated = time.perf_counter() - started
    started = time.perf_counter()
    context = load_context(result.mappings_dir / result.pmap, load_all=True)
    loaded = time.perf_counter() - started
    found = total = 0
    started = time.perf_counter()
    with result.datasets_path.open() as handle:
        for number, line in enumerate(handle):
            if limit is not None and number >= limit:
                break
            answers = context.best_references(json.loads(line)["header"])
            total += 1
            found += all(not str(v).startswith("NOT FOUND") or v == "NOT FOUND n/a"
                         for v in answers.values())
    bestrefs = time.perf_counter() - started
    return {"scale": f"{config.instruments} x {config.types}", "mappings": len(result.mappings),
            "references": len(result.cases), "datasets": total, "generate_s": generated,
            "load_s": loaded, "bestrefs_per_s": total / bestrefs if bestrefs else 0.0,
            "resolved": found / total if total else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Only the default scale, 20k datasets.")
    args = parser.parse_args()
    scales = SCALES[:1] if args.quick else SCALES
    print(f"{'scale':>8} {'mappings':>9} {'refs':>7} {'datasets':>9} {'generate':>9} "
          f"{'load':>7} {'bestrefs/s':>11} {'resolved':>9}")
    for config in scales:
        with tempfile.TemporaryDirectory(prefix="bench-generate-") as directory:
            row = run(config, Path(directory), 20_000 if args.quick else None)
        print(f"{row['scale']:>8} {row['mappings']:>9} {row['references']:>7} "
              f"{row['datasets']:>9} {row['generate_s']:>8.1f}s {row['load_s']:>6.2f}s "
              f"{row['bestrefs_per_s']:>11,.0f} {row['resolved']:>8.1%}")


if __name__ == "__main__":
    main()
