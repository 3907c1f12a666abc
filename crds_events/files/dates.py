"""Parse the date spellings found in reference USEAFTER keywords.

Accepts what CRDS accepts for a USEAFTER (``crds.core.timestamp.parse_date``):

- ``YYYY-MM-DD[ HH:MM[:SS[.ffffff]]]``, ``YYYY-MM-DDTHH:MM[:SS[.f]]``, ``YYYY/MM/DD ...``;
- ``MM/DD/YYYY``, ``MM-DD-YYYY``; ``DD/MM/YY`` (``9x`` -> 199x, ``0x``-``3x`` -> 20xx);
- ``YYYYMMDD:HHMMSS``;
- ``Mon DD YYYY [time]``, ``Month D, YYYY``, ``DD-Mon-YYYY``, times with ``AM``/``PM``;
- a trailing `` UT``.

Anything else, or a value containing ``UNDEFINED``, raises ValueError with the reason.

The parsing itself is `crds_events.rules.dates` (the best-references lookup's, kept to the
letter of CRDS); this module only adds what reading a reference file's header wants: a
datetime passes through, surrounding blanks and a blank before `` UT`` are forgiven, and
``undefined`` in any case is refused. So both agree on every spelling; the few that differ
from the copy this replaced (``Jan 01,, 2010`` is now refused, as CRDS refuses it; a year
too large is a ValueError, no longer an OverflowError) are ones no caller relied on.
"""

from __future__ import annotations

import datetime

from crds_events.rules import dates as _rules_dates


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
    try:
        return _rules_dates.parse_date(text)
    except _rules_dates.DateError as exc:
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
