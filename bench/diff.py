"""Benchmark: `crds-events diff` of two large rmaps vs `crds diff` (the crds library, same run).

The old rmap is the corpus's largest, hst_wfpc2_darkfile.rmap (3,655 lines); the new one is
made from it by replacing every 20th reference name and dropping every 50th match case, so
the difference has a few hundred lines. Both tools print the same lines (checked); the
figures are the best of several runs of the whole difference (load both rmaps, compare,
format), in-process.

    .venv/bin/python bench/diff.py [--corpus ../shared/corpus] [--repeat 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def make_pair(corpus: Path, workdir: Path) -> tuple[Path, Path]:
    source = corpus / "contexts" / "hst" / "mappings" / "hst_wfpc2_darkfile.rmap"
    text = source.read_text()
    old = workdir / "hst_wfpc2_darkfile.rmap"
    old.write_text(text)
    counter = iter(range(10**9))
    text = re.sub(r"'(\w+)(\.r\dh)'",
                  lambda m: f"'{m[1]}x{m[2]}'" if next(counter) % 20 == 0 else m[0], text)
    # drop every 50th whole match case (a Match line through its closing "}),")
    cases = re.split(r"(?m)^(?=    \()", text)
    head, body = cases[0], cases[1:]
    kept = [case for i, case in enumerate(body) if i % 50 != 7]
    new_text = head + "".join(kept)
    if not new_text.rstrip().endswith("})"):
        new_text = new_text.rstrip() + "\n})\n"
    new = workdir / "hst_wfpc2_darkfile_0001.rmap"
    new.write_text(new_text)
    return old, new


def best_of(repeat: int, func) -> tuple[float, str]:
    best, output = float("inf"), ""
    for _ in range(repeat):
        buffer = io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stdout(buffer):
            func(buffer)
        best = min(best, time.perf_counter() - start)
        output = buffer.getvalue()
    return best, output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path(
        os.environ.get("CRDS_EVENTS_CORPUS", REPO.parent / "shared" / "corpus")))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not (args.corpus / "README.md").is_file():
        print(f"corpus not found at {args.corpus}; set --corpus", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        os.environ.setdefault("CRDS_PATH", str(workdir / "crds_cache"))
        os.environ.setdefault("CRDS_OBSERVATORY", "hst")
        old, new = make_pair(args.corpus, workdir)

        from crds_events.refactoring.diff import DiffOptions, difference

        def ours(out: io.StringIO) -> None:
            difference(str(old), str(new), DiffOptions(), out)

        import crds.diff  # the reference implementation, in this venv

        def theirs(out: io.StringIO) -> None:
            crds.diff.difference("hst", str(old), str(new))

        t_ours, out_ours = best_of(args.repeat, ours)
        t_crds, out_crds = best_of(args.repeat, theirs)
        lines = out_ours.count("\n")
        same = out_ours == out_crds
        print(f"diff of {old.name} ({sum(1 for _ in old.open())} lines) vs {new.name}: "
              f"{lines} difference lines, identical output: {same}")
        print(f"crds-events diff: {t_ours * 1000:8.1f} ms")
        print(f"crds diff:        {t_crds * 1000:8.1f} ms")
        print(f"ratio (crds / crds-events): {t_crds / t_ours:.1f}x")
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
