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
    "plain_name_problem",
    "rules_name_problem",
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


# ----------------------------------------------------------------------------- named files

#: Values a rules file may give instead of a file name (crds.core.config FILE_RE accepts
#: `N/A` and `OMIT`; conditioning also knows the TEMP_ spellings).
SPECIAL_VALUES = frozenset({"N/A", "n/a", "OMIT", "omit", "TEMP_N/A", "temp_n/a", "TEMP_OMIT"})

#: Longest file name a rules file may name (crds.core.config FILE_RE: 1 to 128 characters).
MAX_FILE_NAME = 128

# A plain file name: letters, digits, '_' and '-' in '.'-separated parts. So no separator,
# no '..', no leading dot, nothing a shell, a URL or a file system reads specially.
_PLAIN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]+)*$")
# A mapping name as CRDS forms them (crds.core.config CRDS_NAME_RE): a filekind may hold '-'
# (jwst_miri_pars-tweakreg_0001.rmap).
_MAPPING_NAME_RE = re.compile(
    r"^(?P<obs>[a-z]{2,9})(?:_[a-z][a-z0-9]*(?:_[a-z0-9][a-z0-9\-]*)*)?\.(?:pmap|imap|rmap)$")
#: The extensions of reference files: those of crds.core.config.is_reference, and the
#: spellings our reader takes (crds_events.files.formats).
_REFERENCE_EXT_RE = re.compile(r"\.(?:fits|fit|fts|asdf|r\d[hd]|yaml|yml|json|text)$")
#: How the crds repository's own test mappings name children (`test/data/hst/hst_acs.imap`):
#: allowed only where a caller asks for that compatibility (the corpus comparison).
_COMPAT_PREFIX_RE = re.compile(r"^test/data/[a-z]{2,9}/")


def plain_name_problem(name: object, *, compat: bool = False) -> str | None:
    """Why `name`, given as a file in a rules file, is not a plain file name (else None).

    A plain name has no path separator, no '..', no leading dot, at most 128 characters,
    only letters, digits, '_', '-' and '.'. `N/A`, `OMIT` and their variants are allowed.
    `compat` also accepts the crds repository's `test/data/<obs>/<name>` form (its test
    mappings name children so), for comparing with its test data only.
    """
    if not isinstance(name, str):
        return f"{name!r} is not a file name"
    if name in SPECIAL_VALUES:
        return None
    base = name
    prefix = _COMPAT_PREFIX_RE.match(name) if compat else None
    if prefix is not None:
        base = name[prefix.end():]
    shown = name if len(name) <= 80 else name[:77] + "..."
    if len(base) > MAX_FILE_NAME:
        return f"{shown!r} is longer than {MAX_FILE_NAME} characters"
    if "/" in base or "\\" in base:
        return f"{shown!r} names a path, not a file (no directory separators allowed)"
    if ".." in base:
        return f"{shown!r} contains '..'"
    if base.startswith("."):
        return f"{shown!r} starts with a dot"
    if not _PLAIN_NAME_RE.match(base):
        return (f"{shown!r} is not a plain file name (letters, digits, '_', '-' and "
                "'.'-separated extensions only)")
    return None


def rules_name_problem(name: object, observatory: object = None) -> str | None:
    """Why `name` is not a CRDS file name a rules file may give (else None), as certify
    checks it: a plain name (`plain_name_problem`), lower case, and then a mapping name
    (.pmap/.imap/.rmap) of `observatory`'s pattern (when given), or a reference name with
    a reference file extension. `N/A`, `OMIT` and their variants are allowed.
    """
    problem = plain_name_problem(name)
    if problem is not None or name in SPECIAL_VALUES:
        return problem
    assert isinstance(name, str)
    if name != name.lower():
        return f"{name!r} is not lower case (CRDS file names are)"
    if name.endswith((".pmap", ".imap", ".rmap")):
        match = _MAPPING_NAME_RE.match(name)
        if match is None:
            return f"{name!r} is not a CRDS mapping name (<observatory>_<instrument>_...)"
        if isinstance(observatory, str) and match.group("obs") != observatory.lower():
            return f"{name!r} is not a {observatory.lower()} mapping name"
    elif not _REFERENCE_EXT_RE.search(name):
        return f"{name!r} does not have a reference file extension"
    return None
