"""Small real reference files for generated rmap cases: FITS (astropy) with the arrays the
type's certify constraints ask for, or ASDF for the WCS-like types.

Each header carries the values of its rmap case, so certify (with the context) passes and
best references select it. Writing is fast (cached templates and extensions) and
deterministic: the same case and seed give the same bytes.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np

from crds_events.demo.vocabulary import FITS_KEYWORDS, RmapCase

__all__ = ["write_reference"]


def _header_values(case: RmapCase) -> dict[str, str]:
    """The reference's matching keywords: the first alternative of ``A|B``; N/A stays N/A."""
    values = {}
    for parameter, value in zip(case.parameters, case.values, strict=True):
        values[parameter] = value.split("|")[0]
    return values


def write_reference(case: RmapCase, path: Path, *, seed: int = 0,
                    description: str | None = None) -> Path:
    """Write the reference `case` names as a small real FITS or ASDF file at `path`.

    Distinct `seed` values give distinct bytes (the demo submits a new one this way)."""
    rng = np.random.default_rng(seed)
    useafter = case.useafter.replace(" ", "T")
    meta = {
        "META.TELESCOPE": "JWST", "META.INSTRUMENT.NAME": case.instrument,
        "META.REFTYPE": case.filekind.upper(), "META.USEAFTER": useafter,
        "META.PEDIGREE": "GROUND", "META.AUTHOR": "crds-events generate",
        "META.DESCRIPTION": description or f"{case.instrument} {case.filekind} {case.reference}",
        **_header_values(case),
    }
    meta["META.DESCRIPTION"] += f" (seed {seed})" if seed else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    if case.fmt == "asdf":
        _write_asdf(path, meta, rng)
    else:
        _write_fits(path, meta, case, rng)
    return path


def _write_asdf(path: Path, meta: dict[str, str], rng) -> None:
    """ASDF text from a cached template (asdf's writer costs ~50 ms a file): the values are
    quoted placeholders in the template, and the small array is stored inline (no binary
    blocks whose offsets a substitution could shift)."""
    template = _asdf_template(tuple(meta))
    values = list(meta.values()) + [repr(float(x)) for x in rng.random(4).astype("float32")]
    text = template
    for number, value in enumerate(values):
        text = text.replace(f"'@@{number}@@'", "'" + value.replace("'", "''") + "'" if
                            number < len(meta) else value)
    path.write_text(text, encoding="utf-8")


@functools.lru_cache(maxsize=256)
def _asdf_template(keys: tuple[str, ...]) -> str:
    import asdf  # ~0.2 s to import, and only needed when ASDF references are written

    tree: dict = {}
    for number, key in enumerate(keys):
        node = tree
        parts = key.lower().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = f"@@{number}@@"
    tree["coefficients"] = [f"@@{len(keys) + i}@@" for i in range(4)]
    buffer = io.BytesIO()
    asdf.AsdfFile(tree).write_to(buffer)
    return buffer.getvalue().decode("utf-8")


_FITS_META = {"META.TELESCOPE": "TELESCOP", "META.INSTRUMENT.NAME": "INSTRUME",
              "META.REFTYPE": "REFTYPE", "META.USEAFTER": "USEAFTER",
              "META.PEDIGREE": "PEDIGREE", "META.AUTHOR": "AUTHOR",
              "META.DESCRIPTION": "DESCRIP"}


def _write_fits(path: Path, meta: dict[str, str], case: RmapCase, rng) -> None:
    """Primary header from cards + a cached extension: ~50x faster than HDUList.writeto."""
    from astropy.io import fits  # ~0.4 s to import: only when references are written

    cards = [fits.Card("SIMPLE", True, "conforms to FITS standard"), fits.Card("BITPIX", 8),
             fits.Card("NAXIS", 0), fits.Card("EXTEND", True)]
    for key, value in meta.items():
        keyword = _FITS_META.get(key) or FITS_KEYWORDS.get(key)
        if keyword:
            cards.append(fits.Card(keyword, value))
    text = "".join(card.image for card in cards) + "END".ljust(80)
    text += " " * (-len(text) % 2880)
    shape = "miri" if case.instrument == "MIRI" else ""
    path.write_bytes(text.encode("ascii") + _extension_bytes(case.layout, case.filekind, shape))


@functools.lru_cache(maxsize=256)
def _extension_bytes(layout: str, filekind: str, variant: str) -> bytes:
    """The bytes of the data extension a reference of `layout` carries (one per type)."""
    from astropy.io import fits  # heavy: see _write_fits

    rng = np.random.default_rng(len(filekind) * 31 + len(layout))
    if layout == "cube":
        shape = (1, 2, 4, 4) if variant == "miri" else (2, 4, 4)
        hdu = fits.ImageHDU(rng.random(shape, dtype=np.float32), name="SCI")
    elif layout == "kernel":
        hdu = fits.ImageHDU(rng.random((3, 3), dtype=np.float32), name="SCI")
    elif layout == "dq":
        hdu = fits.ImageHDU(rng.integers(0, 4, (4, 4), dtype=np.int32), name="DQ")
    elif layout == "coeffs":
        hdu = fits.ImageHDU(rng.random((3, 4, 4), dtype=np.float32), name="COEFFS")
    elif layout == "table":
        columns = [fits.Column("NAME", "8A", array=np.array(["A", "B", "C"])),
                   fits.Column("VALUE", "E", array=rng.random(3, dtype=np.float32))]
        name = "PHOTOM" if filekind == "photom" else filekind.upper()
        hdu = fits.BinTableHDU.from_columns(columns, name=name)
    else:
        hdu = fits.ImageHDU(rng.random((4, 4), dtype=np.float32), name="SCI")
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buffer)
    return buffer.getvalue()[2880:]  # the minimal primary header is one block

