"""Official names for submitted files, chosen so they never collide with known names.

- JWST and Roman references: ``<obs>_<instrument>_<type>_<NNNN>.<ext>``, one past the
  highest serial of that ``<obs>_<instrument>_<type>`` series among the known names and the
  names already given in this submission (the serial counts across extensions, as CRDS's
  per-type counter does).
- HST references: CRDS unique names (``crds_events.files.uniqname``), built from the time;
  successive files get times two seconds apart, and a name already known is skipped by
  moving on another two seconds.
- Mappings: the next name of their series (``rules.naming.next_mapping_name``).

`NameBook` remembers the names handed out, so one submission never gives a name twice.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Callable, Iterable

from crds_events.files.reftypes import ReferenceType
from crds_events.files.uniqname import generate_unique_name
from crds_events.rules.naming import next_mapping_name

__all__ = ["NameBook", "serial_reference_name"]

#: How far apart successive HST names are put (a uniqname resolves two seconds).
HST_NAME_STEP = datetime.timedelta(seconds=2)
#: Give up looking for a free HST name after this many steps (a clock far in the past).
HST_MAX_TRIES = 10_000


def serial_reference_name(kind: ReferenceType, extension: str, taken: Iterable[str]) -> str:
    """``<obs>_<instrument>_<type>_<NNNN><extension>``, one past the highest serial taken."""
    series = f"{kind.observatory}_{kind.instrument}_{kind.filekind}".lower()
    pattern = re.compile(rf"^{re.escape(series)}_(\d+)\.[a-z0-9]+$")
    highest = 0
    for name in taken:
        match = pattern.match(os.path.basename(name).lower())
        if match:
            highest = max(highest, int(match.group(1)))
    return f"{series}_{highest + 1:04d}{extension.lower()}"


class NameBook:
    """Names known before the submission plus those handed out during it."""

    def __init__(self, known: Iterable[str],
                 clock: Callable[[], datetime.datetime] | None = None) -> None:
        self.taken: set[str] = {os.path.basename(name) for name in known}
        self._clock = clock or (lambda: datetime.datetime.now(datetime.UTC).replace(tzinfo=None))
        self._last_time: datetime.datetime | None = None

    def __contains__(self, name: str) -> bool:
        return os.path.basename(name) in self.taken

    def take(self, name: str) -> str:
        self.taken.add(os.path.basename(name))
        return name

    def serial_name(self, kind: ReferenceType, extension: str) -> str:
        """The next JWST/Roman serial name for `kind`, taken."""
        return self.take(serial_reference_name(kind, extension, self.taken))

    def mapping_name(self, old_name: str) -> str:
        """The next name of `old_name`'s series, taken."""
        return self.take(next_mapping_name(os.path.basename(old_name), self.taken))

    def hst_time(self) -> datetime.datetime:
        """A time for the next HST name: now, but two seconds past the previous one."""
        now = self._clock()
        if self._last_time is not None and now < self._last_time + HST_NAME_STEP:
            now = self._last_time + HST_NAME_STEP
        self._last_time = now
        return now

    def hst_name(self, path: str | os.PathLike) -> tuple[str, datetime.datetime]:
        """A free HST unique name for the reference at `path` and the time it encodes
        (taken). Raises ReferenceFileError for a file that is not an HST reference."""
        for _ in range(HST_MAX_TRIES):
            when = self.hst_time()
            name = generate_unique_name(path, when)
            if name not in self:
                return self.take(name), when
        raise RuntimeError(f"no free unique name for {os.path.basename(os.fspath(path))} "
                           f"after {HST_MAX_TRIES} tries")
