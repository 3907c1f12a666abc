"""Roots with a few generations of a small JWST context, for the context and bad-file tests.

Generation 1 is `submission_fixtures.write_context` (nircam + miri, one flat rmap each) with
real FITS flats for its references. Generation N (N >= 2) changes NIRCAM only:
``jwst_000N.pmap`` -> ``jwst_nircam_000N.imap`` -> ``jwst_nircam_flat_000N.rmap`` ->
``jwst_nircam_flat_000N.fits``; MIRI stays at generation 1. Generations are cataloged as
archived history through `import_cache` (the domain API), or as delivered-but-not-archived
through the events a confirm records.
"""

from __future__ import annotations

import re
from pathlib import Path

from submission_fixtures import make_flat, write_context

from crds_events import events as ev
from crds_events.accounts import users
from crds_events.config import init_root, load_settings
from crds_events.contexts.importcache import import_cache
from crds_events.rules.canonical import rewrite_text
from crds_events.rules.document import load_mapping
from crds_events.rules.parse import parse_mapping
from crds_events.store.filestore import FileStore

FIRST = ["jwst_0001.pmap", "jwst_miri_0001.imap", "jwst_miri_flat_0001.rmap",
         "jwst_nircam_0001.imap", "jwst_nircam_flat_0001.rmap"]


def make_settings(tmp_path: Path, observatory: str = "jwst"):
    settings = load_settings(tmp_path / "root", {"observatory": observatory}, environ={})
    init_root(settings)
    return settings


def add_people(store) -> None:
    """ada (admin), otto (operator), sam (submitter), dora (operator, disabled)."""
    users.add_user(store, "ada", "ada@example.org", "admin")
    users.add_user(store, "otto", "otto@example.org", "operator")
    users.add_user(store, "sam", "sam@example.org", "submitter")
    users.add_user(store, "dora", "dora@example.org", "operator")
    users.disable_user(store, "dora", "left")


def _rename(text: str, old: str, new: str) -> str:
    return text.replace(f"'{old}'", f"'{new}'")


def write_generation(source: Path, references: Path, serial: int) -> list[str]:
    """Write generation ``serial`` into ``source`` (mappings) and ``references``; the
    names of its new files (mappings first)."""
    if serial == 1:
        write_context(source)
        names = list(FIRST)
        refs = ["jwst_nircam_flat_0001.fits", "jwst_miri_flat_0001.fits"]
    else:
        tag, base = f"{serial:04d}", "0001"
        texts = {
            f"jwst_{tag}.pmap": _rename(_rename(
                (source / f"jwst_{base}.pmap").read_text(), f"jwst_{base}.pmap",
                f"jwst_{tag}.pmap"), f"jwst_nircam_{base}.imap", f"jwst_nircam_{tag}.imap"),
            f"jwst_nircam_{tag}.imap": _rename(_rename(
                (source / f"jwst_nircam_{base}.imap").read_text(), f"jwst_nircam_{base}.imap",
                f"jwst_nircam_{tag}.imap"), f"jwst_nircam_flat_{base}.rmap",
                f"jwst_nircam_flat_{tag}.rmap"),
            f"jwst_nircam_flat_{tag}.rmap": _rename(_rename(
                (source / f"jwst_nircam_flat_{base}.rmap").read_text(),
                f"jwst_nircam_flat_{base}.rmap", f"jwst_nircam_flat_{tag}.rmap"),
                f"jwst_nircam_flat_{base}.fits", f"jwst_nircam_flat_{tag}.fits"),
        }
        for name, text in texts.items():
            (source / name).write_text(rewrite_text(parse_mapping(text, name)),
                                       encoding="utf-8")
            load_mapping(source / name)  # the sha1sum verifies
        names = list(texts)
        refs = [f"jwst_nircam_flat_{tag}.fits"]
    for index, ref in enumerate(refs):
        instrument = "miri" if "miri" in ref else "nircam"
        make_flat(references / ref, instrument, seed=serial * 10 + index)
    return names + refs


def seed_generations(settings, store, tmp_path: Path, archived: int = 2,
                     pointers: tuple[str, ...] = ("latest", "edit")) -> tuple[Path, Path]:
    """Generations 1..``archived`` imported as archived (pointers set to generation 1);
    returns the (mappings, references) source directories."""
    source, references = tmp_path / "source", tmp_path / "refs"
    source.mkdir(exist_ok=True)
    references.mkdir(exist_ok=True)
    for serial in range(1, archived + 1):
        write_generation(source, references, serial)
        import_cache(settings, store, source, references, f"jwst_{serial:04d}.pmap",
                     pointers if serial == 1 else ())
    return source, references


def catalog_unarchived(settings, store, source: Path, references: Path, serial: int) -> list[str]:
    """Write generation ``serial`` and catalog it as a confirm does (delivered, pending
    archive: no FileReleased)."""
    names = write_generation(source, references, serial)
    files = FileStore.from_settings(settings)
    with store.transaction() as tx:
        for name in names:
            kind = "mapping" if name.endswith((".pmap", ".imap", ".rmap")) else "reference"
            sha1, size = files.put((source if kind == "mapping" else references) / name, name)
            tx.record(ev.FileCataloged(name=name, delivery=f"pending:g{serial}",
                                       observatory=settings.observatory, sha1=sha1,
                                       size=size, kind=kind, instrument="nircam",
                                       filekind="flat"))
    return names


_NAMES = re.compile(r"'([A-Za-z0-9_.-]+\.(?:pmap|imap|rmap|fits|r\dh))'")


def _names_in(mappings_dir: Path) -> dict[str, set[str]]:
    names_in = {}
    for path in mappings_dir.iterdir():
        if path.suffix in (".pmap", ".imap", ".rmap"):
            text = path.read_text()
            selector = text[text.index("selector"):]  # the header names the mapping itself
            names_in[path.name] = set(_NAMES.findall(selector))
    return names_in


def brute_force_users(mappings_dir: Path, name: str) -> set[str]:
    """Every mapping in ``mappings_dir`` whose text names ``name``, directly or through
    other mappings: a regex over the texts (independent of crds_events.contexts.contents)."""
    names_in = _names_in(mappings_dir)
    found: set[str] = set()
    frontier = {name}
    while frontier:
        frontier = {m for m, named in names_in.items() if named & frontier} - found
        found |= frontier
    return found
