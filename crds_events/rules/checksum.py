"""The CRDS mapping checksum: SHA-1 of the UTF-8 text without the lines naming `sha1sum`.

CRDS writes the checksum into the mapping's own header (`'sha1sum' : '<hex>'`), so the rule
skips every line that contains the word `sha1sum` - which is why the header line can hold
the sum it is part of. Lines are split the way `str.splitlines(keepends=True)` splits them,
and the text is what Python's text mode reads (universal newlines), as in CRDS.
"""

from __future__ import annotations

import ast
import hashlib
import re
from pathlib import Path

from crds_events.rules.parse import ChecksumError, MappingFormatError

__all__ = [
    "checksum_text",
    "mapping_checksum",
    "read_mapping_text",
    "stored_checksum",
    "verify_checksum",
    "with_checksum",
]


def checksum_text(text: str) -> str:
    """The text the checksum covers: `text` minus every line containing 'sha1sum'."""
    return "".join(line for line in text.splitlines(True) if "sha1sum" not in line)


def mapping_checksum(text: str) -> str:
    """The CRDS sha1sum of mapping `text` (hex digest)."""
    return hashlib.sha1(checksum_text(text).encode("utf-8")).hexdigest()


def read_mapping_text(path: str | Path) -> str:
    """Read a mapping as CRDS does: UTF-8 text with universal newlines."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except UnicodeDecodeError as exc:
        raise MappingFormatError(
            f"not UTF-8 text ({exc.reason} at byte {exc.start})",
            filename=str(path), construct="encoding",
        ) from None


def stored_checksum(header: dict) -> str | None:
    """The sha1sum a header records, as CRDS compares it (lower case), or None."""
    value = header.get("sha1sum")
    if value is None:
        return None
    # CRDS reads header strings through a lower-casing dict (except "(...)" expressions).
    if isinstance(value, str) and not (value.startswith("(") and value.endswith(")")):
        return value.lower()
    return value


def verify_checksum(text: str, header: dict, name: str, computed: str | None = None) -> None:
    """Raise ChecksumError (with CRDS's messages) unless `header` holds the sum of `text`
    (`computed`, when the caller has it already)."""
    old = stored_checksum(header)
    if old is None:
        raise ChecksumError(f"sha1sum is missing in {name!r}")
    if (computed or mapping_checksum(text)) != old:
        raise ChecksumError(f"sha1sum mismatch in {name!r}")


_SHA1SUM_VALUE = re.compile(r"""(['"])sha1sum\1(\s*:\s*)(['"])[^'"\n]*\3""")


def with_checksum(text: str, filename: str = "<string>") -> str:
    """`text` with its header's sha1sum set to the checksum of `text`; nothing else moves.

    Replaces the value where a one-line `'sha1sum' : '...'` entry exists; otherwise adds
    `    'sha1sum' : '<hex>',` as the header's last entry (before the closing brace, which is
    put on a line of its own if it shares one). The result verifies.
    """
    lines = text.splitlines(True)
    hits = [i for i, line in enumerate(lines) if _SHA1SUM_VALUE.search(line)]
    if len(hits) == 1:
        new = mapping_checksum(text)
        i = hits[0]
        lines[i] = _SHA1SUM_VALUE.sub(lambda m: f"{m[1]}sha1sum{m[1]}{m[2]}'{new}'", lines[i], 1)
        return "".join(lines)
    if hits:
        raise MappingFormatError("more than one sha1sum entry", filename=filename,
                                 line=hits[1] + 1, construct="sha1sum")
    header = _header_dict_node(text, filename)
    offsets = _line_offsets(lines)

    def offset(lineno: int, col: int) -> int:  # ast columns count UTF-8 bytes
        line = lines[lineno - 1]
        return offsets[lineno - 1] + len(line.encode("utf-8")[:col].decode("utf-8", "ignore"))

    brace = offset(header.end_lineno, header.end_col_offset - 1)
    insert_at_brace = "\n    'sha1sum' : '',\n"
    line_start = offsets[header.end_lineno - 1]
    if text[line_start:brace].strip() == "":
        brace, insert_at_brace = line_start, "    'sha1sum' : '',\n"
    pieces = [text[:brace], insert_at_brace, text[brace:]]
    if header.values:
        last = header.values[-1]
        last_end = offset(last.end_lineno, last.end_col_offset)
        if "," not in text[last_end:brace]:
            pieces[0] = text[:last_end] + "," + text[last_end:brace]
    return with_checksum("".join(pieces), filename)


def _line_offsets(lines: list[str]) -> list[int]:
    offsets, total = [], 0
    for line in lines:
        offsets.append(total)
        total += len(line)
    return offsets


def _header_dict_node(text: str, filename: str) -> ast.Dict:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        raise MappingFormatError(f"cannot parse: {exc}", filename=filename,
                                 construct="syntax error") from None
    for stmt in tree.body:
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and stmt.targets[0].id == "header"
            and isinstance(stmt.value, ast.Dict)
        ):
            return stmt.value
    raise MappingFormatError("no 'header' dict to hold the sha1sum", filename=filename,
                             construct="missing 'header'")
