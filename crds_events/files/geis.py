"""HST GEIS references: a header file ``x.rNh`` and its data file ``x.rNd``, one reference.

The rules name only the header; the data file lives beside it under the same base name with
the last letter ``d`` (CRDS's ``get_conjugate``). Everything that catalogs, submits,
delivers or serves a GEIS reference asks this module for the data file's name and checks
the pair here:

- `geis_data_name` / `geis_header_name`: the conjugate name (case kept: ``.R1H`` ->
  ``.R1D``);
- `pair_names`: a list of names split into header+data pairs, headers without their data
  file, data files without their header, and everything else;
- `check_pair`: the data file beside a header exists, is a regular file that stays in the
  header's directory (a symlink may not lead elsewhere), is not empty, and holds at least
  the bytes the header describes (``GCOUNT * (|BITPIX|/8 * NAXIS1*..*NAXISn + PSIZE/8)``;
  more is tolerated, as old archive copies may be padded);
- `rename_pair`: write both under a new base name (the header's FILENAME and ROOTNAME
  set, a HISTORY line added, as CRDS's uniqname does for FITS; the data bytes unchanged).

Every failure is a `ReferenceFileError` naming the file and the reason.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import shutil
import stat
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path

from crds_events.files.errors import ReferenceFileError
from crds_events.files.formats import geis_header_path, is_geis_data
from crds_events.files.headers import read_header

__all__ = [
    "GeisPairing", "check_pair", "expected_data_size", "geis_data_name", "geis_header_name",
    "is_geis_data", "is_geis_header", "pair_names", "rename_pair",
]

_HEADER = re.compile(r"\.r\dh$", re.IGNORECASE)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def is_geis_header(name: str | os.PathLike) -> bool:
    """True for a GEIS header file name (``.r0h`` .. ``.r9h``)."""
    return bool(_HEADER.search(os.fspath(name)))


def geis_data_name(name: str) -> str:
    """The data file of the GEIS header ``name`` (``x.r1h`` -> ``x.r1d``); ValueError for a
    name that is not a GEIS header."""
    if not is_geis_header(name):
        raise ValueError(f"{name!r} is not a GEIS header name (.r0h .. .r9h)")
    return name[:-1] + ("D" if name[-1].isupper() else "d")


def geis_header_name(name: str) -> str:
    """The header of the GEIS data file ``name`` (``x.r1d`` -> ``x.r1h``); ValueError for a
    name that is not a GEIS data file."""
    if not is_geis_data(name):
        raise ValueError(f"{name!r} is not a GEIS data file name (.r0d .. .r9d)")
    return geis_header_path(name)


@dataclasses.dataclass
class GeisPairing:
    """`pair_names`' answer: ``pairs`` header -> data, in the order the headers came."""

    pairs: dict[str, str] = dataclasses.field(default_factory=dict)
    headers_without_data: list[str] = dataclasses.field(default_factory=list)
    data_without_header: list[str] = dataclasses.field(default_factory=list)
    others: list[str] = dataclasses.field(default_factory=list)


def pair_names(names: Iterable[str]) -> GeisPairing:
    """Split ``names`` (plain file names) into GEIS pairs, unpaired halves and the rest."""
    names = list(names)
    present = set(names)
    found = GeisPairing()
    for name in names:
        if is_geis_header(name):
            data = geis_data_name(name)
            if data in present:
                found.pairs[name] = data
            else:
                found.headers_without_data.append(name)
        elif is_geis_data(name):
            if geis_header_name(name) not in present:
                found.data_without_header.append(name)
        else:
            found.others.append(name)
    return found


def _int(header: Mapping[str, str], key: str, default: int | None = None) -> int | None:
    value = str(header.get(key, "")).strip()
    if not value:
        return default
    try:
        return int(float(value))
    except ValueError:
        return None


