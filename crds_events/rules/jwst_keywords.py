"""JWST: FITS keywords -> data model paths, as CRDS translates dataset headers.

JWST rmaps match on data model paths (`META.INSTRUMENT.DETECTOR`); dataset headers may carry
the FITS keywords instead (`DETECTOR`) or a mix. CRDS asks the JWST data models which path
declares each bare keyword as its `fits_keyword`; this table holds those declarations for the
keywords CRDS rules match on (from the `stdatamodels` core schema), so no data model package
is needed. Keywords not in the table keep their own name.
"""

from __future__ import annotations

from collections.abc import Mapping

# Not derived from `crds_events.files.dataset_keys.JWST_META_TO_FITS` on purpose: the two
# agree on every keyword both hold, but that table makes reference-file synonyms (also
# INSTRUMENT, DESCRIP, GAINFACT, APERNAME, ...; renaming those here would change best
# references), and this one renames keywords rmaps match on that it lacks (LAMPMODE,
# FOCUSPOS, MSASTATE, NSAMPLES, PRIMARY_DITHER_TYPE).
FITS_TO_DATAMODEL: dict[str, str] = {
    "INSTRUME": "META.INSTRUMENT.NAME",
    "DETECTOR": "META.INSTRUMENT.DETECTOR",
    "FILTER": "META.INSTRUMENT.FILTER",
    "PUPIL": "META.INSTRUMENT.PUPIL",
    "GRATING": "META.INSTRUMENT.GRATING",
    "BAND": "META.INSTRUMENT.BAND",
    "CHANNEL": "META.INSTRUMENT.CHANNEL",
    "MODULE": "META.INSTRUMENT.MODULE",
    "CORONMSK": "META.INSTRUMENT.CORONAGRAPH",
    "FXD_SLIT": "META.INSTRUMENT.FIXED_SLIT",
    "LAMP": "META.INSTRUMENT.LAMP_STATE",
    "LAMPMODE": "META.INSTRUMENT.LAMP_MODE",
    "FOCUSPOS": "META.INSTRUMENT.FOCUS_POSITION",
    "MSASTATE": "META.INSTRUMENT.MSA_STATE",
    "EXP_TYPE": "META.EXPOSURE.TYPE",
    "READPATT": "META.EXPOSURE.READPATT",
    "NINTS": "META.EXPOSURE.NINTS",
    "NGROUPS": "META.EXPOSURE.NGROUPS",
    "NFRAMES": "META.EXPOSURE.NFRAMES",
    "GROUPGAP": "META.EXPOSURE.GROUPGAP",
    "NSAMPLES": "META.EXPOSURE.NSAMPLES",
    "PRIMARY_DITHER_TYPE": "META.DITHER.PRIMARY_TYPE",
    "SUBARRAY": "META.SUBARRAY.NAME",
    "SUBSTRT1": "META.SUBARRAY.XSTART",
    "SUBSTRT2": "META.SUBARRAY.YSTART",
    "SUBSIZE1": "META.SUBARRAY.XSIZE",
    "SUBSIZE2": "META.SUBARRAY.YSIZE",
    "FASTAXIS": "META.SUBARRAY.FASTAXIS",
    "SLOWAXIS": "META.SUBARRAY.SLOWAXIS",
    "DATE-OBS": "META.OBSERVATION.DATE",
    "TIME-OBS": "META.OBSERVATION.TIME",
    "TSOVISIT": "META.VISIT.TSOVISIT",
    "CAL_VER": "META.CALIBRATION_SOFTWARE_VERSION",
    "TELESCOP": "META.TELESCOPE",
}


def fits_to_datamodel(header: Mapping[str, str]) -> dict[str, str]:
    """Rename FITS keywords to data model paths; later keys win where two name one path."""
    renamed: dict[str, str] = {}
    for key, value in header.items():
        key = str(key)
        if not key.lower().startswith("meta."):
            key = FITS_TO_DATAMODEL.get(key.upper(), key)
        renamed[key.upper()] = str(value)
    return renamed
