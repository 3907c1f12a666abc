"""Lenient date parsing for UseAfter lookups, with CRDS's accepted spellings.

A UseAfter lookup joins the dataset's date and time values with a blank, parses the result
leniently and compares its ISO form (`YYYY-MM-DD HH:MM:SS[.ffffff]`) as a *string* with the
rmap's UseAfter keys. Accepted spellings (as CRDS accepts them):

- numeric dates: `YYYY-MM-DD`, `YYYY/MM/DD`, `MM/DD/YYYY`, `MM-DD-YYYY`, `DD/MM/YY` (years
  `9x` -> 199x, `0x`-`3x` -> 20xx) and `YYYYMMDD:HHMMSS` (whose own time wins);
- dates with month names: `Mon DD YYYY`, `month D, YYYY`, `DD-Mon-YYYY`, optionally a time;
- `YYYY-MM-DDTHH:MM[:SS[.ffffff]]` on its own (a `T` date followed by another time is not);
- times `HH:MM`, `HH:MM:SS[.ffffff]`, with `AM`/`PM`, or with a trailing ` UT`.

A value that cannot be parsed raises `DateError` with the text of the exception CRDS's
``crds.core.timestamp`` raises for it (``month must be in 1..12``, ``Invalid month value
'X' in base date '...'``, ``Unknown numerical date format: '...'``, ...): it is quoted
verbatim in CRDS's ``NOT FOUND`` answers, so the parsing below fails where and as CRDS's
does (the same unpacking, the same conversions).
"""

from __future__ import annotations

import datetime
import functools
import re

from crds_events.errors import CrdsEventsError


class DateError(CrdsEventsError, ValueError):
    """A date/time value that cannot be understood."""


class UndefinedDateError(DateError):
    """A required date/time value is UNDEFINED."""


_T_SEPARATED = re.compile(r"^\d\d\d\d[-/]\d\d[-/]\d\dT\d\d(:\d\d){1,2}(\.\d{1,6})?$")
_HAS_WORD = re.compile(r"[A-Za-z]{3,10}")
_MONTH_DAY_YEAR = re.compile(r"^\d\d/\d\d/\d\d\d\d$")
_YEAR_MONTH_DAY = re.compile(r"^\d\d\d\d/\d\d/\d\d$")
_DAY_MONTH_19YY = re.compile(r"^\d\d/\d\d/9\d$")
_DAY_MONTH_20YY = re.compile(r"^\d\d/\d\d/[0-3]\d$")
_COMPACT_DATE_TIME = re.compile(r"^\d\d\d\d\d\d\d\d:\d\d\d\d\d\d$")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _month_number(name: str, initial: str) -> int:
    abbreviation = name[:3].capitalize()
    if abbreviation not in _MONTHS:
        raise DateError(f"Invalid month value {name!r} in base date {initial!r}")
    return _MONTHS.index(abbreviation) + 1


def parse_time(text: str) -> tuple[int, int, int, int]:
    """Parse `HH:MM`, `HH:MM:SS[.ffffff]` (optionally `AM`/`PM`) into h, m, s, microseconds."""
    text = text.strip()
    meridian = text[-2:].upper()
    if meridian in ("AM", "PM"):
        text = text[:-2]
    parts = text.split(":")
    if len(parts) == 2:
        hour, minute, second = parts[0], parts[1], "00"
    elif len(parts) == 3:
        hour, minute, second = parts
    else:  # a fourth part (sub-seconds) is accepted and ignored; other counts fail as in CRDS
        hour, minute, second, _subsecond = parts
    ihour, iminute = int(hour), int(minute)
    seconds = float(second)
    isecond = int(seconds)
    microsecond = int((seconds - isecond) * 10**6)
    if meridian == "PM" and ihour < 12:
        ihour += 12
    elif meridian == "AM" and ihour == 12:
        ihour -= 12
    return ihour, iminute, isecond, microsecond


def _parse_with_month_name(text: str) -> datetime.datetime:
    initial = text
    while text.lower().endswith(" am"):
        text = text.lower().replace(" am", "am")
    while text.lower().endswith(" pm"):
        text = text.lower().replace(" pm", "pm")
    words = text.replace("-", " ").replace("/", " ").split()
    if len(words) == 4:
        month, day, year, time = words
    else:  # three words; other counts fail with CRDS's unpacking message
        month, day, year = words
        time = "00:00AM"
    if day.endswith(","):
        day = day[:-1]
    try:
        imonth, iday, iyear = _month_number(month, initial), int(day), int(year)
    except ValueError:  # DD-Mon-YYYY: the day came first
        day, month = month, day
        imonth, iday, iyear = _month_number(month, initial), int(day), int(year)
    return datetime.datetime(iyear, imonth, iday, *parse_time(time))


def _parse_numeric(text: str) -> datetime.datetime:
    text = text.replace("-", "/")
    parts = text.split()
    date = parts[0]  # IndexError for an empty value, as in CRDS
    time = " ".join(parts[1:]) if len(parts) > 1 else "00:00:00"
    hour, minute, second, microsecond = parse_time(time)
    if _MONTH_DAY_YEAR.match(date):
        month, day, year = date.split("/")
    elif _YEAR_MONTH_DAY.match(date):
        year, month, day = date.split("/")
    elif _DAY_MONTH_19YY.match(date):
        day, month, year = date.split("/")
        year = "19" + year
    elif _DAY_MONTH_20YY.match(date):
        day, month, year = date.split("/")
        year = "20" + year
    elif _COMPACT_DATE_TIME.match(date):
        year, month, day = date[:4], date[4:6], date[6:8]
        hour, minute, second = int(date[9:11]), int(date[11:13]), int(date[13:15])
        microsecond = 0
    else:
        raise DateError(f"Unknown numerical date format: {text!r}")
    return datetime.datetime(int(year), int(month), int(day), hour, minute, second, microsecond)


def parse_date(text: str) -> datetime.datetime:
    """Parse a date/time string leniently; raise `DateError` if it cannot be understood."""
    if "UNDEFINED" in text:
        raise UndefinedDateError("One or more required date/time values is UNDEFINED")
    if text.endswith(" UT"):
        text = text[:-3]
    if _T_SEPARATED.match(text):
        text = text.replace("T", " ")
    try:
        if _HAS_WORD.search(text):
            return _parse_with_month_name(text)
        return _parse_numeric(text)
    except DateError:
        raise
    except (ValueError, OverflowError, IndexError, TypeError) as exc:
        raise DateError(str(exc)) from exc


# The usual spelling of a dataset's date and time, read without the general parser.
_PLAIN_DATE_TIME = re.compile(r"^(\d\d\d\d)-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)$")


@functools.lru_cache(maxsize=65536)
def reformat_date(text: str) -> str:
    """Return `text` as CRDS's sortable `YYYY-MM-DD HH:MM:SS[.ffffff]`; `DateError` if invalid."""
    plain = _PLAIN_DATE_TIME.match(text)
    if plain is not None:
        try:
            return datetime.datetime(*map(int, plain.groups())).isoformat(" ")
        except ValueError:
            pass  # out of range: the general parser words the error
    return parse_date(text).isoformat(" ")