def expected_data_size(header: Mapping[str, str]) -> int | None:
    """The bytes a GEIS data file must hold for ``header`` (`read_header`'s dict), or None
    when the header does not say (no BITPIX / NAXIS, or values that are not numbers)."""
    bitpix, naxis = _int(header, "BITPIX"), _int(header, "NAXIS")
    gcount, psize = _int(header, "GCOUNT", 1), _int(header, "PSIZE", 0)
    if bitpix is None or naxis is None or gcount is None or psize is None or naxis < 0:
        return None
    pixels = 1 if naxis else 0
    for axis in range(1, naxis + 1):
        length = _int(header, f"NAXIS{axis}")
        if length is None or length < 0:
            return None
        pixels *= length
    # PSIZE is in bits: the group parameter block after each group's pixels
    return max(gcount, 0) * (abs(bitpix) // 8 * pixels + psize // 8)


def check_pair(header_path: str | os.PathLike,
               data_path: str | os.PathLike | None = None) -> Path:
    """The data file of the GEIS header at ``header_path`` (default: its sibling
    `geis_data_name`), checked as the module docstring says; ReferenceFileError otherwise."""
    header_path = Path(header_path)
    if not is_geis_header(header_path.name):
        raise ReferenceFileError(header_path, "not a GEIS header name (.r0h .. .r9h)")
    data_path = Path(data_path) if data_path is not None else \
        header_path.with_name(geis_data_name(header_path.name))
    data_name = geis_data_name(header_path.name)
    try:
        info = os.lstat(data_path)
    except FileNotFoundError:
        raise ReferenceFileError(header_path, f"GEIS data file {data_name} is missing: a "
                                              f"GEIS reference is its header and its data "
                                              f"file") from None
    except OSError as exc:
        raise ReferenceFileError(data_path, f"cannot read: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        real = Path(os.path.realpath(data_path))
        if real.parent != Path(os.path.realpath(header_path.parent)):
            # where it leads is a server path: not named
            raise ReferenceFileError(data_path, "GEIS data file is a symlink leading out of "
                                                "its header's directory")
        try:
            info = os.stat(data_path)
        except OSError:
            raise ReferenceFileError(data_path, "GEIS data file is a dangling symlink") from None
    if not stat.S_ISREG(info.st_mode):
        raise ReferenceFileError(data_path, "GEIS data file is not a regular file")
    if info.st_size == 0:
        raise ReferenceFileError(data_path, "GEIS data file is empty (0 bytes)")
    expected = expected_data_size(read_header(header_path))
    if expected is not None and info.st_size < expected:
        raise ReferenceFileError(
            data_path, f"GEIS data file holds {info.st_size} bytes but its header "
                       f"{header_path.name} describes {expected} (GCOUNT x (pixels x "
                       f"BITPIX/8 + PSIZE/8)): truncated?")
    return data_path


# --- renaming ----------------------------------------------------------------------------


def _card(key: str, value: str, comment: str = "") -> str:
    quoted = f"'{value:<8}'"
    card = f"{key:<8}= {quoted:<20}"
    if comment and len(card) <= 31:  # a comment starts in column 32, as in the originals
        card = f"{card:<31}{comment}"
    return card[:80].ljust(80)


def _key(line: str) -> str:
    return line[:8].strip().upper()


def _comment(line: str) -> str:
    return line[31:].rstrip() if len(line) > 31 and line[31] == "/" else ""


def rename_pair(header_path: str | os.PathLike, data_path: str | os.PathLike,
                new_header_name: str, output_dir: str | os.PathLike, *,
                now: datetime.datetime | None = None) -> tuple[Path, Path]:
    """Write the GEIS pair as ``output_dir/new_header_name`` and its data file; the paths.

    The header gets ``FILENAME`` = the new header name and ``ROOTNAME`` = its upper-case
    stem (replaced where present, else added before ``END``) and a HISTORY line ``<old>
    renamed to <new> on <Mon> <d> <yyyy>``; the data file is copied unchanged. Neither
    target may exist. ReferenceFileError names the file and the reason."""
    header_path, data_path = Path(header_path), Path(data_path)
    if os.path.basename(new_header_name) != new_header_name or \
            not is_geis_header(new_header_name):
        raise ReferenceFileError(header_path, f"{new_header_name!r}: not a GEIS header name")
    now = now or datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    output = Path(output_dir)
    new_header, new_data = output / new_header_name, output / geis_data_name(new_header_name)
    for target in (new_header, new_data):
        if os.path.lexists(target):
            raise ReferenceFileError(header_path, f"{target.name} already exists")
    try:
        lines = header_path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ReferenceFileError(header_path, f"not a readable GEIS header: {exc}") from None
    values = {"FILENAME": new_header_name,
              "ROOTNAME": os.path.splitext(new_header_name)[0].upper()}
    out: list[str] = []
    for line in lines:
        key = _key(line)
        if key in values and line[8:10] == "= ":
            out.append(_card(key, values.pop(key), _comment(line)))
        else:
            out.append(line)
    end = next((i for i in range(len(out) - 1, -1, -1) if out[i][:8].rstrip() == "END"),
               len(out))
    history = f"{header_path.name} renamed to {new_header_name} on " \
              f"{_MONTHS[now.month - 1]} {now.day} {now.year}"
    added = [_card(key, value) for key, value in values.items()]  # keys not found
    added += [f"HISTORY {part}".ljust(80) for part in textwrap.wrap(history, 72)]
    out[end:end] = added
    created: list[Path] = []
    try:
        output.mkdir(parents=True, exist_ok=True)
        with open(new_header, "x", encoding="ascii") as handle:
            created.append(new_header)
            handle.write("".join(line + "\n" for line in out))
        with open(data_path, "rb") as source, open(new_data, "xb") as target:
            created.append(new_data)
            shutil.copyfileobj(source, target)
    except OSError as exc:
        for path in created:  # only what this call made: never a file someone else wrote
            path.unlink(missing_ok=True)
        raise ReferenceFileError(header_path, f"cannot rename to {new_header_name}: "
                                              f"{exc.strerror or exc}") from None
    return new_header, new_data
