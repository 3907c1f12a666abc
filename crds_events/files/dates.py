"""Parse the date spellings found in reference USEAFTER keywords.

Accepts what CRDS accepts for a USEAFTER (``crds.core.timestamp.parse_date``):

- ``YYYY-MM-DD[ HH:MM[:SS[.ffffff]]]``, ``YYYY-MM-DDTHH:MM[:SS[.f]]``, ``YYYY/MM/DD ...``;
- ``MM/DD/YYYY``, ``MM-DD-YYYY``; ``DD/MM/YY`` (``9x`` -> 199x, ``0x``-``3x`` -> 20xx);
- ``YYYYMMDD:HHMMSS``;
- ``Mon DD YYYY [time]``, ``Month D, YYYY``, ``DD-Mon-YYYY``, times with ``AM``/``PM``;
- a trailing `` UT``.

Anything else, or a value containing ``UNDEFINED``, raises ValueError with the reason.
"""

from __future__ import annotations

import datetime
import re

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_T_SEPARATED = re.compile(r"^\d{4}[-/]\d\d[-/]\d\dT\d\d(:\d\d){1,2}(\.\d{1,6})?$")
_ALPHA = re.compile(r"[A-Za-z]{3,10}")


def parse_date(text: str | datetime.datetime) -> datetime.datetime:
    """Parse a USEAFTER-style date (see the module doc) into a naive datetime."""
    if isinstance(text, datetime.datetime):
        return text.replace(tzinfo=None)
    original = text
    text = str(text).strip()
    if "UNDEFINED" in text.upper():
        raise ValueError(f"date {original!r} is UNDEFINED")
    if text.endswith(" UT"):
        text = text[:-3].strip()
    if _T_SEPARATED.match(text):
        text = text.replace("T", " ")
    try:
        if _ALPHA.search(text):
            return _parse_alphabetical(text)
        return _parse_numerical(text)
    except (ValueError, IndexError) as exc:
        raise ValueError(f"unrecognised date {original!r}: {exc}") from None


def format_date(when: datetime.datetime, sep: str = " ") -> str:
    """The CRDS form of a date: ``YYYY-MM-DD HH:MM:SS`` (``.ffffff`` when non-zero)."""
    return when.isoformat(sep)


def split_useafter(useafter: str) -> tuple[str, str]:
    """Split a USEAFTER value into the (DATE-OBS, TIME-OBS) pair that rmaps match on.

    >>> split_useafter("Oct 01 1996 00:00:00")
    ('1996-10-01', '00:00:00')
    """
    date, time = format_date(parse_date(useafter)).split(" ")
    return date, time


def _parse_time(text: str) -> tuple[int, int, int, int]:
    text = text.strip()
    meridian = ""
    if text[-2:].upper() in ("AM", "PM"):
        meridian, text = text[-2:].upper(), text[:-2].strip()
    parts = text.split(":")
    if not 2 <= len(parts) <= 4:
        raise ValueError(f"bad time {text!r}")
    hour, minute = int(parts[0]), int(parts[1])
    second = float(parts[2]) if len(parts) > 2 else 0.0
    whole = int(second)
    # Truncated, not rounded, like CRDS, so split USEAFTERs match its rmaps to the digit.
    micro = int((second - whole) * 1_000_000)
    if meridian == "PM" and hour < 12:
        hour += 12
    elif meridian == "AM" and hour == 12:
        hour = 0
    return hour, minute, whole, micro


def _month(name: str) -> int:
    try:
        return _MONTHS.index(name[:3].lower()) + 1
    except ValueError:
        raise ValueError(f"bad month {name!r}") from None


def _parse_alphabetical(text: str) -> datetime.datetime:
    lowered = text
    while lowered.lower().endswith((" am", " pm")):
        lowered = lowered[:-3] + lowered[-2:]
    parts = lowered.replace("-", " ").replace("/", " ").split()
    if len(parts) == 3:
        parts.append("00:00AM")
    if len(parts) != 4:
        raise ValueError("expected 'Mon DD YYYY [HH:MM[:SS]]'")
    month, day, year, time = parts
    day = day.rstrip(",")
    try:
        imonth, iday = _month(month), int(day)
    except ValueError:  # DD-Mon-YYYY
        imonth, iday = _month(day), int(month)
    return datetime.datetime(int(year), imonth, iday, *_parse_time(time))


def _parse_numerical(text: str) -> datetime.datetime:
    text = text.replace("-", "/")
    parts = text.split()
    if not parts:
        raise ValueError("empty date")
    date = parts[0]
    time = " ".join(parts[1:]) if len(parts) > 1 else "00:00:00"
    hms = _parse_time(time)
    if re.match(r"^\d\d/\d\d/\d{4}$", date):
        month, day, year = date.split("/")
    elif re.match(r"^\d{4}/\d\d/\d\d$", date):
        year, month, day = date.split("/")
    elif re.match(r"^\d\d/\d\d/9\d$", date):
        day, month, year = date.split("/")
        year = "19" + year
    elif re.match(r"^\d\d/\d\d/[0-3]\d$", date):
        day, month, year = date.split("/")
        year = "20" + year
    elif re.match(r"^\d{8}:\d{6}$", date):
        year, month, day = date[:4], date[4:6], date[6:8]
        hms = (int(date[9:11]), int(date[11:13]), int(date[13:15]), 0)
    else:
        raise ValueError("unknown numerical date format")
    return datetime.datetime(int(year), int(month), int(day), *hms)
