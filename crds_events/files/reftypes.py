"""Which instrument and reference type a reference file is, from its name or its header.

HST names come in three styles, tried in order (as CRDS does):

- CRDS style ``hst_<instrument>_<filekind>[_<serial>].<ext>``;
- CDBS style ``<rootname>_<suffix>.<ext>`` where the rootname's 9th character names the
  instrument (``s7g1700gl_dead.fits`` -> COS ``deadtab``) and SYNPHOT names end in
  ``_syn``/``_th``/``_tmc``/``_tmg``/``_tmt``; GEIS ``.rNh`` extensions give the suffix;
- the header: ``INSTRUME`` and ``FILETYPE`` (SYNPHOT: ``DBTABLE``).

JWST and Roman references are named ``<obs>_<instrument>_<filekind>_<serial>.<ext>`` or
carry ``INSTRUME``/``META.INSTRUMENT.NAME`` and ``REFTYPE``/``META.REFTYPE``.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from crds_events.files.errors import ReferenceFileError
from crds_events.files.headers import read_header

#: The 9th character of a CDBS rootname names the instrument.
HST_ID_CHARS = {"j": "acs", "o": "stis", "n": "nicmos", "u": "wfpc2", "i": "wfc3", "l": "cos",
                "m": "synphot"}
INSTRUMENT_ID_CHAR = {instr: char for char, instr in HST_ID_CHARS.items()}
_GEIS_SUFFIX = {"r0": "msk", "r1": "a2d", "r2": "bas", "r3": "drk", "r4": "flt", "r5": "shd",
                "r6": "flt", "r7": "w4t"}
_SYNPHOT_SUFFIXES = ("syn", "th", "tmc", "tmg", "tmt")


@dataclass(frozen=True)
class ReferenceType:
    """A reference's observatory, instrument and type (lower case)."""

    observatory: str
    instrument: str
    filekind: str
    suffix: str


@functools.cache
def hst_types() -> dict[str, dict[str, dict[str, str]]]:
    """instrument -> filekind -> {suffix, filetype, tpn, ld_tpn} for HST."""
    text = resources.files(__package__).joinpath("hst_reftypes.yaml").read_text()
    return yaml.safe_load(text)


def hst_filekind_for_suffix(instrument: str, suffix: str) -> str:
    """The filekind of an HST `instrument` reference whose name ends ``_<suffix>``."""
    for filekind, info in hst_types().get(instrument.lower(), {}).items():
        if info["suffix"] == suffix.lower():
            return filekind
    raise KeyError(f"no {instrument.upper()} reference type has suffix {suffix!r}")


def hst_suffix(instrument: str, filekind: str) -> str:
    """The CDBS name suffix of HST (`instrument`, `filekind`), e.g. (cos, deadtab) -> dead."""
    try:
        return hst_types()[instrument.lower()][filekind.lower()]["suffix"]
    except KeyError:
        raise KeyError(f"unknown HST reference type {instrument}/{filekind}") from None


def reference_type(path: str | os.PathLike, header: dict[str, Any] | None = None,
                   observatory: str | None = None) -> ReferenceType:
    """Work out the ReferenceType of `path` from its name, else from `header` (read if None).

    Raises ReferenceFileError when neither says.
    """
    path = os.fspath(path)
    name = os.path.basename(path).lower()
    parts = os.path.splitext(name)[0].split("_")
    obs = (observatory or (parts[0] if parts[0] in ("hst", "jwst", "roman") else "")).lower()
    if parts[0] in ("hst", "jwst", "roman") and len(parts) >= 3:
        instrument, filekind = parts[1], parts[2]
        if parts[0] == "hst":
            return ReferenceType("hst", instrument, filekind, _safe_suffix(instrument, filekind))
        return ReferenceType(parts[0], instrument, filekind, filekind)
    if obs in ("", "hst"):
        found = _hst_from_cdbs_name(name)
        if found:
            return found
    if header is None:
        header = read_header(path)
    return _type_from_header(path, header, obs)


def _safe_suffix(instrument: str, filekind: str) -> str:
    try:
        return hst_suffix(instrument, filekind)
    except KeyError:
        return filekind


def _hst_from_cdbs_name(name: str) -> ReferenceType | None:
    root, ext = os.path.splitext(name)
    parts = re.split(r"[_.]", root)
    if parts[-1] in _SYNPHOT_SUFFIXES and ext == ".fits":
        suffix = parts[-1]
        return ReferenceType("hst", "synphot", hst_filekind_for_suffix("synphot", suffix), suffix)
    instrument = HST_ID_CHARS.get(parts[0][-1:]) if len(parts[0]) == 9 else None
    if instrument is None:
        return None
    if ext == ".fits" and len(parts) >= 2:
        suffix = parts[1]
    elif re.fullmatch(r"\.r\d[hd]", ext):
        suffix = _GEIS_SUFFIX.get(ext[1:3], "")
    else:
        return None
    try:
        return ReferenceType("hst", instrument, hst_filekind_for_suffix(instrument, suffix), suffix)
    except KeyError:
        return None


def _type_from_header(path: str, header: dict[str, Any], obs: str) -> ReferenceType:
    def get(*keys: str) -> str:
        for key in keys:
            value = str(header.get(key, "UNDEFINED")).strip()
            if value not in ("", "UNDEFINED"):
                return value
        return ""

    telescope = (obs or get("TELESCOP", "TELESCOPE", "META.TELESCOPE", "ROMAN.META.TELESCOPE")
                 or "hst").lower()
    instrument = get("INSTRUME", "META.INSTRUMENT.NAME", "ROMAN.META.INSTRUMENT.NAME").lower()
    if telescope == "hst":
        dbtable = get("DBTABLE")
        if dbtable and dbtable.upper() != "IMPHTTAB":
            instrument = "synphot"
        filetype = get("FILETYPE", "DBTABLE", "CDBSFILE").upper()
        if not instrument or not filetype:
            raise ReferenceFileError(
                path, "cannot tell the reference type: HST references must define INSTRUME and "
                "FILETYPE (SYNPHOT: DBTABLE)", "INSTRUME" if not instrument else "FILETYPE")
        for filekind, info in hst_types().get(instrument, {}).items():
            if info["filetype"] == filetype or info["suffix"].upper() == filetype:
                return ReferenceType("hst", instrument, filekind, info["suffix"])
        raise ReferenceFileError(
            path, f"FILETYPE {filetype!r} is not a known {instrument.upper()} reference type",
            "FILETYPE")
    reftype = get("REFTYPE", "META.REFTYPE", "ROMAN.META.REFTYPE").lower()
    if not instrument or not reftype:
        raise ReferenceFileError(
            path, "cannot tell the reference type: define INSTRUME and REFTYPE "
            "(META.INSTRUMENT.NAME, META.REFTYPE)", "REFTYPE" if instrument else "INSTRUME")
    return ReferenceType(telescope, instrument, reftype, reftype)
