"""The made-up JWST vocabulary the generator draws from: instruments, their parameters and
values, reference types, and `RmapCase`, one reference of a generated rmap.

The first five instruments are JWST's own (NIRCam, MIRI, NIRISS, NIRSpec, FGS) and the
first twenty types real JWST reference types; `instruments_for` and `types_for` add
synthetic ones (``INSTR06``, ``type021``) beyond those, for benchmarks that scale up.
"""

from __future__ import annotations

import dataclasses

__all__ = [
    "DATE_KEYS",
    "EXP_TYPE",
    "FIRST_USEAFTER",
    "FITS_KEYWORDS",
    "INSTRUMENT_VOCABULARY",
    "OBSERVATORY",
    "REFERENCE_TYPES",
    "SUBARRAY",
    "RmapCase",
    "instruments_for",
    "types_for",
]

OBSERVATORY = "jwst"
DATE_KEYS = ("META.OBSERVATION.DATE", "META.OBSERVATION.TIME")
EXP_TYPE = "META.EXPOSURE.TYPE"
SUBARRAY = "META.SUBARRAY.NAME"
FIRST_USEAFTER = "2021-12-01 00:00:00"  # before every dataset: each case has an answer

# Data model path -> FITS keyword (what a FITS reference or dataset header carries).
FITS_KEYWORDS = {
    "META.INSTRUMENT.DETECTOR": "DETECTOR",
    "META.INSTRUMENT.FILTER": "FILTER",
    "META.INSTRUMENT.PUPIL": "PUPIL",
    "META.INSTRUMENT.GRATING": "GRATING",
    "META.INSTRUMENT.BAND": "BAND",
    "META.INSTRUMENT.CHANNEL": "CHANNEL",
    "META.EXPOSURE.READPATT": "READPATT",
    "META.EXPOSURE.TYPE": "EXP_TYPE",
    "META.SUBARRAY.NAME": "SUBARRAY",
}

# Each instrument's parameters and the values its exposures take (JWST's own names).
INSTRUMENT_VOCABULARY: dict[str, dict[str, list[str]]] = {
    "NIRCAM": {
        "META.INSTRUMENT.DETECTOR": ["NRCA1", "NRCA2", "NRCA3", "NRCA4", "NRCALONG",
                                     "NRCB1", "NRCB2", "NRCB3", "NRCB4", "NRCBLONG"],
        "META.INSTRUMENT.FILTER": ["F070W", "F090W", "F115W", "F150W", "F200W", "F277W",
                                   "F356W", "F444W"],
        "META.INSTRUMENT.PUPIL": ["CLEAR", "F162M", "GRISMR", "MASKRND"],
        "META.EXPOSURE.READPATT": ["RAPID", "BRIGHT2", "SHALLOW4", "MEDIUM8", "DEEP8"],
        SUBARRAY: ["FULL", "SUB64P", "SUB160", "SUB400P", "GENERIC"],
        EXP_TYPE: ["NRC_IMAGE", "NRC_WFSS", "NRC_CORON", "NRC_TSIMAGE"],
    },
    "MIRI": {
        "META.INSTRUMENT.DETECTOR": ["MIRIMAGE", "MIRIFULONG", "MIRIFUSHORT"],
        "META.INSTRUMENT.FILTER": ["F560W", "F770W", "F1000W", "F1130W", "F1280W", "F1500W",
                                   "F1800W", "F2100W", "F2550W"],
        "META.INSTRUMENT.BAND": ["SHORT", "MEDIUM", "LONG"],
        "META.INSTRUMENT.CHANNEL": ["12", "34"],
        "META.EXPOSURE.READPATT": ["FAST", "SLOW"],
        SUBARRAY: ["FULL", "BRIGHTSKY", "SUB256", "SUB128", "GENERIC"],
        EXP_TYPE: ["MIR_IMAGE", "MIR_MRS", "MIR_LRS-FIXEDSLIT", "MIR_CORONCAL"],
    },
    "NIRISS": {
        "META.INSTRUMENT.DETECTOR": ["NIS"],
        "META.INSTRUMENT.FILTER": ["CLEAR", "F090W", "F115W", "F140M", "F150W", "F158M",
                                   "F200W", "F277W", "F380M", "F430M", "F480M"],
        "META.INSTRUMENT.PUPIL": ["CLEARP", "F090W", "F115W", "F140M", "F150W", "F158M",
                                  "F200W", "GR700XD", "NRM"],
        "META.EXPOSURE.READPATT": ["NIS", "NISRAPID"],
        SUBARRAY: ["FULL", "SUBSTRIP96", "SUBSTRIP256", "SUB80", "GENERIC"],
        EXP_TYPE: ["NIS_IMAGE", "NIS_WFSS", "NIS_SOSS", "NIS_AMI"],
    },
    "NIRSPEC": {
        "META.INSTRUMENT.DETECTOR": ["NRS1", "NRS2"],
        "META.INSTRUMENT.FILTER": ["CLEAR", "F070LP", "F100LP", "F170LP", "F290LP"],
        "META.INSTRUMENT.GRATING": ["PRISM", "G140M", "G235M", "G395M", "G140H", "G235H",
                                    "G395H", "MIRROR"],
        "META.EXPOSURE.READPATT": ["NRS", "NRSRAPID", "NRSIRS2RAPID"],
        SUBARRAY: ["FULL", "SUBS200A1", "SUBS400A1", "SUB2048", "GENERIC"],
        EXP_TYPE: ["NRS_FIXEDSLIT", "NRS_IFU", "NRS_MSASPEC", "NRS_BRIGHTOBJ"],
    },
    "FGS": {
        "META.INSTRUMENT.DETECTOR": ["GUIDER1", "GUIDER2"],
        "META.EXPOSURE.READPATT": ["FGS", "FGSRAPID", "FGS60"],
        SUBARRAY: ["FULL", "SUB128CNTR", "SUB32CNTR", "SUB8CNTR", "GENERIC"],
        EXP_TYPE: ["FGS_IMAGE", "FGS_FOCUS", "FGS_INTFLAT", "FGS_DARK"],
    },
}

