"""Safe parsing of CRDS mapping text (.pmap, .imap, .rmap) without executing it.

A CRDS mapping is Python source: `header = {...}`, an optional `comment = "..."` and
`selector = Match({...})` (or a plain dict for contexts). CRDS itself `exec`s that text after
screening its syntax tree; we never execute it. The text is parsed with `ast` and converted
by a whitelist: string, number, bool and None constants, tuples, lists, dicts, a unary minus
on a number, and calls of the seven selector names with one dict argument. Everything else
(imports, attribute access, other calls, names, operators, lambdas, comprehensions, f-strings,
...) is a `MappingFormatError` naming the file, the line and the construct.

Selector entries are kept exactly as written, in file order and with duplicate keys, so
certify can report duplicates; `Call.as_dict()` gives the dict CRDS loads (the last value of
a repeated key wins, at the position of its first occurrence, as a Python dict literal
builds it) and warns about the keys it dropped.

Text in the literal subset CRDS writes goes through the faster tokenizer of
`crds_events.rules.fastparse` first; whatever it does not take, this ast path decides.
"""

from __future__ import annotations

import ast
import math
import warnings

from crds_events.rules.fastparse import fast_parse
from crds_events.rules.parsed import (
    SELECTOR_NAMES,
    TOP_LEVEL_NAMES,
    Call,
    ChecksumError,
    DuplicateKeyWarning,
    MappingError,
    MappingFormatError,
    ParsedMapping,
    UnsafeNameError,
    check_named_files,
    crds_test_data_names,
    crds_test_data_names_allowed,
    duplicate_keys,
)

# The model and the errors live in crds_events.rules.parsed; they are re-exported here, where
# most callers import them from along with parse_mapping.
__all__ = [
    "MAX_MAPPING_CHARS",
    "MAX_NESTING",
    "SELECTOR_NAMES",
    "Call",
    "ChecksumError",
    "DuplicateKeyWarning",
    "MappingError",
    "MappingFormatError",
    "ParsedMapping",
    "UnsafeNameError",
    "crds_test_data_names",
    "duplicate_keys",
    "parse_mapping",
]

#: Larger text is refused before parsing (the largest real rmaps are a few MB).
MAX_MAPPING_CHARS = 64 * 1024 * 1024

#: Containers (tuples, lists, dicts, selector calls) nested deeper than this are refused.
#: Real mappings nest at most 5 deep (Match > UseAfter > tuple); Python's own parser refuses
#: 200 levels of brackets, this keeps our converter far away from the recursion limit.
MAX_NESTING = 50


# ----------------------------------------------------------------------------- parsing


_CONSTRUCTS = {
    ast.Import: "import statement",
    ast.ImportFrom: "import statement",
    ast.Attribute: "attribute access",
    ast.Lambda: "lambda",
    ast.ListComp: "comprehension",
    ast.SetComp: "comprehension",
    ast.DictComp: "comprehension",
    ast.GeneratorExp: "generator expression",
    ast.JoinedStr: "f-string",
    ast.FormattedValue: "f-string",
    ast.Subscript: "subscript",
    ast.Starred: "starred expression",
    ast.NamedExpr: "assignment expression",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.BinOp: "operator expression",
    ast.BoolOp: "boolean expression",
    ast.Compare: "comparison",
    ast.IfExp: "conditional expression",
    ast.Set: "set literal",
    ast.Slice: "slice",
    ast.FunctionDef: "function definition",
    ast.AsyncFunctionDef: "function definition",
    ast.ClassDef: "class definition",
    ast.Delete: "del statement",
    ast.AugAssign: "augmented assignment",
    ast.AnnAssign: "annotated assignment",
    ast.For: "for loop",
    ast.AsyncFor: "for loop",
    ast.While: "while loop",
    ast.If: "if statement",
    ast.With: "with statement",
    ast.AsyncWith: "with statement",
    ast.Raise: "raise statement",
    ast.Try: "try statement",
    ast.Assert: "assert statement",
    ast.Global: "global statement",
    ast.Nonlocal: "nonlocal statement",
    ast.Pass: "pass statement",
    ast.Break: "break statement",
    ast.Continue: "continue statement",
    ast.Return: "return statement",
    ast.Match: "match statement",
}


