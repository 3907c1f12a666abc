"""Shapes and types of a reference's arrays, read from headers without loading data.

Constraints such as "SCI is a 3-D float cube" need the shape and dtype of an HDU, not its
pixels: for FITS both follow from NAXISn/BITPIX/BZERO/BSCALE (images) or TFORMn (tables),
so a multi-gigabyte DARK is checked from its headers. The pixels are read (memory-mapped)
only when a constraint needs them (``ArrayInfo.load_data``), e.g. an IPC kernel sum.

Array names follow CRDS: an HDU is found by EXTNAME (``SCI``), ``NAME__2`` for EXTVER 2, or
``EXT3``/``EXTENSION3``/``3`` for an index. In constraint expressions the array is called
``SCI_ARRAY`` (``ARRAY_3`` for a number), with attributes SHAPE, KIND (IMAGE/TABLE),
DATA_TYPE (dtype name, or {COLUMN: dtype} for tables), COLUMN_NAMES, DATA.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crds_events.files.errors import ReferenceFileError
from crds_events.files.formats import detect_format
from crds_events.files.safeyaml import check_asdf_tree

_BITPIX = {8: "uint8", 16: "int16", 32: "int32", 64: "int64", -32: "float32", -64: "float64"}
# Signed/unsigned FITS conventions: BZERO offsets that make an integer column unsigned.
_UNSIGNED = {(16, 32768): "uint16", (32, 2**31): "uint32", (64, 2**63): "uint64", (8, -128): "int8"}


@dataclass
class ArrayInfo:
    """What a constraint may ask about one array (attribute names as in .tpn expressions)."""

    NAME: str
    KIND: str  # IMAGE, TABLE or UNKNOWN
    SHAPE: tuple[int, ...]
    DATA_TYPE: Any  # dtype name (images) or {COLUMN: dtype str} (tables)
    COLUMN_NAMES: list[str] | None = None
    EXTENSION: int | None = None
    path: str = field(default="", repr=False)
    _data: Any = field(default=None, repr=False)

    @property
    def DATA(self) -> Any:  # noqa: N802 - the name .tpn expressions use
        """The array's values (loaded on first use, memory-mapped for FITS)."""
        if self._data is None:
            self._data = self.load_data()
        return self._data

    def load_data(self) -> Any:
        if self.EXTENSION is None:
            raise ReferenceFileError(self.path, "array data not available", self.NAME)
        from astropy.io import fits

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with fits.open(self.path, memmap=False, lazy_load_hdus=True) as hdus:
                    return np.array(hdus[self.EXTENSION].data)
        except Exception as exc:
            raise ReferenceFileError(self.path, f"cannot read array data: {exc}", self.NAME) from exc


def array_variable_name(name: str | int) -> str:
    """The name an array goes by in expressions: ``SCI`` -> ``SCI_ARRAY``, ``1`` -> ``ARRAY_1``."""
    text = str(name)
    return f"ARRAY_{text}" if re.match(r"\d+", text) else f"{text.upper()}_ARRAY"


def read_array_info(path: str | os.PathLike, name: str) -> ArrayInfo | None:
    """The ArrayInfo of array `name` in the reference at `path`, or None if it has none.

    Raises ReferenceFileError if the file cannot be read at all.
    """
    path = os.fspath(path)
    fmt = detect_format(path)
    if fmt == "fits":
        return _fits_array(path, name)
    if fmt == "asdf":
        return _asdf_array(path, name)
    return None


def _fits_array(path: str, name: str) -> ArrayInfo | None:
    from astropy.io import fits

    name = str(name).upper()
    index_match = re.fullmatch(r"(?:EXT(?:ENSION)?)?(\d+)", name)
    ver_match = re.fullmatch(r"(.*)__(\d+)", name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=True, lazy_load_hdus=True) as hdus:
                for index, hdu in enumerate(hdus):
                    if index_match:
                        found = index == int(index_match.group(1))
                    elif ver_match:
                        found = hdu.name == ver_match.group(1) and hdu.ver == int(ver_match.group(2))
                    else:
                        found = hdu.name == name
                    if found:
                        return _describe_hdu(path, name, index, hdu)
    except ReferenceFileError:
        raise
    except Exception as exc:
        raise ReferenceFileError(path, f"not a readable FITS file: {exc}") from exc
    return None


def _describe_hdu(path: str, name: str, index: int, hdu: Any) -> ArrayInfo:
    header = hdu.header
    naxis = int(header.get("NAXIS", 0))
    shape = tuple(int(header.get(f"NAXIS{i}", 0)) for i in range(naxis, 0, -1))
    xtension = str(header.get("XTENSION", "")).strip().upper()
    if xtension in ("BINTABLE", "TABLE"):
        dtype = hdu.columns.dtype  # parsed from TFORMn; the rows are not read
        types = {col.upper(): str(dtype.fields[col][0]) for col in dtype.names}
        return ArrayInfo(name, "TABLE", (int(header.get("NAXIS2", 0)),), types,
                         [col.upper() for col in dtype.names], index, path)
    bitpix = int(header.get("BITPIX", 8))
    bzero, bscale = header.get("BZERO", 0), header.get("BSCALE", 1)
    dtype_name = _BITPIX.get(bitpix, "unknown")
    if (bzero, bscale) != (0, 1):
        dtype_name = _UNSIGNED.get((bitpix, bzero)) if bscale == 1 else None
        if dtype_name is None:
            dtype_name = "float32" if bitpix in (8, 16) else "float64"
    kind = "IMAGE" if xtension in ("IMAGE", "") else "UNKNOWN"
    return ArrayInfo(name, kind, shape, dtype_name, None, index, path)


def _asdf_array(path: str, name: str) -> ArrayInfo | None:
    import asdf

    parts = [part.lower() for part in str(name).split(".")]
    try:
        check_asdf_tree(path)  # before asdf builds (and expands) the tree
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with asdf.open(path, lazy_load=True, memmap=False) as handle:
                node: Any = handle.tree
                for part in parts:
                    if not hasattr(node, "get"):
                        return None
                    node = node.get(part, node.get(part.upper()))
                    if node is None:
                        return None
                if hasattr(node, "shape") and hasattr(node, "dtype"):
                    return ArrayInfo(str(name).upper(), "IMAGE", tuple(node.shape),
                                     str(np.dtype(node.dtype).name), None, None, path,
                                     _data=np.asarray(node))
    except ReferenceFileError:
        raise
    except Exception as exc:
        raise ReferenceFileError(path, f"not a readable ASDF file: {exc}") from exc
    return None
