"""Benchmark: certify the hst_0001.pmap context (119 mappings) and the corpus FITS references,
ours vs the `crds` library's certify, in the same run.

    .venv/bin/python bench/certify.py            # crds on everything (about 3 minutes)
    .venv/bin/python bench/certify.py --quick    # crds on the largest rmap + the references

crds runs in a subprocess (its configuration is read from the environment at import) with
CRDS_PATH a temporary cache laid out as mappings/hst/ + references/hst/, CRDS_MODE=local
and CRDS_SERVER_URL unset; its interpreter start-up and import time, measured separately,
is subtracted. Ours runs in-process with the same .tpn files crds ships (so both check match
values against the same constraints, and crds's substitutions.dat for reference wildcards);
its import time is excluded too. With --quick the crds
figure covers only the files it certified and the ratio is computed on those same files -
nothing is extrapolated.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("CRDS_EVENTS_CORPUS", REPO.parent / "shared" / "corpus"))


def _crds_env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CRDS_SERVER_URL"}
    env.update(CRDS_PATH=str(cache), CRDS_MODE="local", CRDS_OBSERVATORY="hst")
    return env


def _run_crds(files: list[Path], cache: Path) -> tuple[float, int, str]:
    env = _crds_env(cache)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import crds.certify"], env=env, check=True,
                   capture_output=True)
    startup = time.perf_counter() - start
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "crds.certify", *map(str, files),
                           "--comparison-context", "hst_0001.pmap"],
                          env=env, capture_output=True, text=True, cwd=cache)
    elapsed = time.perf_counter() - start - startup
    summary = [line for line in (done.stdout + done.stderr).splitlines()
               if line.rstrip().endswith(("errors", "warnings"))]
    return elapsed, done.returncode, "; ".join(s.split(" - ")[-1].strip() for s in summary)


def _run_ours(files: list[Path], cache: Path, tpn_dir: Path) -> tuple[float, int, int]:
    from crds_events.certify import certify_files

    context = cache / "mappings" / "hst" / "hst_0001.pmap"
    start = time.perf_counter()
    results = certify_files(files, context=context, comparison_context=context, tpn_dir=tpn_dir,
                            substitutions=tpn_dir.parent / "substitutions.dat")
    elapsed = time.perf_counter() - start
    return elapsed, sum(len(r.errors) for r in results), sum(len(r.warnings) for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="crds certifies only the largest rmap and the references")
    args = parser.parse_args()
    import crds

    # The .tpn files crds ships (so both sides check the same constraints).
    tpn_dir = Path(crds.__file__).parent / "hst" / "tpns"
    with tempfile.TemporaryDirectory() as temp:
        cache = Path(temp)
        (cache / "mappings").mkdir()
        (cache / "references").mkdir()
        shutil.copytree(CORPUS / "contexts" / "hst" / "mappings", cache / "mappings" / "hst")
        shutil.copytree(CORPUS / "contexts" / "hst" / "references", cache / "references" / "hst")
        for path in cache.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        mappings = sorted((cache / "mappings" / "hst").glob("*map"))
        references = sorted((cache / "references" / "hst").glob("*.fits"))
        files = mappings + references
        print(f"files: {len(mappings)} mappings + {len(references)} FITS references "
              f"({sum(p.stat().st_size for p in files) / 1e6:.1f} MB)")

        _run_ours([mappings[0], references[0]], cache, tpn_dir)  # imports
        ours, errors, warnings = _run_ours(files, cache, tpn_dir)
        print(f"crds-events certify, all files : {ours:8.2f} s  ({errors} errors, {warnings} warnings)")

        crds_files = files
        if args.quick:
            largest = max(mappings, key=lambda p: p.stat().st_size if p.suffix == ".rmap" else 0)
            crds_files = [largest] + references
            ours, _, _ = _run_ours(crds_files, cache, tpn_dir)
            print(f"crds-events certify, --quick subset ({len(crds_files)} files): {ours:8.2f} s")
        theirs, code, summary = _run_crds(crds_files, cache)
        print(f"crds certify ({len(crds_files)} files)        : {theirs:8.2f} s  (exit {code}; {summary})")
        print(f"ratio crds / crds-events        : {theirs / ours:8.1f}x  (goal >= 20x)")


if __name__ == "__main__":
    main()