def _construct(node: ast.AST) -> str:
    """A reader's name for the construct `node` stands for."""
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name):
            return f"call of {func.id!r}"
        return f"call of {_construct(func)}"
    if isinstance(node, ast.Name):
        return f"name {node.id!r}"
    if isinstance(node, ast.UnaryOp):
        return f"unary {type(node.op).__name__}"
    if isinstance(node, ast.Constant):
        return f"{type(node.value).__name__} constant"
    if isinstance(node, ast.Expr):
        return f"expression statement ({_construct(node.value)})"
    return _CONSTRUCTS.get(type(node), type(node).__name__)


class _Converter:
    """Turns whitelisted AST nodes into Python values, refusing everything else."""

    def __init__(self, filename: str) -> None:
        self.filename = filename

    def error(self, node: ast.AST | None, reason: str, construct: str | None = None):
        line = getattr(node, "lineno", None)
        if construct is None and node is not None:
            construct = _construct(node)
        return MappingFormatError(reason, filename=self.filename, line=line, construct=construct)

    def value(self, node: ast.AST, depth: int, calls: bool):
        """A literal value; selector calls only where `calls` (inside the selector)."""
        kind = type(node)
        if kind is ast.Constant:
            value = node.value
            vtype = type(value)
            if vtype is str or vtype is int or vtype is bool or value is None:
                return value
            if vtype is float:
                if not math.isfinite(value):
                    raise self.error(node, "non-finite numbers are not allowed")
                return value
            raise self.error(node, "only str, int, float, bool and None constants are allowed")
        if depth >= MAX_NESTING:
            raise self.error(node, f"nested more than {MAX_NESTING} levels deep")
        if kind is ast.Tuple:
            return tuple([self.value(elt, depth + 1, calls) for elt in node.elts])
        if kind is ast.List:
            return [self.value(elt, depth + 1, calls) for elt in node.elts]
        if kind is ast.Dict:
            return dict(self.items(node, depth, calls))
        if kind is ast.UnaryOp:
            operand = node.operand
            if (
                type(node.op) is ast.USub
                and type(operand) is ast.Constant
                and type(operand.value) in (int, float)
            ):
                return -self.value(operand, depth + 1, calls)
            raise self.error(node, "only a minus sign before a number is allowed")
        if kind is ast.Call:
            if not calls:
                raise self.error(node, "selector calls are only allowed in the selector")
            return self.call(node, depth)
        if isinstance(node, (ast.Starred,)):
            raise self.error(node, "unpacking is not allowed")
        raise self.error(node, "not allowed in a mapping (only literals and selector calls)")

    def key(self, node: ast.AST, depth: int):
        key = self.value(node, depth + 1, calls=False)
        if not _hashable(key):
            raise self.error(node, "a dict key must be a string, number or tuple of them",
                             construct="unhashable key")
        return key

    def items(self, node: ast.Dict, depth: int, calls: bool) -> list[tuple[object, object]]:
        items = []
        for key_node, value_node in zip(node.keys, node.values, strict=True):
            if key_node is None:
                raise self.error(value_node, "dict unpacking (**) is not allowed",
                                 construct="dict unpacking")
            items.append((self.key(key_node, depth), self.value(value_node, depth + 1, calls)))
        return items

    def call(self, node: ast.Call, depth: int) -> Call:
        func = node.func
        if type(func) is not ast.Name or func.id not in SELECTOR_NAMES:
            raise self.error(
                node, f"only the selectors {', '.join(sorted(SELECTOR_NAMES))} may be called"
            )
        if node.keywords or len(node.args) != 1 or type(node.args[0]) is not ast.Dict:
            raise self.error(node, f"{func.id} takes exactly one dict literal argument")
        return self.selector_dict(node.args[0], depth + 1, func.id, node.lineno)

    def selector_dict(self, node: ast.Dict, depth: int, name: str, lineno: int) -> Call:
        entries = self.items(node, depth, calls=True)
        lines = tuple(
            (key.lineno if key is not None else node.lineno) for key in node.keys
        )
        return Call(name=name, entries=tuple(entries), lines=lines, lineno=lineno)


def _hashable(value: object) -> bool:
    if isinstance(value, tuple):
        return all(_hashable(item) for item in value)
    return not isinstance(value, (list, dict))


def _header_duplicates(node: ast.Dict) -> tuple[str, ...]:
    seen: set = set()
    dups: list[str] = []
    for key in node.keys:
        if type(key) is ast.Constant and isinstance(key.value, str):
            if key.value in seen and key.value not in dups:
                dups.append(key.value)
            seen.add(key.value)
    return tuple(dups)


