"""Checksums of files: the sha1 of a file's bytes (what CRDS catalogs and compares), and
FITS CHECKSUM/DATASUM: add, remove, verify (astropy does the arithmetic).

Rewrites go to a temporary file in the same directory and replace the original atomically,
so a crash never leaves a half-written reference.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import warnings

from crds_events.files.errors import ReferenceFileError

_CHUNK = 1 << 20  # bytes hashed at a time: constant memory for multi-GB references


def sha1_file(path: str | os.PathLike) -> tuple[str, int]:
    """``(sha1 hex, size)`` of a file's bytes, read in chunks."""
    digest = hashlib.sha1()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def has_checksum(path: str | os.PathLike) -> bool:
    """True if any HDU of the FITS file at `path` carries CHECKSUM or DATASUM."""
    from astropy.io import fits

    path = os.fspath(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, lazy_load_hdus=True) as hdus:
                return any("CHECKSUM" in hdu.header or "DATASUM" in hdu.header for hdu in hdus)
    except Exception as exc:
        raise ReferenceFileError(path, f"not a readable FITS file: {exc}") from exc


def verify_checksum(path: str | os.PathLike) -> list[str]:
    """Problems with the FITS checksums of `path` (empty when all present ones verify).

    Each problem names the HDU: ``HDU 1: CHECKSUM does not match``. HDUs without checksums
    are not problems; use has_checksum() to require them.
    """
    from astropy.io import fits

    path = os.fspath(path)
    problems: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path, checksum=True, do_not_scale_image_data=True) as hdus:
                for hdu in hdus:
                    _ = hdu.header  # forces every HDU (and its checksum check) to load
    except Exception as exc:
        raise ReferenceFileError(path, f"cannot verify checksums: {exc}") from exc
    for warning in caught:
        text = str(warning.message)
        lowered = text.lower()
        if "checksum" in lowered or "datasum" in lowered:
            # astropy: "Checksum verification failed for HDU ('', 1)."
            what = "DATASUM" if "datasum" in lowered else "CHECKSUM"
            found = re.search(r"HDU\s*(\([^)]*\)|\S+)", text)
            hdu = found.group(1) if found else "?"
            problems.append(f"HDU {hdu}: {what} does not match the data")
    return problems


def add_checksum(path: str | os.PathLike) -> None:
    """Add (or refresh) CHECKSUM and DATASUM in every HDU of the FITS file at `path`."""
    _rewrite(path, checksum=True)


def remove_checksum(path: str | os.PathLike) -> None:
    """Remove CHECKSUM and DATASUM from every HDU of the FITS file at `path`."""
    _rewrite(path, checksum=False)


def _rewrite(path: str | os.PathLike, checksum: bool) -> None:
    from astropy.io import fits

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    handle, temp = tempfile.mkstemp(suffix=".fits", dir=directory)
    os.close(handle)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, do_not_scale_image_data=True) as hdus:
                for hdu in hdus:
                    hdu.header.remove("CHECKSUM", ignore_missing=True)
                    hdu.header.remove("DATASUM", ignore_missing=True)
                hdus.writeto(temp, overwrite=True, checksum=checksum, output_verify="silentfix")
        os.replace(temp, path)
    except Exception as exc:
        if os.path.exists(temp):
            os.remove(temp)
        raise ReferenceFileError(path, f"cannot rewrite checksums: {exc}") from exc


def checksum_reference(path: str | os.PathLike, verify: bool) -> str:
    """``crds checksum`` for a FITS reference: add (or refresh) CHECKSUM/DATASUM, or verify.

    Returns the line to print (``<path>: OK``, ``<path>: CHECKSUM/DATASUM added``). Raises
    ReferenceFileError naming the file and the reason when verification fails (no
    checksums, or a mismatch) or the file is not readable FITS.
    """
    path = os.fspath(path)
    if not verify:
        add_checksum(path)
        return f"{path}: CHECKSUM/DATASUM added"
    if not has_checksum(path):
        raise ReferenceFileError(path, "no CHECKSUM/DATASUM keywords to verify", "CHECKSUM")
    problems = verify_checksum(path)
    if problems:
        raise ReferenceFileError(path, "; ".join(problems), "CHECKSUM")
    return f"{path}: OK"
