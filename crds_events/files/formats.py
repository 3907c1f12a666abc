"""Which reader a reference file needs: by its name first, then by its first bytes.

Uploads arrive under temporary names, so content sniffing matters (CRDS does the same):
``#ASDF`` starts ASDF; ``SIMPLE`` starts FITS, or a GEIS header when the file is text made
of 80-character lines; otherwise JSON or YAML if the text parses as a mapping.
"""

from __future__ import annotations

import json
import os
import re
from typing import Literal

import yaml

from crds_events.files.errors import ReferenceFileError
from crds_events.files.safeyaml import safe_load_limited

Format = Literal["fits", "geis", "asdf", "json", "yaml"]

_GEIS_NAME = re.compile(r"\.r\d[hd]$", re.IGNORECASE)
_BY_EXTENSION: dict[str, Format] = {
    ".fits": "fits",
    ".fit": "fits",
    ".fts": "fits",
    ".asdf": "asdf",
    ".json": "json",
    ".yaml": "yaml",
    ".yml": "yaml",
}
# Content sniffing reads at most this much text for JSON/YAML; references in those formats
# are small parameter files, and a bounded read keeps a mislabelled binary from costing time.
_SNIFF_LIMIT = 8 * 1024 * 1024


def is_geis_data(name: str) -> bool:
    """True for a GEIS data file name (``.r0d`` .. ``.r9d``)."""
    return bool(re.search(r"\.r\dd$", name, re.IGNORECASE))


def geis_header_path(path: str | os.PathLike) -> str:
    """The GEIS header (``.rNh``) that describes `path` (itself when it is the header)."""
    path = os.fspath(path)
    return path[:-1] + ("H" if path[-1].isupper() else "h") if is_geis_data(path) else path


def detect_format(path: str | os.PathLike, original_name: str | None = None) -> Format:
    """Return the format of the reference at `path`.

    `original_name` (the name the file was uploaded as) is consulted before the content.
    Raises ReferenceFileError when the format cannot be recognised.
    """
    path = os.fspath(path)
    name = original_name or os.path.basename(path)
    if _GEIS_NAME.search(name):
        return "geis"
    ext = os.path.splitext(name)[1].lower()
    if ext in _BY_EXTENSION:
        return _BY_EXTENSION[ext]
    return _sniff(path)


def _sniff(path: str) -> Format:
    try:
        with open(path, "rb") as handle:
            head = handle.read(2880)
            if head.startswith(b"#ASDF"):
                return "asdf"
            if head.startswith(b"SIMPLE"):
                first = head[:81]
                if len(first) == 81 and first[80:81] == b"\n":
                    return "geis"
                return "fits"
            handle.seek(0)
            data = handle.read(_SNIFF_LIMIT + 1)
    except OSError as exc:
        raise ReferenceFileError(path, f"cannot read file: {exc.strerror or exc}") from exc
    if len(data) <= _SNIFF_LIMIT:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None:
            try:
                if isinstance(json.loads(text), dict):
                    return "json"
            except ValueError:
                pass
            try:
                if isinstance(safe_load_limited(text), dict):  # bombs refused
                    return "yaml"
            except yaml.YAMLError:
                pass
    raise ReferenceFileError(
        path, "unrecognised reference format (not FITS, GEIS, ASDF, JSON or YAML)"
    )
