"""Loading one mapping file as CRDS does: parse, check the header, verify the sha1sum.

`load_mapping` accepts or refuses a single mapping (children are not loaded) exactly where
CRDS's `load_mapping` does on the corpus, in the same order:

1. the text parses as a safe mapping (`parse.parse_mapping`);
2. a selector call can be built: the header has a `parkey`, with one tuple of parameter
   names per level of selector nesting;
3. the header has the keys CRDS requires for the kind of mapping (`MissingHeaderKeyError`);
4. for an rmap: the selector is a call (not a dict), the relevance / omit expressions of
   the header are well-formed and safe (`rmap_relevance`, `rmap_omit`, `parkey_relevance`);
5. the stored sha1sum matches the text (`ChecksumError`), unless `ignore_checksum`.

Every error is a `MappingError`; its `crds_class` names the exception CRDS raises for the
same file (`MappingError`, `MissingHeaderKeyError`, `SyntaxError`, `ChecksumError`, ...).
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field
from pathlib import Path

from crds_events.rules import canonical
from crds_events.rules.checksum import (
    mapping_checksum,
    read_mapping_text,
    stored_checksum,
    verify_checksum,
)
from crds_events.rules.naming import MAPPING_KINDS
from crds_events.rules.parse import (
    Call,
    MappingFormatError,
    ParsedMapping,
    parse_mapping,
)

__all__ = [
    "REQUIRED_HEADER_KEYS",
    "MappingDocument",
    "MissingHeaderKeyError",
    "check_expression",
    "header_value",
    "load_mapping",
    "load_mapping_text",
]

_BASE_KEYS = ("mapping", "parkey", "name", "derived_from")

#: Header keys CRDS requires, in the order it checks them, per kind of mapping.
REQUIRED_HEADER_KEYS = {
    "pipeline": (*_BASE_KEYS, "observatory"),
    "instrument": (*_BASE_KEYS, "observatory", "instrument"),
    "reference": (*_BASE_KEYS, "observatory", "instrument", "filekind"),
}


class MissingHeaderKeyError(MappingFormatError):
    """A header key CRDS requires for this kind of mapping is missing."""

    crds_class = "MissingHeaderKeyError"


def header_value(header: dict, key: str, default: object = None) -> object:
    """A header value as CRDS reads it: strings lower-cased, except "(...)" expressions."""
    value = header.get(key, default)
    if isinstance(value, str) and not (value.startswith("(") and value.endswith(")")):
        return value.lower()
    return value


@dataclass(frozen=True)
class MappingDocument:
    """One loaded mapping file: its parsed form plus what loading established."""

    parsed: ParsedMapping
    kind: str  # 'pipeline', 'instrument' or 'reference'
    path: Path | None = None
    computed_sha1: str = field(default="", compare=False)

    @property
    def name(self) -> str:
        """The file's base name (what CRDS calls the mapping's basename)."""
        return os.path.basename(self.parsed.filename)

    @property
    def header(self) -> dict:
        return self.parsed.header

    @property
    def selector(self) -> Call:
        return self.parsed.selector

    @property
    def comment(self) -> str | None:
        return self.parsed.comment

    @property
    def text(self) -> str:
        return self.parsed.text

    def get(self, key: str, default: object = None) -> object:
        """A header value as CRDS reads it (lower-cased strings, see `header_value`)."""
        return header_value(self.parsed.header, key, default)

    @property
    def observatory(self) -> str | None:
        return self.get("observatory")

    @property
    def instrument(self) -> str | None:
        return self.get("instrument")

    @property
    def filekind(self) -> str | None:
        return self.get("filekind")

    @property
    def parkey(self) -> tuple:
        return tuple(self.parsed.header.get("parkey", ()))

    @property
    def stored_sha1(self) -> str | None:
        return stored_checksum(self.parsed.header)

    @property
    def checksum_ok(self) -> bool:
        return self.stored_sha1 == self.computed_sha1

    def format(self) -> str:
        """CRDS's canonical text of this mapping (sha1sum as stored)."""
        return canonical.format_mapping(self.parsed)

    def rewritten_text(self) -> str:
        """What `crds checksum` / Mapping.write() writes: canonical text, fresh sha1sum."""
        return canonical.rewrite_text(self.parsed)