def _parse_tree(text: str, filename: str) -> ast.Module:
    try:
        # No real file name: on a syntax error CPython would open that file to quote it.
        # Python's own SyntaxWarnings (e.g. "invalid decimal literal") are noise here: the
        # text is refused or accepted by our rules, never run.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            return ast.parse(text, filename="<mapping>")
    except SyntaxError as exc:
        raise MappingFormatError(
            exc.msg or "invalid syntax", filename=filename, line=exc.lineno,
            construct="syntax error",
        ) from None
    except (MemoryError, RecursionError) as exc:
        # CPython's parser reports a blown C stack (e.g. a million unary minus signs) so.
        raise MappingFormatError(
            f"too deeply nested to parse ({type(exc).__name__})", filename=filename,
            construct="nesting",
        ) from None
    except ValueError as exc:  # e.g. null bytes on older Pythons
        raise MappingFormatError(str(exc), filename=filename, construct="syntax error") from None


def parse_mapping(text: str, filename: str = "<string>", *, fast: bool = True) -> ParsedMapping:
    """Parse CRDS mapping `text` (never executing it); `filename` names it in errors.

    Raises MappingFormatError for anything but `header = {dict}`, optional
    `comment = 'string'` and `selector = Selector({...}) or {dict}` made of literals, and
    UnsafeNameError (a MappingFormatError) when a value names anything but a plain CRDS
    file name (a path, '..', a leading dot; see `check_named_files`).
    `fast=False` skips the fast path for literal-only text (tests compare the two paths).
    """
    parsed, checked = _parse_literals(text, filename, fast)
    if not checked:
        check_named_files(parsed, compat=crds_test_data_names_allowed())
    return parsed


def _parse_literals(text: str, filename: str, fast: bool) -> tuple[ParsedMapping, bool]:
    """The mapping's literal structure, and whether its names are checked (the fast path
    checks them; it gives up on bad ones, so that the ast path names them)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MappingFormatError(
                f"not UTF-8 text ({exc.reason} at byte {exc.start})", filename=filename,
                construct="encoding",
            ) from None
    if not isinstance(text, str):
        raise TypeError(f"mapping text must be str, not {type(text).__name__}")
    if len(text) > MAX_MAPPING_CHARS:
        raise MappingFormatError(
            f"{len(text)} characters is more than the {MAX_MAPPING_CHARS} allowed",
            filename=filename, construct="input size",
        )
    if fast:
        parsed = fast_parse(text, filename)
        if parsed is not None:
            return parsed, True
    tree = _parse_tree(text, filename)
    conv = _Converter(filename)
    sections: dict[str, ast.AST] = {}
    for stmt in tree.body:
        if type(stmt) is ast.Expr and type(stmt.value) is ast.Constant and isinstance(
            stmt.value.value, str
        ):
            continue  # a bare string is a comment (CRDS evaluates and discards it)
        if type(stmt) is not ast.Assign:
            raise conv.error(stmt, "only 'header', 'comment' and 'selector' assignments "
                                   "are allowed at the top level")
        target = stmt.targets[0]
        if len(stmt.targets) != 1 or type(target) is not ast.Name:
            raise conv.error(stmt, "assign one name at a time", construct="assignment")
        if target.id not in TOP_LEVEL_NAMES:
            raise conv.error(stmt, "only 'header', 'comment' and 'selector' may be assigned",
                             construct=f"assignment to {target.id!r}")
        if target.id in sections:
            raise conv.error(stmt, "assigned more than once",
                             construct=f"assignment to {target.id!r}")
        sections[target.id] = stmt.value

    for name in ("header", "selector"):
        if name not in sections:
            raise MappingFormatError(f"no {name!r} assignment", filename=filename,
                                     construct=f"missing {name!r}")
    header_node = sections["header"]
    if type(header_node) is not ast.Dict:
        raise conv.error(header_node, "'header' must be a dict literal")
    header = dict(conv.items(header_node, 0, calls=False))

    selector_node = sections["selector"]
    if type(selector_node) is ast.Dict:
        selector = conv.selector_dict(selector_node, 1, "dict", selector_node.lineno)
    elif type(selector_node) is ast.Call:
        selector = conv.call(selector_node, 0)
    else:
        raise conv.error(selector_node, "'selector' must be a selector call or a dict literal")

    comment = None
    if "comment" in sections:
        node = sections["comment"]
        if type(node) is not ast.Constant or not isinstance(node.value, str):
            raise conv.error(node, "'comment' must be a string literal")
        comment = node.value

    return ParsedMapping(
        filename=filename,
        header=header,
        selector=selector,
        comment=comment,
        text=text,
        header_duplicates=_header_duplicates(header_node),
    ), False
