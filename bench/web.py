"""Web pages at scale: 10,000 contexts, 100,000 catalog files, 1,000,000 events.

Builds a root (one real synthetic HST context in the file store, made latest, plus a
generated history appended in batches through the store API), rebuilds the projections,
creates the pages' indexes, then times each main page through Flask's test client:
p50/p95 over N requests (goal p95 <= 200 ms). "As of event N" is timed cold: every request
asks for a position not asked before, so nothing of it is cached.

    .venv/bin/python bench/web.py [--events 1000000] [--requests 30]
    .venv/bin/python bench/web.py --context-only   # the corpus HST context display only
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fixtures.rpc import write_synthetic_context  # noqa: E402

from crds_events import events as ev  # noqa: E402
from crds_events.config import load_settings  # noqa: E402
from crds_events.contexts.importcache import import_cache  # noqa: E402
from crds_events.store.eventlog import SQLiteEventStore  # noqa: E402
from crds_events.store.projections import rebuild  # noqa: E402
from crds_events.store.root import init_root  # noqa: E402
from crds_events.web import create_app  # noqa: E402

INSTRUMENTS = ("acs", "wfc3", "cos", "stis", "nicmos", "wfpc2")
TYPES = ("bpixtab", "darkfile", "pfltfile", "biasfile", "crrejtab")


def populate(store, contexts: int, files: int, events: int, real_pmap: str) -> None:
    batch: list[tuple[str, list]] = []
    count = 0

    def flush():
        with store.transaction() as tx:
            for stream, items in batch:
                tx.append(stream, items, meta={"actor": random.choice(("otto", "sam", "ada"))})
        batch.clear()

    def add(stream, items):
        nonlocal count
        batch.append((stream, items))
        count += len(items)
        if len(batch) >= 2000:
            flush()

    deliveries = files // 100
    for d in range(deliveries):
        delivery = f"hst_{d + 1:05d}"
        names = []
        cataloged = []
        for i in range(100):
            n = d * 100 + i
            if n < contexts:
                name, kind, inst, fk = f"hst_{n + 1:04d}.pmap", "mapping", "", ""
            else:
                inst, fk = INSTRUMENTS[n % 6], TYPES[n % 5]
                name, kind = f"hst_{inst}_{fk}_{n:07d}.fits", "reference"
            names.append(name)
            cataloged.append(ev.FileCataloged(name=name, delivery=delivery, observatory="hst",
                                              sha1=f"{n:040x}", size=2880, kind=kind,
                                              instrument=inst, filekind=fk,
                                              submission_id=f"s{d}"))
        add(ev.submission_stream(f"s{d}"), [ev.SubmissionStarted(
            submission_id=f"s{d}", observatory="hst", deliverer="sam", instrument="acs",
            description=f"delivery {d}", files=tuple(names[:3]))])
        add(ev.delivery_stream(delivery), [ev.DeliveryCreated(
            delivery=delivery, observatory="hst", submission_id=f"s{d}", files=tuple(names)),
            *cataloged, ev.DeliveryArchived(delivery=delivery)])
        for name in names:
            add(ev.file_stream(name), [ev.FileReleased(name=name, delivery=delivery)])
    previous = None
    for c in range(contexts):
        context = f"hst_{c + 1:04d}.pmap" if c < contexts - 1 else real_pmap
        add(ev.context_stream("hst"), [ev.ContextSet(
            observatory="hst", kind="latest" if c % 3 else "edit", context=context,
            previous=previous, description=f"context {c}")])
        previous = context
    for kind in ("latest", "edit"):  # the real context ends the history on both pointers
        add(ev.context_stream("hst"), [ev.ContextSet(
            observatory="hst", kind=kind, context=real_pmap, description="back to the real one")])
    s = 0
    while count < events:
        add(ev.submission_stream(f"p{s // 50}"), [ev.SubmissionProgress(
            submission_id=f"p{s // 50}", message=f"step {s}")])
        s += 1
    flush()


def timed(client, urls, requests: int) -> tuple[float, float, int]:
    times = []
    status = 200
    for i in range(requests):
        url = urls[i % len(urls)]
        start = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            status = response.status_code
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))], status


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--contexts", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the generated root")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-web-"))
    try:
        run(args, work)
    finally:
        if args.keep:
            print(f"root kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(args, work: Path) -> None:
    settings = load_settings(work / "root", {"observatory": "hst"}, environ={})
    init_root(settings)
    t0 = time.perf_counter()
    with SQLiteEventStore(settings.db_path) as store:
        mappings, references, pmap = write_synthetic_context(work / "synthetic", 20)
        import_cache(settings, store, mappings, references, pmap, ("latest", "edit"))
        populate(store, args.contexts, args.files, args.events, pmap)
        t1 = time.perf_counter()
        rebuild(store)
        t2 = time.perf_counter()
        head = store.head()
    # the event indexes the pages rely on come with the store (migration m003)
    print(f"log: {head} events appended in {t1 - t0:.1f} s; projections rebuilt in "
          f"{t2 - t1:.1f} s")
    app = create_app(settings, config={"TESTING": True})
    client = app.test_client()
    rnd = random.Random(1)
    before = [f"/events?before={rnd.randint(1000, head)}" for _ in range(10)]
    pages = {
        "home": ["/"],
        "history": ["/history"],
        "history (older page)": [f"/history?before={head // 2}"],
        "all contexts": ["/contexts"],
        "context display": [f"/contexts/{pmap}"],
        "diff": [f"/diff/{pmap}/{pmap}"],
        "browse reference": [f"/browse/hst_acs_bpixtab_{n:07d}.fits" for n in
                             range(args.contexts + 30 - args.contexts % 30,
                                    args.contexts + 330, 30)],
        "browse pmap": ["/browse/hst_0042.pmap"],
        "catalog": ["/catalog"],
        "catalog search": ["/catalog?instrument=acs&type=bpixtab&state=archived"],
        "activity": ["/activity"],
        "events": ["/events"],
        "events (keyset deep)": before,
        "events type=ContextSet": ["/events?type=ContextSet"],
        "events actor=ada": ["/events?actor=ada"],
        "events stream": ["/events?stream=context:hst"],
        "event": [f"/events/{rnd.randint(1, head)}" for _ in range(10)],
        "bestrefs explore": ["/bestrefs/explore?instrument=acs"],
        "plots": ["/plots"],
        "history.json": ["/history.json"],
        "events.json": ["/events.json"],
        "catalog.json": ["/catalog.json"],
    }
    print(f"{'page':28} {'p50 ms':>8} {'p95 ms':>8}  status")
    for name, urls in pages.items():
        client.get(urls[0])  # warm caches (rules, SVGs) as a running server would be
        p50, p95, status = timed(client, urls, args.requests)
        flag = "" if p95 <= 200 else "  > 200 ms"
        print(f"{name:28} {p50:8.1f} {p95:8.1f}  {status}{flag}")
    # "as of event N", cold: every request a position not asked before (nothing cached)
    used: set[int] = set()

    def fresh_position(low: int = 1) -> int:
        while True:
            n = rnd.randint(low, head)
            if n not in used:
                used.add(n)
                return n
    middle = "hst_cos_bpixtab_0050000.fits"
    asof = {
        "as of N (first page)": lambda: f"/asof/{fresh_position()}",
        "as of N (keyset page)": lambda: f"/asof/{fresh_position(head // 4)}?after={middle}",
        "as of N state=delivered": lambda: f"/asof/{fresh_position()}?state=delivered",
        "as of N.json": lambda: f"/asof/{fresh_position()}.json",
    }
    for name, make_url in asof.items():
        p50, p95, status = timed(client, [make_url() for _ in range(args.requests)],
                                 args.requests)
        flag = "" if p95 <= 200 else "  > 200 ms"
        print(f"{name:28} {p50:8.1f} {p95:8.1f}  {status}{flag}")
    context_display(Path(__file__).resolve().parents[2] / "shared" / "corpus", work,
                    args.requests)
    start = time.perf_counter()
    response = client.get(f"/asof/{head // 2}?counts=1")
    print(f"as of {head // 2} with counts by state (every file's state): "
          f"{(time.perf_counter() - start) * 1000:.0f} ms, status {response.status_code}")

def context_display(corpus: Path, work: Path, requests: int) -> None:
    """Issue 17/18: the rules display of the real HST context (``hst_0002.pmap`` of the
    corpus, 116 mappings): the outline page cold (first request, nothing cached) and warm
    (p50/p95), then every rmap's rules fragment as a reader opening each section."""
    hst = corpus / "contexts" / "hst"
    if not (hst / "mappings" / "hst_0002.pmap").is_file():
        print(f"context display (corpus): skipped, no corpus at {corpus}")
        return
    settings = load_settings(work / "corpus-root", {"observatory": "hst"}, environ={})
    init_root(settings)
    with SQLiteEventStore(settings.db_path) as store:
        import_cache(settings, store, hst / "mappings", hst / "references", "hst_0002.pmap",
                     set_pointers=("latest", "edit"))
        rebuild(store)
    app = create_app(settings, config={"TESTING": True})
    client = app.test_client()
    url = "/contexts/hst_0002.pmap"
    start = time.perf_counter()
    first = client.get(url)
    cold = (time.perf_counter() - start) * 1000
    p50, p95, status = timed(client, [url], requests)
    size = len(first.data)
    flag = "" if p95 <= 200 else "  > 200 ms"
    print(f"{'context display hst_0002':28} {p50:8.1f} {p95:8.1f}  {status}{flag}  "
          f"(cold {cold:.0f} ms, {size / 1024:.0f} KB, {first.data.count(b'<details')} "
          f"collapsed sections)")
    # the fragments the page's sections load (the rmaps hst_0002 names)
    fragments = sorted(set(re.findall(r'data-src="([^"]+/rules)"', first.data.decode())))
    start = time.perf_counter()
    for fragment in fragments:  # cold: each rmap parsed on first opening
        client.get(fragment)
    cold_each = (time.perf_counter() - start) * 1000 / max(1, len(fragments))
    p50, p95, status = timed(client, fragments, max(requests, len(fragments)))
    flag = "" if p95 <= 200 else "  > 200 ms"
    print(f"{'rmap rules fragment':28} {p50:8.1f} {p95:8.1f}  {status}{flag}  "
          f"(cold mean {cold_each:.0f} ms over {len(fragments)} rmaps)")


if __name__ == "__main__":
    if "--context-only" in sys.argv:  # only the corpus context display (seconds, not hours)
        sys.argv.remove("--context-only")
        corpus_root = Path(__file__).resolve().parents[2] / "shared" / "corpus"
        with tempfile.TemporaryDirectory(prefix="bench-web-ctx-") as tmp:
            context_display(corpus_root, Path(tmp), 30)
    else:
        main()
