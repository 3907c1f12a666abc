"""A small JWST context and astropy-made references for submission tests and the benchmark.

`write_context(directory, instruments)` writes ``jwst_0001.pmap`` with one imap per
instrument and one ``flat`` rmap each (Match on DETECTOR + FILTER, UseAfter), in canonical
form with correct sha1sums. `make_flat` writes a FITS flat that certifies cleanly against
it (or, with ``bad=True``, one whose SCI array is 3-D where a flat must be 2-D).
`seed_root` imports the context into a server root (file store + catalog + latest/edit).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from astropy.io import fits

from crds_events.rules.canonical import rewrite_text
from crds_events.rules.document import load_mapping
from crds_events.rules.parse import parse_mapping

DETECTORS = {"nircam": "NRCA1", "miri": "MIRIMAGE", "niriss": "NIS", "nirspec": "NRS1",
             "fgs": "GUIDER1"}
FILTERS = ["F070W", "F090W", "F115W", "F150W", "F200W", "F277W", "F356W", "F444W"]
DATE = "('META.OBSERVATION.DATE', 'META.OBSERVATION.TIME')"


def _texts(instruments: list[str]) -> dict[str, str]:
    entries = ", ".join(f"'{i.upper()}' : 'jwst_{i}_0001.imap'" for i in instruments)
    texts = {"jwst_0001.pmap": f"""
        header = {{
            'mapping' : 'PIPELINE', 'name' : 'jwst_0001.pmap', 'observatory' : 'JWST',
            'parkey' : ('META.INSTRUMENT.NAME',), 'derived_from' : 'submission tests',
            'sha1sum' : '',
        }}
        selector = {{{entries}}}
    """}
    for instrument in instruments:
        upper = instrument.upper()
        texts[f"jwst_{instrument}_0001.imap"] = f"""
            header = {{
                'mapping' : 'INSTRUMENT', 'name' : 'jwst_{instrument}_0001.imap',
                'observatory' : 'JWST', 'instrument' : '{upper}', 'parkey' : ('REFTYPE',),
                'derived_from' : 'submission tests', 'sha1sum' : '',
            }}
            selector = {{'flat' : 'jwst_{instrument}_flat_0001.rmap'}}
        """
        texts[f"jwst_{instrument}_flat_0001.rmap"] = f"""
            header = {{
                'mapping' : 'REFERENCE', 'name' : 'jwst_{instrument}_flat_0001.rmap',
                'observatory' : 'JWST', 'instrument' : '{upper}', 'filekind' : 'FLAT',
                'parkey' : (('META.INSTRUMENT.DETECTOR', 'META.INSTRUMENT.FILTER'), {DATE}),
                'derived_from' : 'submission tests', 'sha1sum' : '',
            }}
            selector = Match({{
                ('{DETECTORS[instrument]}', 'F070W') : UseAfter({{
                    '2022-01-01 00:00:00' : 'jwst_{instrument}_flat_0001.fits'}}),
            }})
        """
    return texts


def write_context(directory: Path, instruments: list[str] | None = None) -> Path:
    """Write the context into ``directory``; returns the pmap's path."""
    instruments = instruments or ["nircam", "miri"]
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in _texts(instruments).items():
        parsed = parse_mapping(textwrap.dedent(text), name)
        (directory / name).write_text(rewrite_text(parsed), encoding="utf-8")
        load_mapping(directory / name)  # the sha1sum verifies
    return directory / "jwst_0001.pmap"


def make_flat(path: Path, instrument: str = "nircam", filter_: str = "F200W", *,
              useafter: str = "2024-01-01T00:00:00", seed: int = 0, bad: bool = False,
              shape: tuple[int, int] = (8, 8)) -> Path:
    """A JWST flat; distinct ``seed`` values give distinct bytes (and sha1s)."""
    primary = fits.PrimaryHDU()
    for key, value in {
        "TELESCOP": "JWST", "INSTRUME": instrument.upper(), "REFTYPE": "FLAT",
        "DETECTOR": DETECTORS[instrument], "FILTER": filter_, "USEAFTER": useafter,
        "PEDIGREE": "GROUND", "AUTHOR": "submission tests",
        "DESCRIP": f"flat {instrument} {filter_} {seed}",
    }.items():
        primary.header[key] = value
    rng = np.random.default_rng(seed)
    data = rng.random((2, *shape) if bad else shape, dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList([primary, fits.ImageHDU(data, name="SCI")]).writeto(path, overwrite=True)
    return path


def seed_root(settings, source: Path, instruments: list[str] | None = None) -> str:
    """Import the test context into the root ``settings`` describes (latest + edit)."""
    from crds_events.contexts.importcache import import_cache
    from crds_events.store import SQLiteEventStore

    pmap = write_context(source, instruments)
    store = SQLiteEventStore(settings.db_path)
    try:
        import_cache(settings, store, source, None, pmap.name, ("latest", "edit"))
    finally:
        store.close()
    return pmap.name