def _looks_like_path(source: str | os.PathLike) -> bool:
    if isinstance(source, os.PathLike):
        return True
    return "\n" not in source and "=" not in source


def load_mapping(
    source: str | os.PathLike, ignore_checksum: bool = False, name: str | None = None
) -> MappingDocument:
    """Load a mapping from a path, or from its text (anything holding a newline or '=').

    `name` overrides the name used in messages and for the kind (default: the path as
    given, or '(noname)' for text).
    """
    if _looks_like_path(source):
        path = Path(source)
        text = read_mapping_text(path)
        return load_mapping_text(text, name or os.fspath(source), ignore_checksum, path=path)
    return load_mapping_text(str(source), name or "(noname)", ignore_checksum)


def load_mapping_text(
    text: str,
    name: str = "(noname)",
    ignore_checksum: bool = False,
    path: Path | None = None,
    generic: bool = False,
) -> MappingDocument:
    """Load mapping `text` named `name` (a path or a basename; used in messages).

    `generic` checks only what CRDS checks loading any Mapping (as `crds checksum` does):
    the selector's shape and the four header keys every mapping has, not the keys and
    expressions of its kind.
    """
    parsed = parse_mapping(text, name)
    _check_selector_shape(parsed)
    kind = _mapping_kind(parsed)
    for key in _BASE_KEYS if generic else REQUIRED_HEADER_KEYS[kind]:
        if key not in parsed.header:
            raise MissingHeaderKeyError(
                f"Required header key {key!r} is missing.", filename=name,
                construct=f"header {key!r}",
            )
    if kind == "reference" and not generic:
        _check_reference_header(parsed)
    computed = mapping_checksum(text)
    if not ignore_checksum:
        verify_checksum(text, parsed.header, os.path.basename(name), computed)
    return MappingDocument(parsed=parsed, kind=kind, path=path, computed_sha1=computed)


def _mapping_kind(parsed: ParsedMapping) -> str:
    """The kind from the extension, else (an ad hoc name) from the `mapping` header."""
    ext = os.path.splitext(parsed.filename)[1]
    if ext in MAPPING_KINDS:
        return MAPPING_KINDS[ext]
    for key in REQUIRED_HEADER_KEYS["pipeline"][:4]:  # what a generic Mapping requires
        if key not in parsed.header:
            raise MissingHeaderKeyError(
                f"Required header key {key!r} is missing.", filename=parsed.filename,
                construct=f"header {key!r}",
            )
    kind = header_value(parsed.header, "mapping")
    if kind not in REQUIRED_HEADER_KEYS:
        raise MappingFormatError(
            f"Unknown mapping type for {parsed.filename!r}: mapping={kind!r}",
            filename=parsed.filename, construct="header 'mapping'", crds_class="ValueError",
        )
    return kind


def _check_selector_shape(parsed: ParsedMapping) -> None:
    """A selector call needs one tuple of `parkey` names per level of nesting (as CRDS
    instantiates selectors; a dict selector needs none)."""
    if parsed.selector.name == "dict":
        return
    where = parsed.filename
    if "parkey" not in parsed.header:
        raise MappingFormatError(
            "header key 'parkey' is missing (the selector needs it)", filename=where,
            construct="header 'parkey'",
        )
    parkey = parsed.header["parkey"]
    stack: list[tuple[Call, int]] = [(parsed.selector, 0)]
    while stack:
        call, depth = stack.pop()
        if not isinstance(parkey, (tuple, list)) or depth >= len(parkey):
            raise MappingFormatError(
                f"{call.name} is selector level {depth + 1} but 'parkey' has "
                f"{len(parkey) if isinstance(parkey, (tuple, list)) else 'no'} levels",
                filename=where, line=call.lineno, construct=f"call of {call.name!r}",
            )
        if not isinstance(parkey[depth], (tuple, list)):
            raise MappingFormatError(
                f"parkey level {depth + 1} must be a tuple of header keys, not "
                f"{parkey[depth]!r}", filename=where, line=call.lineno,
                construct="header 'parkey'",
            )
        stack.extend((value, depth + 1) for _, value in call.entries if isinstance(value, Call))


