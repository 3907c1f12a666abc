"""CRDS mapping names: `<observatory>[_<instrument>[_<filekind>]][_<serial>].<pmap|imap|rmap>`.

`hst_0001.pmap` (pipeline), `hst_acs_0002.imap` (instrument), `jwst_miri_dark_0018.rmap`
(reference). The serial is the series counter; a name without one (`hst_acs_biasfile.rmap`)
is the start of its series. The next name of a series is one past the highest serial of the
name and of any `existing` names of the same series, written with at least four digits -
as `crds newcontext` names new mappings (`fake_name`): `jwst_miri_dark_0018.rmap` ->
`jwst_miri_dark_0019.rmap`, `hst_acs_biasfile.rmap` -> `hst_acs_biasfile_0001.rmap`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from crds_events.errors import CrdsEventsError

__all__ = [
    "MAPPING_KINDS",
    "MappingName",
    "NamingError",
    "mapping_kind",
    "mapping_serial",
    "next_mapping_name",
    "parse_mapping_name",
]

#: Extension -> the `mapping` header value CRDS expects for it (lower case).
MAPPING_KINDS = {".pmap": "pipeline", ".imap": "instrument", ".rmap": "reference"}

# Parts of the stem before the serial: pmap 1, imap 2, rmap 3 or more (the filekind may
# hold underscores in ad hoc names such as test data; standard filekinds have none).
_PARTS = {".pmap": (1, 1), ".imap": (2, 2), ".rmap": (3, None)}

_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*\.(?:pmap|imap|rmap)$")


class NamingError(CrdsEventsError, ValueError):
    """A name that is not a CRDS mapping name."""


@dataclass(frozen=True)
class MappingName:
    observatory: str
    instrument: str | None
    filekind: str | None
    serial: int | None
    extension: str  # '.pmap', '.imap' or '.rmap'

    @property
    def kind(self) -> str:
        """'pipeline', 'instrument' or 'reference' (the header's `mapping` value, lowered)."""
        return MAPPING_KINDS[self.extension]

    @property
    def series(self) -> str:
        """The name without its serial and extension, e.g. 'jwst_miri_dark'."""
        return "_".join(p for p in (self.observatory, self.instrument, self.filekind) if p)

    def with_serial(self, serial: int) -> MappingName:
        return MappingName(self.observatory, self.instrument, self.filekind, serial,
                           self.extension)

    def __str__(self) -> str:
        serial = "" if self.serial is None else f"_{self.serial:04d}"
        return f"{self.series}{serial}{self.extension}"


def mapping_kind(name: str) -> str:
    """'pipeline', 'instrument' or 'reference' from a mapping file name's extension."""
    ext = os.path.splitext(name)[1]
    try:
        return MAPPING_KINDS[ext]
    except KeyError:
        raise NamingError(f"{name!r} is not a mapping name (.pmap, .imap or .rmap)") from None


def parse_mapping_name(name: str) -> MappingName:
    """Split a mapping file name (a path is reduced to its basename) into its parts."""
    base = os.path.basename(name)
    if not _NAME_RE.match(base):
        raise NamingError(
            f"{base!r} is not a CRDS mapping name: expected lower-case words joined by '_' "
            "ending in .pmap, .imap or .rmap"
        )
    stem, ext = os.path.splitext(base)
    parts = stem.split("_")
    serial = None
    if len(parts) > 1 and parts[-1].isdigit():
        serial = int(parts.pop())
    low, high = _PARTS[ext]
    if len(parts) < low or (high is not None and len(parts) > high):
        wanted = {".pmap": "observatory", ".imap": "observatory_instrument",
                  ".rmap": "observatory_instrument_filekind"}[ext]
        raise NamingError(f"{base!r}: a {ext} name is {wanted}[_serial]{ext}")
    observatory = parts[0]
    instrument = parts[1] if len(parts) > 1 else None
    filekind = "_".join(parts[2:]) if len(parts) > 2 else None
    return MappingName(observatory, instrument, filekind, serial, ext)


def mapping_serial(name: str) -> int:
    """The serial of a mapping name, -1 without one (as CRDS's newstyle_serial)."""
    serial = parse_mapping_name(name).serial
    return -1 if serial is None else serial


def next_mapping_name(name: str, existing: Iterable[str] = ()) -> str:
    """The next name of `name`'s series, past `name` and every same-series name in `existing`.

    Names in `existing` that are not mapping names, or of another series, are ignored.
    """
    parsed = parse_mapping_name(name)
    highest = parsed.serial or 0
    for other in existing:
        try:
            candidate = parse_mapping_name(other)
        except NamingError:
            continue
        if (candidate.series, candidate.extension) == (parsed.series, parsed.extension):
            highest = max(highest, candidate.serial or 0)
    return str(parsed.with_serial(highest + 1))
