"""Observatory-specific lookup hooks that CRDS applies outside the rmap text.

CRDS lets an instrument package adjust a dataset header before the lookup (precondition),
retry a failed lookup with another header (fallback), and, for HST, declare some datasets
"do not reprocess" so that a failed lookup means "not applicable". The rules files name none
of this; CRDS finds `precondition_header_<instr>_<type>_v1` / `fallback_header_<...>_v1` in
its `crds.hst.<instr>` modules (or the names in an rmap's `hooks` header). The HST hooks
that exist for version 1 are reproduced here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from crds_events.errors import CrdsEventsError
from crds_events.rules import dates
from crds_events.rules.conditioning import condition_value

Header = dict[str, str]
Hook = Callable[[Header], Header | None]

# ACS servicing mission 4: bias selection rules changed for exposures after it.
_ACS_SM4 = "2009-05-14 00:00:00"
_ACS_HALF_CHIP_COLUMNS = 2048


class HookError(CrdsEventsError, ValueError):
    """A hook could not process the header (its message becomes `NOT FOUND <reason>`)."""


def _exposure_start(header: Mapping[str, str]) -> str:
    try:
        return dates.reformat_date(header["DATE-OBS"] + " " + header["TIME-OBS"])
    except dates.DateError as exc:
        raise HookError(str(exc)) from exc


def precondition_acs_biasfile(header_in: Mapping[str, str]) -> Header:
    """ACS BIASFILE: pre-SM4 apertures don't matter, wide readouts pair amplifiers,
    full-frame WFC rows are counted per amplifier."""
    header = dict(header_in)
    start = _exposure_start(header)
    if start < _ACS_SM4:
        header["APERTURE"] = "N/A"
    try:
        columns = int(float(header["NUMCOLS"]))
    except ValueError:
        pass
    except OverflowError as exc:
        raise HookError(f"NUMCOLS {header['NUMCOLS']!r}: {exc}") from exc
    else:
        header["NUMCOLS"] = condition_value(str(columns))
        if start < _ACS_SM4 and columns > _ACS_HALF_CHIP_COLUMNS:
            if header["CCDAMP"] in ("A", "D"):
                header["CCDAMP"] = "AD"
            elif header["CCDAMP"] in ("B", "C"):
                header["CCDAMP"] = "BC"
    if header["DETECTOR"] == "WFC" and header["XCORNER"] == "0.0" and header["YCORNER"] == "0.0":
        try:
            rows = int(float(header["NUMROWS"])) / 2
        except ValueError:
            pass
        except OverflowError as exc:
            raise HookError(f"NUMROWS {header['NUMROWS']!r}: {exc}") from exc
        else:
            header["NUMROWS"] = condition_value(str(rows))
    return header


def precondition_wfc3_biasfile(header_in: Mapping[str, str]) -> Header:
    """WFC3 BIASFILE: custom subarrays (SUBARRAY=T, aperture without SUB) match any aperture."""
    header = dict(header_in)
    if header["SUBARRAY"] == "T" and "SUB" not in header["APERTURE"]:
        header["APERTURE"] = "N/A"
    return header


def fallback_wfpc2_flatfile(header_in: Mapping[str, str]) -> Header:
    """WFPC2 FLATFILE: retry with the two filter wheels swapped."""
    header = dict(header_in)
    header["FILTER1"], header["FILTER2"] = header["FILTER2"], header["FILTER1"]
    return header


def hst_do_not_reprocess(header: Mapping[str, str]) -> bool:
    """HST datasets never reprocessed (ACS WFC at gains 0.5 or 1.4): a miss means N/A."""
    try:
        return header["DETECTOR"] == "WFC" and float(header["CCDGAIN"]) in (0.5, 1.4)
    except (KeyError, ValueError, TypeError):
        return False


# Hook functions by the name CRDS looks up (observatory, hook name).
_HOOKS: dict[tuple[str, str], Hook] = {
    ("hst", "precondition_header_acs_biasfile_v1"): precondition_acs_biasfile,
    ("hst", "precondition_header_wfc3_biasfile_v1"): precondition_wfc3_biasfile,
    ("hst", "fallback_header_wfpc2_flatfile_v1"): fallback_wfpc2_flatfile,
}


# Hooks whose result depends on no date and changes no date: the keys each reads. Lookups
# through them can be tabulated by date (see `index.ReferenceIndex.tabulable`).
DATE_FREE_READS: dict[Hook, tuple[str, ...]] = {
    precondition_wfc3_biasfile: ("SUBARRAY", "APERTURE"),
    fallback_wfpc2_flatfile: ("FILTER1", "FILTER2"),
}


class DateSplit:
    """How a hook depends on the date: only through whether the exposure start is before
    `point`. `before` / `after` are date values on either side (the hook given them reads
    every other key as it would with the dataset's own date); `dates` are the keys it reads
    the date from, `reads` the others. The start is `reformat_date` of the `dates` values
    joined by a blank, which is a UseAfter's lookup date over the same keys wherever none
    of the values is empty (the UseAfter strips the joined text, the hook does not)."""

    __slots__ = ("after", "before", "dates", "point", "reads")

    def __init__(self, dates_keys: tuple[str, ...], point: str, reads: tuple[str, ...]):
        self.dates = dates_keys
        self.point = point
        self.reads = reads
        day, time = point.split(" ")
        self.before = dict(zip(dates_keys, ("1980-01-01", "00:00:00"), strict=True))
        self.after = dict(zip(dates_keys, (day, time), strict=True))

    def sides(self, header: Mapping[str, str]) -> tuple[Header, Header]:
        """`header` with a date before the split, and with one after it."""
        return {**header, **self.before}, {**header, **self.after}


# Hooks that read the date, but only to compare it with one fixed date: a lookup through
# them is two date-free lookups, one each side (see `index.ReferenceIndex.date_table`).
DATE_SPLITS: dict[Hook, DateSplit] = {
    precondition_acs_biasfile: DateSplit(
        ("DATE-OBS", "TIME-OBS"), _ACS_SM4,
        ("APERTURE", "NUMCOLS", "CCDAMP", "DETECTOR", "XCORNER", "YCORNER", "NUMROWS"),
    ),
}

# The keys each do-not-reprocess check reads (the failure handling's only header input).
DO_NOT_REPROCESS_READS: dict[Callable[[Mapping[str, str]], bool], tuple[str, ...]] = {
    hst_do_not_reprocess: ("DETECTOR", "CCDGAIN"),
}


def find_hook(
    observatory: str,
    instrument: str,
    filekind: str,
    kind: str,
    named_hooks: Mapping[str, str] | None = None,
) -> Hook | None:
    """The `kind` hook ("precondition_header" or "fallback_header") for an rmap, or None.

    `named_hooks` is the rmap's `hooks` header, which renames (or unplugs, with a name that
    does not exist) the version CRDS would use.
    """
    default = f"{kind}_{instrument}_{filekind}_v1"
    name = str(named_hooks.get(kind, kind)) if named_hooks else default
    return _HOOKS.get((observatory, name))


def do_not_reprocess_check(observatory: str) -> Callable[[Mapping[str, str]], bool] | None:
    """The observatory's do-not-reprocess predicate, if it has one."""
    return hst_do_not_reprocess if observatory == "hst" else None
