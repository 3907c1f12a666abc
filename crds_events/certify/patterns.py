"""JWST and Roman pattern keywords (``P_DETECT``, ``META.INSTRUMENT.P_DETECTOR``, ...) in certify.

A JWST reference that applies to several detectors (bands, exposure types, ...) says so with
a pattern keyword holding an or-list, ``P_DETECT = 'MIRIFUSHORT|MIRIFULONG|'``. CRDS's
certify (``ReferenceCertifier.load`` -> ``locate.reference_keys_to_dataset_keys``) first
gives the keyword the pattern stands for (``META.INSTRUMENT.DETECTOR``) the pattern's value,
then checks it like any value: each ``|``-separated item must be valid for that keyword
(``CharacterValidator`` checks the items of ``glob_list(value)``, which drops blanks and the
trailing ``|``). So ``P_DETECT='MIRIFUSHORT|FOO|'`` fails on ``FOO`` with the .tpn values of
``META.INSTRUMENT.DETECTOR``, and a keyword that looks like a pattern but has no
translation (``P_DETEC``, a misspelling) is a warning: its pattern is not used.

As in CRDS, a missing trailing ``|`` is accepted (``P_BAND = 'LONG'``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crds_events.certify.result import FileResult
from crds_events.files.dataset_keys import (
    JWST_PATTERN_TRANSLATIONS,
    ROMAN_PATTERN_TRANSLATIONS,
    normalize_pattern,
)

__all__ = ["apply_pattern_keywords", "pattern_translations"]

_UNDEFINED = ("UNDEFINED", None)


def pattern_translations(observatory: str, header: Mapping[str, Any]) -> dict[str, str]:
    """Pattern keyword -> the keyword it gives its value to, for `observatory`'s headers."""
    observatory = observatory.lower()
    if observatory == "jwst":
        return dict(JWST_PATTERN_TRANSLATIONS)
    if observatory == "roman":
        prefix = "ROMAN.META" if any(str(key).startswith("ROMAN.") for key in header) else "META"
        return {f"{prefix}.{k}": f"{prefix}.{v}" for k, v in ROMAN_PATTERN_TRANSLATIONS.items()}
    return {}


def apply_pattern_keywords(header: Mapping[str, Any], observatory: str,
                           result: FileResult) -> dict[str, Any]:
    """A copy of `header` where each defined pattern keyword's or-list (blanks and empty
    items dropped) replaces the value of the keyword it stands for, as CRDS's certify does
    before checking constraints. Each replacement is noted in `result` (info), each
    pattern-like keyword without a translation is a warning."""
    translations = pattern_translations(observatory, header)
    if not translations:
        return dict(header)
    updated = dict(header)
    for key in sorted(header):
        name = str(key)
        if name.split(".")[-1].startswith("P_") and name not in translations:
            result.add("warning", name, f"CRDS-pattern-like keyword {name!r} without a "
                       "translation to a dataset keyword: its pattern is not used "
                       "(misspelled?)")
    for pattern_key in sorted(translations):
        if pattern_key not in header:
            continue
        target = translations[pattern_key]
        value = header[pattern_key]
        if value in _UNDEFINED or value == header.get(target):
            continue
        conditioned = normalize_pattern(value)
        if isinstance(conditioned, str) and not conditioned.strip(" |"):
            result.add("error", pattern_key, f"pattern {value!r} lists no value")
            continue
        updated[target] = conditioned
        result.add("info", target, f"set to {conditioned!r} from {pattern_key} = {value!r} "
                                   f"(was {header.get(target, 'UNDEFINED')!r})")
    return updated
