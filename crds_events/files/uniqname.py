"""Unique time-based names for HST and SYNPHOT references (CRDS ``uniqname``).

A name is ``<timestamp><instrument char>_<suffix><ext>``, e.g. ``zc52141pl_dead.fits``:

==========  ==============================================================
character   meaning
==========  ==============================================================
1           year: ``a`` = 1990 ... ``z`` = 2015, ``0`` = 2016 ... ``9`` = 2025,
            then it wraps round to ``a`` (base 36 from 1990)
2           month ``1``-``9``, ``a``-``c``
3           day ``1``-``9``, ``a``-``v``
4-5         UT hour ``00``-``23``
6-7         UT minute ``00``-``59``
8           UT second / 2: ``0``-``9``, ``a``-``t``
9           instrument: j ACS, i WFC3, o STIS, l COS, u WFPC2, n NICMOS, m SYNPHOT
==========  ==============================================================

Two names made within the same two seconds would collide, so callers that rename several
files in a row pass successive ``now`` values (or let ``unique_names`` space them).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

from crds_events.files.checksums import has_checksum, verify_checksum
from crds_events.files.errors import ReferenceFileError
from crds_events.files.reftypes import INSTRUMENT_ID_CHAR, reference_type

_YEARS = "abcdefghijklmnopqrstuvwxyz0123456789"
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def timestamp_code(now: datetime.datetime) -> str:
    """The 8-character time code of a uniqname for UT time `now`."""
    seconds = now.second // 2
    return "".join([
        _YEARS[(now.year - 1990) % 36],
        _BASE36[now.month],
        _BASE36[now.day],
        f"{now.hour:02d}",
        f"{now.minute:02d}",
        _BASE36[seconds],
    ])


def decode_timestamp(code: str, century_start: int = 1990) -> datetime.datetime:
    """The UT time (to 2 s) a uniqname's first 8 characters encode (inverse of timestamp_code).

    The year code repeats every 36 years; `century_start` picks the cycle (1990 or 2026).
    """
    year = century_start + _YEARS.index(code[0])
    return datetime.datetime(year, _BASE36.index(code[1]), _BASE36.index(code[2]),
                             int(code[3:5]), int(code[5:7]), _BASE36.index(code[7]) * 2)


def generate_unique_name(path: str | os.PathLike, now: datetime.datetime | None = None) -> str:
    """The uniqname (basename) for the HST or SYNPHOT reference at `path`.

    The instrument and suffix come from the current name or the header (INSTRUME, FILETYPE;
    SYNPHOT: DBTABLE). `now` defaults to the current UT time.
    """
    path = os.fspath(path)
    kind = reference_type(path, observatory="hst")
    if kind.observatory != "hst" or kind.instrument not in INSTRUMENT_ID_CHAR:
        raise ReferenceFileError(path, f"uniqname only names HST and SYNPHOT references, not "
                                       f"{kind.observatory.upper()} {kind.instrument.upper()}")
    now = now or datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    ext = os.path.splitext(path)[1].lower()
    return f"{timestamp_code(now)}{INSTRUMENT_ID_CHAR[kind.instrument]}_{kind.suffix}{ext}"


@dataclass(frozen=True)
class Renamed:
    """One uniqname rename: where the file was, where it is (or would be), what was done."""

    old_path: str
    new_path: str
    dry_run: bool
    checksum_added: bool


def rename_reference(
    path: str | os.PathLike,
    *,
    now: datetime.datetime | None = None,
    output_dir: str | os.PathLike | None = None,
    add_keywords: bool = True,
    add_checksum: bool | None = None,
    verify: bool = True,
    remove_original: bool = False,
    dry_run: bool = False,
) -> Renamed:
    """Write the FITS reference at `path` under its uniqname (CRDS ``uniqname --standard``).

    - `add_keywords`: set FILENAME and ROOTNAME to the new name and add a HISTORY line
      ``<old> renamed to <new> on <Mon> <d> <yyyy>``;
    - `add_checksum`: True adds CHECKSUM/DATASUM, False leaves them out; None (default)
      keeps them if the original had them;
    - `verify`: refuse a file whose FITS structure or checksums are bad;
    - `dry_run`: compute the name only.

    Raises ReferenceFileError naming the file and the reason.
    """
    from astropy.io import fits

    path = os.fspath(path)
    now = now or datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    new_name = generate_unique_name(path, now)
    new_path = os.path.join(os.fspath(output_dir) if output_dir else os.path.dirname(path), new_name)
    if add_checksum is None:
        add_checksum = has_checksum(path)
    if dry_run:
        return Renamed(path, new_path, True, bool(add_checksum))
    if os.path.exists(new_path):
        raise ReferenceFileError(path, f"uniqname {new_name} already exists")
    if verify:
        problems = verify_checksum(path)
        if problems:
            raise ReferenceFileError(path, "; ".join(problems), "CHECKSUM")
    try:
        with fits.open(path, do_not_scale_image_data=True) as hdus:
            if verify:
                hdus.verify("exception")
            if add_keywords:
                old = os.path.basename(path)
                header = hdus[0].header
                header["FILENAME"] = new_name
                header["ROOTNAME"] = os.path.splitext(new_name)[0].upper()
                header["HISTORY"] = f"{old} renamed to {new_name} on {MONTHS[now.month - 1]} {now.day} {now.year}"
            for hdu in hdus:
                hdu.header.remove("CHECKSUM", ignore_missing=True)
                hdu.header.remove("DATASUM", ignore_missing=True)
            hdus.writeto(new_path, checksum=bool(add_checksum), output_verify="exception")
    except Exception as exc:
        if os.path.exists(new_path):
            os.remove(new_path)
        reason = str(exc)
        if "buffer is too small" in reason:
            reason = f"probable file truncation: {reason}"
        raise ReferenceFileError(path, f"cannot rename to {new_name}: {reason}") from exc
    if remove_original:
        os.remove(path)
    return Renamed(path, new_path, False, bool(add_checksum))
