"""Map a reference file's header onto the dataset keywords that rmaps match on.

A reference says when and where it applies in its own vocabulary; an rmap matches dataset
headers. Before a reference is inserted into an rmap (``refactor insert``) or checked
against one, its header is translated, as CRDS does (``locate.reference_keys_to_dataset_keys``):

- every observatory: ``USEAFTER`` (or ``META.USEAFTER``) becomes the rmap's date pair,
  ``DATE-OBS``/``TIME-OBS`` (and ``DATE_OBS``/``TIME_OBS``) for HST,
  ``META.OBSERVATION.DATE``/``TIME`` as well for JWST,
  ``ROMAN.META.EXPOSURE.START_TIME`` for Roman;
- JWST/Roman pattern keywords (``P_DETECT``, ``META.INSTRUMENT.P_DETECTOR``, ``P_EXP_TY``, ...)
  give the value of the dataset keyword they stand for, an or-pattern such as
  ``MIRIFUSHORT|MIRIFULONG|`` (normalised to ``MIRIFUSHORT|MIRIFULONG``);
- the rmap's ``reference_to_dataset`` header (passed by the caller) adds or overrides
  translations;
- JWST FITS keywords and datamodel paths are made synonyms (``DETECTOR`` <->
  ``META.INSTRUMENT.DETECTOR``) so either spelling reaches the rmap's parkeys.

A translated value only replaces a dataset keyword's value when it is defined and differs,
so a concrete value is never replaced by ``UNDEFINED``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from crds_events.files.dates import split_useafter
from crds_events.files.errors import ReferenceFileError

#: JWST pattern keywords -> the dataset keyword whose values they list (CRDS's table).
JWST_PATTERN_TRANSLATIONS: dict[str, str] = {
    "META.EXPOSURE.P_EXPTYPE": "META.EXPOSURE.TYPE",
    "P_EXP_TY": "META.EXPOSURE.TYPE",
    "META.INSTRUMENT.P_BAND": "META.INSTRUMENT.BAND",
    "P_BAND": "META.INSTRUMENT.BAND",
    "META.INSTRUMENT.P_DETECTOR": "META.INSTRUMENT.DETECTOR",
    "P_DETECT": "META.INSTRUMENT.DETECTOR",
    "META.INSTRUMENT.P_CHANNEL": "META.INSTRUMENT.CHANNEL",
    "P_CHANNE": "META.INSTRUMENT.CHANNEL",
    "META.INSTRUMENT.P_FILTER": "META.INSTRUMENT.FILTER",
    "P_FILTER": "META.INSTRUMENT.FILTER",
    "META.INSTRUMENT.P_PUPIL": "META.INSTRUMENT.PUPIL",
    "P_PUPIL": "META.INSTRUMENT.PUPIL",
    "META.INSTRUMENT.P_MODULE": "META.INSTRUMENT.MODULE",
    "P_MODULE": "META.INSTRUMENT.MODULE",
    "META.SUBARRAY.P_SUBARRAY": "META.SUBARRAY.NAME",
    "P_SUBARR": "META.SUBARRAY.NAME",
    "META.INSTRUMENT.P_GRATING": "META.INSTRUMENT.GRATING",
    "P_GRATIN": "META.INSTRUMENT.GRATING",
    "META.EXPOSURE.PREADPATT": "META.EXPOSURE.READPATT",
    "META.EXPOSURE.P_READPATT": "META.EXPOSURE.READPATT",
    "P_READPA": "META.EXPOSURE.READPATT",
    "META.INSTRUMENT.PCORONAGRAPH": "META.INSTRUMENT.CORONAGRAPH",
    "P_CORONM": "META.INSTRUMENT.CORONAGRAPH",
}

#: Roman pattern keywords, relative to the tree prefix (``ROMAN.META`` or ``META``).
ROMAN_PATTERN_TRANSLATIONS: dict[str, str] = {
    "EXPOSURE.P_EXPTYPE": "EXPOSURE.TYPE",
    "INSTRUMENT.P_DETECTOR": "INSTRUMENT.DETECTOR",
    "INSTRUMENT.P_OPTICAL_ELEMENT": "INSTRUMENT.OPTICAL_ELEMENT",
}

#: JWST datamodel path -> FITS keyword, for the keywords JWST rmaps and constraints use.
#: (CRDS reads these from the jwst datamodels schema; this table is what that gives for the
#: core keywords, so no datamodels package is needed.) Several synonyms share one path.
#: Kept apart from `crds_events.rules.jwst_keywords.FITS_TO_DATAMODEL` (the best-references
#: renaming) on purpose: they agree where both name a keyword, but each covers keywords the
#: other must not (see the comment there).
JWST_META_TO_FITS: dict[str, tuple[str, ...]] = {
    "META.INSTRUMENT.NAME": ("INSTRUME", "INSTRUMENT", "META.INSTRUMENT.TYPE"),
    "META.TELESCOPE": ("TELESCOP", "TELESCOPE"),
    "META.DESCRIPTION": ("DESCRIP", "DESCRIPTION"),
    "META.REFTYPE": ("REFTYPE",),
    "META.AUTHOR": ("AUTHOR",),
    "META.PEDIGREE": ("PEDIGREE",),
    "META.USEAFTER": ("USEAFTER",),
    "META.HISTORY": ("HISTORY",),
    "META.MODEL_TYPE": ("DATAMODL",),
    "META.FILENAME": ("FILENAME",),
    "META.CALIBRATION_SOFTWARE_VERSION": ("CAL_VER", "CALIBRATION_SOFTWARE_VERSION"),
    "META.OBSERVATION.DATE": ("DATE-OBS",),
    "META.OBSERVATION.TIME": ("TIME-OBS",),
    "META.INSTRUMENT.DETECTOR": ("DETECTOR",),
    "META.INSTRUMENT.FILTER": ("FILTER",),
    "META.INSTRUMENT.PUPIL": ("PUPIL",),
    "META.INSTRUMENT.GRATING": ("GRATING",),
    "META.INSTRUMENT.BAND": ("BAND",),
    "META.INSTRUMENT.CHANNEL": ("CHANNEL",),
    "META.INSTRUMENT.MODULE": ("MODULE",),
    "META.INSTRUMENT.CORONAGRAPH": ("CORONMSK",),
    "META.INSTRUMENT.LAMP_STATE": ("LAMP",),
    "META.INSTRUMENT.FIXED_SLIT": ("FXD_SLIT",),
    "META.EXPOSURE.TYPE": ("EXP_TYPE",),
    "META.EXPOSURE.READPATT": ("READPATT",),
    "META.EXPOSURE.NFRAMES": ("NFRAMES",),
    "META.EXPOSURE.NGROUPS": ("NGROUPS",),
    "META.EXPOSURE.NINTS": ("NINTS",),
    "META.EXPOSURE.GROUPGAP": ("GROUPGAP",),
    "META.EXPOSURE.GAIN_FACTOR": ("GAINFACT",),
    "META.SUBARRAY.NAME": ("SUBARRAY",),
    "META.SUBARRAY.XSTART": ("SUBSTRT1",),
    "META.SUBARRAY.YSTART": ("SUBSTRT2",),
    "META.SUBARRAY.XSIZE": ("SUBSIZE1",),
    "META.SUBARRAY.YSIZE": ("SUBSIZE2",),
    "META.SUBARRAY.FASTAXIS": ("FASTAXIS",),
    "META.SUBARRAY.SLOWAXIS": ("SLOWAXIS",),
    "META.VISIT.TSOVISIT": ("TSOVISIT",),
    "META.APERTURE.NAME": ("APERNAME",),
}

UNDEFINED = "UNDEFINED"


def jwst_synonym_pairs() -> list[tuple[str, str]]:
    """All (a, b) keyword pairs where b should copy a's value when b is undefined."""
    pairs = []
    for meta, others in JWST_META_TO_FITS.items():
        for other in others:
            pairs += [(meta, other), (other, meta)]
    return pairs


