"""A synthetic HST context whose every reference exists, and servers for the RPC tests.

The corpus contexts name 14,576 references of which only 10 exist, so a client syncing all
of a corpus context's references must fail on the rest; the probe and the sync benchmark
need a context that is complete. `write_synthetic_context` writes one: ``hst_<serial>.pmap``
-> ``hst_acs_<serial>.imap`` -> ``hst_acs_bpixtab_<serial>.rmap``, whose rules select each of
``n`` small FITS references by (DETECTOR, APERTURE) after one useafter date; each mapping
carries its correct sha1sum (`crds_events.rules.checksum.with_checksum`).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

from crds_events.config import Settings, init_root, load_settings
from crds_events.contexts.importcache import import_cache
from crds_events.rules.checksum import with_checksum
from crds_events.store.eventlog import SQLiteEventStore

__all__ = ["fits_bytes", "write_synthetic_context", "synthetic_reference_name", "aperture",
           "make_root", "running_server"]

SYNTHETIC_SERIAL = 9000
USEAFTER = "2000-01-01 00:00:00"


def fits_bytes(cards: dict[str, object]) -> bytes:
    """A minimal valid FITS file (a primary header, no data) holding ``cards``."""
    lines = ["SIMPLE  =                    T", "BITPIX  =                    8",
             "NAXIS   =                    0"]
    for key, value in cards.items():
        text = f"'{value}'" if isinstance(value, str) else str(value)
        lines.append(f"{key:<8}= {text:>20}")
    lines.append("END")
    header = "".join(line.ljust(80) for line in lines)
    header += " " * (-len(header) % 2880)
    return header.encode("ascii")


def synthetic_reference_name(i: int) -> str:
    return f"hst_acs_bpixtab_{10000 + i}.fits"


def aperture(i: int) -> str:
    return f"SYN{i:05d}"


def write_synthetic_context(directory: Path, n: int, serial: int = SYNTHETIC_SERIAL
                            ) -> tuple[Path, Path, str]:
    """Write the context (``directory/mappings``) and its ``n`` references
    (``directory/references``); return both directories and the pmap name."""
    mappings = directory / "mappings"
    references = directory / "references"
    mappings.mkdir(parents=True, exist_ok=True)
    references.mkdir(parents=True, exist_ok=True)
    pmap, imap, rmap = (f"hst_{serial:04d}.pmap", f"hst_acs_{serial:04d}.imap",
                        f"hst_acs_bpixtab_{serial:04d}.rmap")
    selections = []
    for i in range(n):
        name = synthetic_reference_name(i)
        (references / name).write_bytes(fits_bytes({
            "INSTRUME": "ACS", "DETECTOR": "WFC", "APERTURE": aperture(i), "FILETYPE": "BAD PIXELS",
            "USEAFTER": "Jan 01 2000 00:00:00", "REFSERIAL": i}))
        selections.append(f"    ('WFC', '{aperture(i)}') : UseAfter({{\n"
                          f"        '{USEAFTER}' : '{name}',\n    }}),\n")
    rmap_text = (
        "header = {\n"
        "    'derived_from' : 'synthetic context for crds-events RPC tests',\n"
        "    'filekind' : 'BPIXTAB',\n    'instrument' : 'ACS',\n"
        "    'mapping' : 'REFERENCE',\n"
        f"    'name' : '{rmap}',\n    'observatory' : 'HST',\n"
        "    'parkey' : (('DETECTOR', 'APERTURE'), ('DATE-OBS', 'TIME-OBS')),\n"
        "    'reffile_format' : 'TABLE',\n    'reffile_required' : 'YES',\n"
        "    'reffile_switch' : 'NONE',\n    'sha1sum' : '',\n}\n\n"
        "selector = Match({\n" + "".join(selections) + "})\n"
    )
    imap_text = (
        "header = {\n    'derived_from' : 'synthetic',\n    'instrument' : 'ACS',\n"
        f"    'mapping' : 'INSTRUMENT',\n    'name' : '{imap}',\n    'observatory' : 'HST',\n"
        "    'parkey' : ('REFTYPE',),\n    'sha1sum' : '',\n}\n\n"
        f"selector = {{\n    'bpixtab' : '{rmap}',\n}}\n"
    )
    pmap_text = (
        "header = {\n    'derived_from' : 'synthetic',\n    'mapping' : 'PIPELINE',\n"
        f"    'name' : '{pmap}',\n    'observatory' : 'HST',\n    'parkey' : ('INSTRUME',),\n"
        "    'sha1sum' : '',\n}\n\n"
        f"selector = {{\n    'ACS' : '{imap}',\n}}\n"
    )
    for name, text in ((rmap, rmap_text), (imap, imap_text), (pmap, pmap_text)):
        (mappings / name).write_text(with_checksum(text, name))
    return mappings, references, pmap


def sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def make_root(root: Path, corpus: Path | None, synthetic: int = 20,
              work: Path | None = None) -> Settings:
    """A server root with the corpus ``hst_0001.pmap`` imported (latest first), then a
    complete synthetic context of ``synthetic`` references made latest and edit."""
    settings = load_settings(root, {"observatory": "hst"}, environ={})
    init_root(settings)
    with SQLiteEventStore(settings.db_path) as store:
        if corpus is not None:
            hst = corpus / "contexts" / "hst"
            import_cache(settings, store, hst / "mappings", hst / "references", "hst_0001.pmap",
                         set_pointers=("latest", "edit"))
        if synthetic:
            mappings, references, pmap = write_synthetic_context(
                (work or root.parent) / "synthetic", synthetic)
            import_cache(settings, store, mappings, references, pmap,
                         set_pointers=("latest", "edit"))
    return settings


@contextlib.contextmanager
def running_server(settings: Settings, threads: int = 8) -> Iterator[str]:
    """The real server (handlers + waitress) on a free 127.0.0.1 port; yields its URL."""
    from crds_events.server import wsgi
    from crds_events.server.core import Server

    server = Server(settings, host="127.0.0.1", port=0)
    web = wsgi.register(server, threads=threads)
    server.runner.run_until_idle()  # projections current before the first request
    server.start()
    try:
        yield web.url
    finally:
        server.stop()
