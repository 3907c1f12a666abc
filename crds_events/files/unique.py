"""Make test reference files unique: set a header keyword to a value no other file has.

A server refuses a file bit-identical to one it already knows (CRDS's sha1 rule), so a test
delivery that sends the same reference again must first make it differ. As the seed's
``crds_unique`` did, `make_unique` writes a fresh UTC timestamp (to the microsecond, and
strictly increasing within a process) into a header keyword, ``CRDSUNIQ`` by default:

- FITS: the primary header's keyword; CHECKSUM/DATASUM are recomputed when the file has
  them (a stale checksum would make certify fail the file);
- ASDF: ``meta.<keyword in lower case>`` of the tree (the datamodels' spelling).

The new file is written beside the original and renamed over it, so a crash (or SIGKILL)
leaves the old file or the new one, never half of either.
"""

from __future__ import annotations

import datetime
import os
import re
import tempfile
import threading
import warnings
from pathlib import Path

from crds_events.files.checksums import has_checksum
from crds_events.files.errors import ReferenceFileError
from crds_events.files.formats import detect_format

__all__ = ["DEFAULT_KEYWORD", "make_unique"]

DEFAULT_KEYWORD = "CRDSUNIQ"
_FITS_KEYWORD = re.compile(r"^[A-Z0-9_-]{1,8}$")
_last = datetime.datetime.min.replace(tzinfo=datetime.UTC)
_lock = threading.Lock()


def _stamp() -> str:
    """A UTC timestamp later than any given before by this process."""
    global _last
    with _lock:
        now = datetime.datetime.now(datetime.UTC)
        if now <= _last:
            now = _last + datetime.timedelta(microseconds=1)
        _last = now
    return now.strftime("%Y-%m-%dT%H:%M:%S.%f")


def make_unique(path: str | os.PathLike, keyword: str = DEFAULT_KEYWORD) -> str:
    """Set `keyword` of the FITS or ASDF reference at `path` to a new unique value (in
    place, atomically); the value. ReferenceFileError names the file and reason."""
    path = Path(path)
    name = path.name
    keyword = keyword.strip().upper()
    if not _FITS_KEYWORD.match(keyword):
        raise ReferenceFileError(name, f"keyword {keyword!r}: 1-8 letters, digits, '_' or "
                                       "'-' (a FITS keyword)", "keyword")
    try:
        fmt = detect_format(str(path))
    except ReferenceFileError:
        raise
    if fmt not in ("fits", "asdf"):
        raise ReferenceFileError(name, f"a {fmt} file: only FITS and ASDF references can be "
                                       "made unique", "format")
    value = _stamp()
    handle, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".uniq", dir=path.parent)
    os.close(handle)
    try:
        if fmt == "fits":
            _write_fits(path, Path(temporary), keyword, value)
        else:
            _write_asdf(path, Path(temporary), keyword, value)
        os.chmod(temporary, path.stat().st_mode & 0o7777)
        os.replace(temporary, path)
    except ReferenceFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - astropy/asdf raise many kinds for bad files
        raise ReferenceFileError(name, f"cannot rewrite: {str(exc).splitlines()[0][:200]}",
                                 keyword) from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return value


def _write_fits(path: Path, target: Path, keyword: str, value: str) -> None:
    from astropy.io import fits

    checksum = has_checksum(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with fits.open(path, memmap=False, lazy_load_hdus=False) as hdus:
            hdus.verify("exception")
            for hdu in hdus:
                _ = hdu.data  # read all now: a short file shows here, not in the copy
            broken = [w for w in caught if any(word in str(w.message).lower() for word in
                                               ("truncated", "corrupted", "extra bytes"))]
            if broken or path.stat().st_size % 2880:
                # astropy would write a "repaired" copy (zero padding, HDUs dropped): a
                # broken file must stay as it is, and say so
                why = str(broken[0].message).splitlines()[0] if broken else \
                    "its size is not a whole number of 2880-byte FITS blocks"
                raise ReferenceFileError(path.name, f"damaged FITS file: {why}")
            hdus[0].header[keyword] = (value, "made unique for a test delivery")
            hdus.writeto(target, overwrite=True, checksum=checksum, output_verify="exception")


def _write_asdf(path: Path, target: Path, keyword: str, value: str) -> None:
    import asdf

    with asdf.open(path, lazy_load=False, memmap=False) as af:
        meta = af.tree.get("meta")
        if meta is None:
            meta = af.tree["meta"] = {}
        if not isinstance(meta, dict):
            raise ReferenceFileError(path.name, "the tree's meta is not a mapping", "meta")
        meta[keyword.lower()] = value
        af.write_to(target)