def cross_strap(header: Mapping[str, Any], pairs: Iterable[tuple[str, str]] | None = None) -> dict:
    """Copy of `header` where each keyword of a synonym pair is defined if the other is.

    Defaults to the JWST FITS <-> datamodel pairs. An existing value is never overwritten.
    """
    crossed = dict(header)
    for source, target in jwst_synonym_pairs() if pairs is None else pairs:
        value = crossed.get(source, UNDEFINED)
        if value != UNDEFINED and crossed.get(target, UNDEFINED) == UNDEFINED:
            crossed[target] = value
    return crossed


def normalize_pattern(value: Any) -> Any:
    """An or-pattern value with blanks and empty items dropped: ``'A | B |'`` -> ``'A|B'``."""
    if not isinstance(value, str) or "|" not in value:
        return value
    return "|".join(item.strip() for item in value.split("|") if item.strip())


def untranslated_pattern_keywords(
    header: Mapping[str, Any], observatory: str, reference_to_dataset: Mapping[str, str] | None = None
) -> list[str]:
    """Keywords that look like pattern keywords (``P_...``) but have no translation.

    CRDS warns about these: the pattern is ignored, which is usually a misspelling.
    """
    translations = _translations(observatory, header, reference_to_dataset)
    return sorted(
        key for key in header if key.split(".")[-1].startswith("P_") and key not in translations
    )