def _required_parkeys(header: dict) -> list[str]:
    keys: list[str] = []
    for key in header.get("parkey", ()):
        if isinstance(key, (tuple, list)):
            keys.extend(k for k in key if isinstance(k, str))
        elif isinstance(key, str):
            keys.append(key)
    switch = header.get("reffile_switch", "NONE")
    if isinstance(switch, str) and switch.upper() != "NONE":
        keys.append(switch)
    keys.extend(k for k in header.get("extra_keys", ()) if isinstance(k, str))
    return keys


def _check_reference_header(parsed: ParsedMapping) -> None:
    where = parsed.filename
    header = parsed.header
    if parsed.selector.name == "dict":
        raise MappingFormatError(
            "an rmap's selector must be a selector call such as Match({...}), not a dict",
            filename=where, line=parsed.selector.lineno, construct="selector",
            crds_class="AttributeError",
        )
    for key in ("reffile_switch", "reffile_format", "reffile_required"):
        if key in header and not isinstance(header[key], str):
            raise MappingFormatError(f"must be a string, not {header[key]!r}", filename=where,
                                     construct=f"header {key!r}", crds_class="AttributeError")
    parkeys = _required_parkeys(header)
    expressions: list[tuple[str, object]] = [
        ("rmap_relevance", header_value(header, "rmap_relevance", "always")),
        ("rmap_omit", header_value(header, "rmap_omit", "False")),
    ]
    relevance = header.get("parkey_relevance", {})
    if not isinstance(relevance, dict):
        raise MappingFormatError("must be a dict of parameter: expression",
                                 filename=where, construct="header 'parkey_relevance'",
                                 crds_class="TypeError")
    expressions += [(f"parkey_relevance[{k!r}]", v) for k, v in relevance.items()]
    for what, expr in expressions:
        if not isinstance(expr, str):
            raise MappingFormatError(f"must be a string expression, not {expr!r}",
                                     filename=where, construct=f"header {what}",
                                     crds_class="AttributeError")
        if what == "rmap_relevance":
            expr = expr.replace("always", "True")
        check_expression(expr, parkeys, where, what)


_EXPRESSION_NODES = (
    ast.Expression, ast.Name, ast.Load, ast.Constant, ast.Tuple, ast.List,
    ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn,
    ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.IfExp,
)


def check_expression(
    expr: str, parkeys: list[str] | tuple[str, ...] = (), filename: str = "<string>",
    what: str = "expression",
) -> ast.Expression:
    """Parse a header relevance/omit expression safely, as CRDS screens it.

    Dotted parameter names among `parkeys` (`META.INSTRUMENT.NAME`) become underscored
    names first, as CRDS rewrites them. Only names, constants, tuples/lists, comparisons,
    `and`/`or`/`not`, unary minus and `x if c else y` are allowed. Returns the checked tree.
    """
    for key in sorted({k for k in parkeys if "." in k}, key=len, reverse=True):
        expr = expr.replace(key, key.replace(".", "_"))
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        # CRDS lets Python's SyntaxError through for header expressions.
        raise MappingFormatError(
            f"{exc.msg} in {expr!r}", filename=filename, construct=f"header {what}",
            crds_class="SyntaxError",
        ) from None
    except (ValueError, MemoryError, RecursionError) as exc:
        raise MappingFormatError(f"cannot parse {expr!r}: {type(exc).__name__}",
                                 filename=filename, construct=f"header {what}") from None
    for node in ast.walk(tree):
        if not isinstance(node, _EXPRESSION_NODES) or (
            isinstance(node, ast.Constant) and not isinstance(node.value, (str, int, float))
            and node.value is not None
        ):
            raise MappingFormatError(
                f"{type(node).__name__} is not allowed in {expr!r}", filename=filename,
                construct=f"header {what}", crds_class="MappingFormatError",
            )
    return tree
