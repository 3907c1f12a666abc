"""Lenient date parsing for UseAfter lookups, with CRDS's accepted spellings.

A UseAfter lookup joins the dataset's date and time values with a blank, parses the result
leniently and compares its ISO form (`YYYY-MM-DD HH:MM:SS[.ffffff]`) as a *string* with the
rmap's UseAfter keys. Accepted spellings (as CRDS accepts them):

- numeric dates: `YYYY-MM-DD`, `YYYY/MM/DD`, `MM/DD/YYYY`, `MM-DD-YYYY`, `DD/MM/YY` (years
  `9x` -> 199x, `0x`-`3x` -> 20xx) and `YYYYMMDD:HHMMSS` (whose own time wins);
- dates with month names: `Mon DD YYYY`, `month D, YYYY`, `DD-Mon-YYYY`, optionally a time;
- `YYYY-MM-DDTHH:MM[:SS[.ffffff]]` on its own (a `T` date followed by another time is not);
- times `HH:MM`, `HH:MM:SS[.ffffff]`, with `AM`/`PM`, or with a trailing ` UT`.
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


def _month_number(name: str) -> int:
    abbreviation = name[:3].capitalize()
    if abbreviation not in _MONTHS:
        raise DateError(f"invalid month {name!r}")
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
    elif len(parts) in (3, 4):  # a fourth part (sub-seconds) is accepted and ignored
        hour, minute, second = parts[0], parts[1], parts[2]
    else:
        raise DateError(f"invalid time {text!r}")
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
    while text.lower().endswith(" am"):
        text = text.lower().replace(" am", "am")
    while text.lower().endswith(" pm"):
        text = text.lower().replace(" pm", "pm")
    words = text.replace("-", " ").replace("/", " ").split()
    if len(words) == 4:
        month, day, year, time = words
    elif len(words) == 3:
        month, day, year = words
        time = "00:00AM"
    else:
        raise DateError(f"unknown date format {text!r}")
    if day.endswith(","):
        day = day[:-1]
    try:
        imonth, iday, iyear = _month_number(month), int(day), int(year)
    except ValueError:  # DD-Mon-YYYY: the day came first
        day, month = month, day
        imonth, iday, iyear = _month_number(month), int(day), int(year)
    return datetime.datetime(iyear, imonth, iday, *parse_time(time))


def _parse_numeric(text: str) -> datetime.datetime:
    parts = text.replace("-", "/").split()
    if not parts:
        raise DateError("empty date")
    date = parts[0]
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
    except (ValueError, OverflowError, IndexError) as exc:
        raise DateError(f"invalid date/time {text!r}: {exc}") from exc


@functools.lru_cache(maxsize=65536)
def reformat_date(text: str) -> str:
    """Return `text` as CRDS's sortable `YYYY-MM-DD HH:MM:SS[.ffffff]`; `DateError` if invalid."""
    return parse_date(text).isoformat(" ")