# (type, format, array layout): the twenty JWST types every instrument gets, then more.
REFERENCE_TYPES: list[tuple[str, str, str]] = [
    ("dark", "fits", "cube"), ("flat", "fits", "image"), ("distortion", "asdf", "tree"),
    ("gain", "fits", "image"), ("readnoise", "fits", "image"), ("specwcs", "asdf", "tree"),
    ("superbias", "fits", "image"), ("area", "fits", "image"),
    ("filteroffset", "asdf", "tree"), ("mask", "fits", "dq"),
    ("linearity", "fits", "coeffs"), ("saturation", "fits", "image"),
    ("wavelengthrange", "asdf", "tree"), ("ipc", "fits", "kernel"),
    ("photom", "fits", "table"), ("persat", "fits", "image"),
    ("trapdensity", "fits", "image"), ("trappars", "fits", "table"),
    ("drizpars", "fits", "table"), ("apcorr", "fits", "table"),
    ("bkg", "fits", "image"), ("wfssbkg", "fits", "image"), ("psfmask", "fits", "image"),
    ("pathloss", "fits", "table"), ("regions", "asdf", "tree"), ("camera", "asdf", "tree"),
    ("collimator", "asdf", "tree"), ("disperser", "asdf", "tree"), ("fore", "asdf", "tree"),
    ("fpa", "asdf", "tree"),
]


@dataclasses.dataclass(frozen=True)
class RmapCase:
    """One reference of a generated rmap: the Match values (as written) and its date."""

    instrument: str
    filekind: str
    parameters: tuple[str, ...]
    values: tuple[str, ...]  # may hold 'A|B' alternatives and 'N/A'
    useafter: str  # 'YYYY-MM-DD HH:MM:SS'
    reference: str
    fmt: str
    layout: str




def instruments_for(count: int) -> dict[str, dict[str, list[str]]]:
    """JWST's five instruments, then synthetic ones (``INSTR06``...) with made-up values."""
    chosen = dict(list(INSTRUMENT_VOCABULARY.items())[:count])
    for number in range(len(chosen) + 1, count + 1):
        name = f"INSTR{number:02d}"
        prefix = f"I{number:02d}"
        chosen[name] = {
            "META.INSTRUMENT.DETECTOR": [f"{prefix}DET{i}" for i in range(1, 5)],
            "META.INSTRUMENT.FILTER": [f"F{100 + 50 * i}W" for i in range(8)],
            "META.EXPOSURE.READPATT": ["FAST", "SLOW", "MEDIUM"],
            SUBARRAY: ["FULL", "SUB64", "SUB256", "GENERIC"],
            EXP_TYPE: [f"{prefix}_IMAGE", f"{prefix}_SPEC", f"{prefix}_DARK"],
        }
    return chosen


def types_for(count: int) -> list[tuple[str, str, str]]:
    chosen = REFERENCE_TYPES[:count]
    for number in range(len(chosen) + 1, count + 1):
        chosen.append((f"type{number:03d}", "fits", "image"))
    return chosen

