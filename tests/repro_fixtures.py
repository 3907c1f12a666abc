"""Catalogs and context changes for the reprocessing tests and bench/repro.py.

* `derive_context`: a copy of the corpus HST context with one rmap changed (one reference
  replaced in one rule), made into a new context by our own `new_context` (new imap and
  pmap, canonical layout, fresh checksums).
* `write_catalog`: a JSON-lines dataset catalog drawn from the corpus's real HST headers
  (the best-references oracle), each with its own random exposure date and time, so that
  parameter sets repeat (as in an archive) but dates do not.
"""

from __future__ import annotations

import datetime
import json
import random
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from crds_events.refactoring.newcontext import new_context
from crds_events.rules.checksum import with_checksum


def oracle_headers(corpus: Path, instrument: str | None = None) -> list[dict]:
    headers = []
    with open(corpus / "oracle" / "bestrefs_hst_0001.jsonl", encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if record["kind"] == "error":
                continue
            if instrument is None or record["instrument"] == instrument.upper():
                headers.append(record["header"])
    return headers


def copy_context(corpus: Path, target: Path) -> Path:
    """The corpus HST mappings copied into ``target`` (returned)."""
    target.mkdir(parents=True, exist_ok=True)
    for path in (corpus / "contexts" / "hst" / "mappings").iterdir():
        shutil.copy(path, target / path.name)
    return target


def derive_context(mappings: Path, rmap_name: str, *, occurrence: int = 0,
                   old_pmap: str = "hst_0001.pmap") -> tuple[str, str, str]:
    """Replace the ``occurrence``-th reference named in ``rmap_name`` (in ``mappings``) by a
    new name, as ``<rmap>_9001.rmap``, and make a new context from ``old_pmap`` with it.

    Returns ``(old pmap, new pmap, (replaced file, new file) as "a->b")``.
    """
    text = (mappings / rmap_name).read_text()
    head, body = text.split("selector", 1)
    files = re.findall(r"'([A-Za-z0-9_]+\.fits)'", body)
    occurrence %= len(files)  # -1: the last one
    replaced = files[occurrence]
    new_file = f"zz{occurrence:04d}_new.fits"
    count = 0

    def swap(match: re.Match) -> str:
        nonlocal count
        count += 1
        return f"'{new_file}'" if count == occurrence + 1 else match.group(0)

    body = re.sub(r"'([A-Za-z0-9_]+\.fits)'", swap, body)
    new_name = rmap_name.rsplit(".", 1)[0].rsplit("_0", 1)[0] + "_9001.rmap"
    head = re.sub(r"'name' : '[^']+'", f"'name' : '{new_name}'", head)
    (mappings / new_name).write_text(with_checksum(head + "selector" + body, new_name))
    result = new_context(mappings / old_pmap, [mappings / new_name], mappings_dir=mappings)
    return old_pmap, result.names[old_pmap], f"{replaced}->{new_file}"


def catalog_records(headers: list[dict], count: int, seed: int = 1,
                    prefix: str = "J") -> Iterator[dict]:
    rng = random.Random(seed)
    start = datetime.datetime(1992, 1, 1)
    span = 32 * 365 * 86400
    for i in range(count):
        header = dict(rng.choice(headers))
        when = start + datetime.timedelta(seconds=rng.randrange(span))
        header["DATE-OBS"] = when.strftime("%Y-%m-%d")
        header["TIME-OBS"] = when.strftime("%H:%M:%S")
        name = f"{prefix}{i:08d}"
        yield {"id": f"{name}:{name}", "header": header}


def write_catalog(path: Path, headers: list[dict], count: int, seed: int = 1) -> Path:
    with open(path, "w", encoding="utf-8") as out:
        for record in catalog_records(headers, count, seed):
            out.write(json.dumps(record))
            out.write("\n")
    return path