def reference_to_dataset(
    header: Mapping[str, Any],
    observatory: str,
    *,
    reference_to_dataset: Mapping[str, str] | None = None,
    filename: str | None = None,
) -> dict[str, Any]:
    """Translate a reference header (from ``read_header``) to dataset keywords.

    `observatory` is ``hst``, ``jwst`` or ``roman``; `reference_to_dataset` is the rmap
    header's field of that name (reference keyword -> dataset keyword), applied on top of
    the built-in pattern translations. A USEAFTER that cannot be parsed raises
    ReferenceFileError naming `filename` (or the header's FILENAME) and the value.
    """
    observatory = observatory.lower()
    result = {str(key).upper(): value for key, value in header.items()}
    name = filename or str(result.get("FILENAME", "reference"))

    translations = _translations(observatory, result, reference_to_dataset)
    for rkey in sorted(translations):
        if rkey not in result:
            continue
        dkey = translations[rkey]
        value = result[rkey]
        if value not in (None, UNDEFINED) and value != result.get(dkey):
            result[dkey] = normalize_pattern(value)
            if observatory == "roman" and isinstance(result[dkey], str):
                result[dkey] = result[dkey].upper()

    if observatory == "jwst":
        result = cross_strap(result)
        for fits_key, meta_key in (("SUBARRAY", "META.SUBARRAY.NAME"), ("EXP_TYPE", "META.EXPOSURE.TYPE")):
            if fits_key not in result:
                result[fits_key] = result[meta_key] = UNDEFINED
    elif observatory == "roman":
        prefix = _roman_prefix(result)
        for key in (f"{prefix}.SUBARRAY.NAME", f"{prefix}.EXPOSURE.TYPE"):
            result.setdefault(key, UNDEFINED)

    useafter = _useafter(result)
    if useafter is not None:
        try:
            date, time = split_useafter(str(useafter))
        except ValueError as exc:
            raise ReferenceFileError(name, f"bad USEAFTER {useafter!r}: {exc}", "USEAFTER") from None
        if observatory == "hst":
            result.update({"DATE-OBS": date, "DATE_OBS": date, "TIME-OBS": time, "TIME_OBS": time})
        elif observatory == "roman":
            result["ROMAN.META.EXPOSURE.START_TIME"] = f"{date} {time}"
        else:
            result.update({"DATE-OBS": date, "META.OBSERVATION.DATE": date,
                           "TIME-OBS": time, "META.OBSERVATION.TIME": time})
    return result


def _useafter(header: Mapping[str, Any]) -> Any:
    for key in ("USEAFTER", "META.USEAFTER", "ROMAN.META.USEAFTER"):
        if key in header:
            return header[key]
    return None


def _roman_prefix(header: Mapping[str, Any]) -> str:
    return "ROMAN.META" if any(key.startswith("ROMAN.") for key in header) else "META"


def _translations(
    observatory: str, header: Mapping[str, Any], extra: Mapping[str, str] | None
) -> dict[str, str]:
    observatory = observatory.lower()
    if observatory == "jwst":
        translations = dict(JWST_PATTERN_TRANSLATIONS)
    elif observatory == "roman":
        prefix = _roman_prefix(header)
        translations = {f"{prefix}.{k}": f"{prefix}.{v}" for k, v in ROMAN_PATTERN_TRANSLATIONS.items()}
    else:
        translations = {}
    for rkey, dkey in (extra or {}).items():
        translations[str(rkey).upper()] = str(dkey).upper()
    return translations
