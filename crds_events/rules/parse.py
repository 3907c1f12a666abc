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
"""

from __future__ import annotations

import ast
import math
import re
import warnings
from dataclasses import dataclass, field

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
    "duplicate_keys",
    "parse_mapping",
]

#: The selector names a mapping may call (crds.core.selectors.SELECTORS).
SELECTOR_NAMES = frozenset(
    {
        "Match",
        "UseAfter",
        "VersionAfter",
        "SelectVersion",
        "ClosestTime",
        "GeometricallyNearest",
        "Bracket",
    }
)

#: Larger text is refused before parsing (the largest real rmaps are a few MB).
MAX_MAPPING_CHARS = 64 * 1024 * 1024

#: Containers (tuples, lists, dicts, selector calls) nested deeper than this are refused.
#: Real mappings nest at most 5 deep (Match > UseAfter > tuple); Python's own parser refuses
#: 200 levels of brackets, this keeps our converter far away from the recursion limit.
MAX_NESTING = 50

_TOP_LEVEL_NAMES = ("header", "comment", "selector")


# ----------------------------------------------------------------------------- errors


class MappingError(Exception):
    """Base class of every error about a mapping file.

    `crds_class` is the name of the exception class CRDS raises for the same problem when it
    loads a mapping (tests compare it to the oracle's recorded `load_error`).
    """

    crds_class = "MappingError"


class MappingFormatError(MappingError):
    """The mapping text is not a well-formed, safe CRDS mapping.

    The message names the file, the line and the construct; they are also attributes.
    """

    def __init__(
        self,
        reason: str,
        *,
        filename: str = "<string>",
        line: int | None = None,
        construct: str | None = None,
        crds_class: str | None = None,
    ) -> None:
        self.reason = reason
        self.filename = filename
        self.line = line
        self.construct = construct
        if crds_class is not None:
            self.crds_class = crds_class
        where = filename if line is None else f"{filename}, line {line}"
        what = f"{construct}: " if construct else ""
        super().__init__(f"{where}: {what}{reason}")


class ChecksumError(MappingError):
    """The mapping's `sha1sum` header is missing or does not match its text."""

    crds_class = "ChecksumError"


class DuplicateKeyWarning(UserWarning):
    """A dict or selector in a mapping repeats a key; the last value wins, as in CRDS."""


# ----------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Call:
    """A selector as written: Match({...}), UseAfter({...}), ... or a plain dict literal (name='dict')."""

    name: str
    entries: tuple[tuple[object, object], ...]
    # Line of each entry's key, parallel to `entries`; not part of equality.
    lines: tuple[int, ...] = field(default=(), compare=False, repr=False)
    lineno: int | None = field(default=None, compare=False, repr=False)
    # True where every value is known to be a string (the parser read a string block):
    # lets builders skip looking at the values one by one. Never part of equality.
    strings_only: bool = field(default=False, compare=False, repr=False)

    def keys(self) -> list[object]:
        return [key for key, _ in self.entries]

    def as_dict(self, filename: str | None = None) -> dict:
        """The entries as CRDS loads them: the last value of a repeated key wins (warning)."""
        result: dict = {}
        for key, value in self.entries:
            result[key] = value
        if len(result) != len(self.entries):
            where = f" in {filename!r}" if filename else ""
            for key, lines in duplicate_keys(self).items():
                warnings.warn(
                    f"duplicate key {key!r} in {self.name}{where} at lines "
                    f"{', '.join(map(str, lines))}; the last one wins",
                    DuplicateKeyWarning,
                    stacklevel=2,
                )
        return result

    def walk(self):
        """Yield this call and every Call nested in its values, depth first."""
        stack = [self]
        while stack:
            call = stack.pop()
            yield call
            stack.extend(reversed([v for _, v in call.entries if isinstance(v, Call)]))


def duplicate_keys(call: Call) -> dict[object, list[int]]:
    """Keys of `call` (not of nested calls) written more than once -> lines of each use.

    Keys compare as Python dict keys do (so 1 and 1.0 are the same key), which is what makes
    CRDS silently drop all but the last. Lines are 0 where the call was built without them.
    """
    seen: dict[object, list[int]] = {}
    for index, (key, _) in enumerate(call.entries):
        line = call.lines[index] if index < len(call.lines) else 0
        seen.setdefault(key, []).append(line)
    return {key: lines for key, lines in seen.items() if len(lines) > 1}


@dataclass(frozen=True)
class ParsedMapping:
    filename: str
    header: dict = field(hash=False)
    selector: Call
    comment: str | None
    text: str = field(default="", compare=False, repr=False)
    # Header keys written more than once (CRDS keeps the last); for certify.
    header_duplicates: tuple[str, ...] = field(default=(), compare=False, repr=False)


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
    `comment = 'string'` and `selector = Selector({...}) or {dict}` made of literals.
    `fast=False` skips the fast path for literal-only text (tests compare the two paths).
    """
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
        parsed = _fast_parse(text, filename)
        if parsed is not None:
            return parsed
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
        if target.id not in _TOP_LEVEL_NAMES:
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
    )


# ----------------------------------------------------------------------------- fast path
#
# ast.parse builds a Python object per node; for big rmaps (tens of thousands of entries)
# that is most of the load time. Mappings as CRDS writes them use a tiny subset of Python,
# so a regex tokenizer and a recursive descent over exactly that subset read them several
# times faster. It is deliberately conservative: anything it does not fully understand
# (escapes in strings, string prefixes, line continuations, unusual whitespace, odd
# numbers, any error at all) makes it give up, and the ast path above decides - with its
# exact error messages. Tests assert that both paths give equal results.

# One token per match, leading blanks skipped; comments are dropped afterwards. A string
# with a backslash never gets here (the text is refused first), and any character outside
# the subset becomes a one-character token that the parser refuses.
#
# The bulk of a real rmap is UseAfter bodies in CRDS's own layout, one `'key' : 'value',`
# per line. Such a whole `{...}` is one token (a "string block": an opening brace ending its
# line, then only such lines, then the closing brace), split at its quotes: about twenty
# times fewer tokens for the Python loop. Anything else in a dict (a comment, a number, a
# blank line, two entries on a line) makes it ordinary tokens.
_STRING_ENTRY = r"[ \t]*'[^'\\\n]*'[ \t]*:[ \t]*'[^'\\\n]*'"
_STRING_BLOCK = r"\{\n(?:" + _STRING_ENTRY + r",\n)*" + _STRING_ENTRY + r",?\n[ \t]*\}"
# Likewise a one-line tuple of strings and plain numbers (a Match key) is one token.
_NUMBER = r"(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)"
_TUPLE_ITEM = r"[ \t]*(?:'[^'\\\n]*'|-?" + _NUMBER + r")[ \t]*"
_FLAT_TUPLE = r"\((?:" + _TUPLE_ITEM + r",)+(?:" + _TUPLE_ITEM + r")?\)"
_TUPLE_ELEMENT = re.compile(r"'[^'\n]*'|[^\s,()']+")
# And a whole Match entry whose key is such a tuple and whose value a selector call on a
# string block, `('A', 1.0) : UseAfter({...})`, is one token too (it ends with `})`).
_SELECTOR_ENTRY = _FLAT_TUPLE + r"[ \t]*:[ \t]*[A-Za-z_][A-Za-z0-9_]*[ \t]*\(" + _STRING_BLOCK + r"\)"
_TOKEN_RE = re.compile(
    r"[ \t]*("
    + _SELECTOR_ENTRY + r"|"
    + _STRING_BLOCK + r"|" + _FLAT_TUPLE + r"|"
    r"'''(?:[^'\\]|'(?!''))*'''|\"\"\"(?:[^\"\\]|\"(?!\"\"))*\"\"\""  # triple-quoted
    r"|'[^'\\\n]*'|\"[^\"\\\n]*\""  # one-line strings
    r"|(?:0|[1-9][0-9]*)(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?"
    r"|[A-Za-z_][A-Za-z0-9_]*"
    r"|#[^\n]*"
    r"|\n|[^ \t])"
)
_INDENTED_STATEMENT = re.compile(r"^[ \t]+(?:header|selector|comment)\b", re.MULTILINE)
_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_NUMBER_START = frozenset("0123456789.")

_CONSTANT_NAMES = {"True": True, "False": False, "None": None}

# Real mappings nest 5 deep; deeper text goes to the ast path, whose depth rule decides.
_FAST_MAX_NESTING = 20


def _simple_string(tok: str) -> bool:
    """A one-line quoted string token (not triple-quoted, not a lone quote)."""
    first = tok[:1]
    return (first == "'" or first == '"') and len(tok) >= 2 and (tok[1] != first or len(tok) == 2)


class _GiveUp(Exception):
    """The fast path does not handle this text; use the ast path."""


class _FastParser:
    """Recursive descent over the literal subset of mapping syntax (see above)."""

    __slots__ = ("toks", "pos", "line", "text")

    def __init__(self, text: str) -> None:
        toks = [tok for tok in _TOKEN_RE.findall(text) if tok[0] != "#"]
        toks.append("")  # end of text
        self.toks = toks
        self.pos = 0
        self.line = 1
        self.text = text

    def skip_newlines(self) -> str:
        """Skip newline tokens; return the token now current."""
        toks = self.toks
        pos = self.pos
        tok = toks[pos]
        while tok == "\n":
            self.line += 1
            pos += 1
            tok = toks[pos]
        self.pos = pos
        return tok

    def expect(self, tok: str) -> None:
        if self.skip_newlines() != tok:
            raise _GiveUp
        self.pos += 1

    def value(self, depth: int, calls: bool):
        tok = self.skip_newlines()
        self.pos += 1
        first = tok[:1]
        if first == "'" or first == '"':
            if len(tok) >= 6 and tok[1] == first and tok[2] == first:
                self.line += tok.count("\n")
                return tok[3:-3]
            if len(tok) < 2:
                raise _GiveUp
            return tok[1:-1]
        if first in _NUMBER_START:
            return self.number(tok)
        if tok == "-":
            tok = self.skip_newlines()
            self.pos += 1
            if tok[:1] not in _NUMBER_START:
                raise _GiveUp
            return -self.number(tok)
        if depth >= _FAST_MAX_NESTING:
            raise _GiveUp
        if tok == "(":
            return self.paren(depth, calls)
        if first == "(":
            return self.flat_tuple(tok)
        if tok == "{":
            return dict(self.items(depth, calls, None, None))
        if first == "{":
            return dict(self.string_block(tok))
        if tok == "[":
            return self.sequence("]", depth, calls)
        if first in _NAME_START:
            if tok in _CONSTANT_NAMES:
                return _CONSTANT_NAMES[tok]
            if calls and tok in SELECTOR_NAMES:
                return self.call(tok, depth)
        raise _GiveUp

    @staticmethod
    def number(tok: str) -> int | float:
        if "." in tok or "e" in tok or "E" in tok:
            number = float(tok)  # ValueError (e.g. a lone '.') gives up
            if not math.isfinite(number):
                raise _GiveUp
            return number
        if not tok.isdigit():
            raise _GiveUp
        return int(tok)

    def paren(self, depth: int, calls: bool):
        """`(...)`: a tuple, or a parenthesized value."""
        if self.skip_newlines() == ")":
            self.pos += 1
            return ()
        first = self.value(depth + 1, calls)
        tok = self.skip_newlines()
        self.pos += 1
        if tok == ")":
            return first
        if tok != ",":
            raise _GiveUp
        return (first, *self.sequence(")", depth, calls))

    def sequence(self, close: str, depth: int, calls: bool):
        """Elements up to `close` (a trailing comma allowed): a list for ']', else a tuple."""
        items = []
        while True:
            if self.skip_newlines() == close:
                self.pos += 1
                break
            items.append(self.value(depth + 1, calls))
            tok = self.skip_newlines()
            self.pos += 1
            if tok == close:
                break
            if tok != ",":
                raise _GiveUp
        return items if close == "]" else tuple(items)

    def items(self, depth: int, calls: bool, key_lines, seen_keys):
        """`key : value, ... }` after an opening brace."""
        result = []
        toks = self.toks
        while True:
            tok = self.skip_newlines()
            if tok == "}":
                self.pos += 1
                return result
            # The common case, `'key' : 'value',` (all of a UseAfter), without recursion.
            pos = self.pos
            if _simple_string(tok) and toks[pos + 1] == ":":
                value = toks[pos + 2]
                sep = toks[pos + 3]
                if _simple_string(value) and (sep == "," or sep == "}"):
                    if key_lines is not None:
                        key_lines.append(self.line)
                    if seen_keys is not None:
                        seen_keys.append(tok[1:-1])
                    result.append((tok[1:-1], value[1:-1]))
                    self.pos = pos + 4
                    if sep == "}":
                        return result
                    continue
            if tok[-2:] == "})" and tok[:1] == "(":  # a whole Match entry (_SELECTOR_ENTRY)
                if not calls or depth + 1 >= _FAST_MAX_NESTING:
                    raise _GiveUp
                # Strings hold no newline, so the block starts at the first "{\n"; the name
                # follows the last ":" before it.
                brace = tok.index("{\n")
                key_text, _, name = tok[:brace].rpartition(":")
                name = name.strip(" \t")[:-1].rstrip(" \t")  # `UseAfter (` -> `UseAfter`
                block = tok[brace:-1]
                if name not in SELECTOR_NAMES:
                    raise _GiveUp
                if key_lines is not None:
                    key_lines.append(self.line)
                key = self.flat_tuple(key_text)
                result.append((key, self.block_call(name, block, self.line)))
                self.pos += 1
                tok = self.skip_newlines()
                self.pos += 1
                if tok == "}":
                    return result
                if tok != ",":
                    raise _GiveUp
                continue
            if key_lines is not None:
                key_lines.append(self.line)
            key = self.value(depth + 1, False)
            try:
                hash(key)  # only lists and dicts (and tuples holding them) fail
            except TypeError:
                raise _GiveUp from None
            if seen_keys is not None:
                seen_keys.append(key)
            self.expect(":")
            result.append((key, self.value(depth + 1, calls)))
            tok = self.skip_newlines()
            self.pos += 1
            if tok == "}":
                return result
            if tok != ",":
                raise _GiveUp

    def flat_tuple(self, tok: str) -> tuple:
        """The elements of a one-line tuple token (see `_FLAT_TUPLE`)."""
        if tok[-2:] == "})":  # a whole Match entry where a value should be
            raise _GiveUp
        items = []
        for element in _TUPLE_ELEMENT.findall(tok):
            if element[0] == "'":
                items.append(element[1:-1])
            elif element[0] == "-":
                items.append(-self.number(element[1:]))
            else:
                items.append(self.number(element))
        return tuple(items)

    def string_block(self, tok: str) -> list[tuple[str, str]]:
        """The entries of a string block token (see `_STRING_BLOCK`), one per line."""
        self.line += tok.count("\n")
        # The block's strings hold no quote: splitting at the quotes gives the text between
        # them, every fourth piece a key, two further its value.
        pieces = tok.split("'")
        return list(zip(pieces[1::4], pieces[3::4], strict=True))

    def block_call(self, name: str, tok: str, lineno: int) -> Call:
        first_line = self.line + 1  # the entries start on the line after the brace
        entries = self.string_block(tok)
        lines = tuple(range(first_line, first_line + len(entries)))
        return Call(name=name, entries=tuple(entries), lines=lines, lineno=lineno,
                    strings_only=True)

    def call(self, name: str, depth: int) -> Call:
        lineno = self.line
        self.expect("(")
        tok = self.skip_newlines()
        self.pos += 1
        if tok == "{":
            call = self.selector_dict(name, depth + 1, lineno)
        elif tok[:1] == "{":
            call = self.block_call(name, tok, lineno)
        else:
            raise _GiveUp
        self.expect(")")
        return call

    def selector_dict(self, name: str, depth: int, lineno: int) -> Call:
        key_lines: list[int] = []
        entries = self.items(depth, True, key_lines, None)
        return Call(name=name, entries=tuple(entries), lines=tuple(key_lines), lineno=lineno)

    def mapping(self, filename: str) -> ParsedMapping:
        toks = self.toks
        sections: dict[str, object] = {}
        header_keys: list = []
        while True:
            name = self.skip_newlines()
            if name == "":
                break
            # Only `name = value` statements (no bare strings: indentation is not tracked).
            if name not in _TOP_LEVEL_NAMES or name in sections or toks[self.pos + 1] != "=":
                raise _GiveUp
            self.pos += 2
            lineno = self.line
            tok = toks[self.pos]
            self.pos += 1
            if name == "header":
                if tok == "{":
                    sections[name] = dict(self.items(0, False, None, header_keys))
                elif tok[:1] == "{":
                    entries = self.string_block(tok)
                    header_keys.extend(key for key, _ in entries)
                    sections[name] = dict(entries)
                else:
                    raise _GiveUp
            elif name == "comment":
                self.pos -= 1
                if tok[:1] not in ("'", '"'):
                    raise _GiveUp
                sections[name] = self.value(0, False)
            elif tok == "{":
                sections[name] = self.selector_dict("dict", 1, lineno)
            elif tok[:1] == "{":
                sections[name] = self.block_call("dict", tok, lineno)
            elif tok in SELECTOR_NAMES:
                sections[name] = self.call(tok, 0)
            else:
                raise _GiveUp
            if toks[self.pos] not in ("\n", ""):
                raise _GiveUp  # something after the value on its last line
        if "header" not in sections or "selector" not in sections:
            raise _GiveUp
        return ParsedMapping(
            filename=filename,
            header=sections["header"],
            selector=sections["selector"],
            comment=sections.get("comment"),
            text=self.text,
            header_duplicates=_duplicates_in_order(header_keys),
        )


def _duplicates_in_order(keys: list) -> tuple[str, ...]:
    seen: set = set()
    dups: list[str] = []
    for key in keys:
        if isinstance(key, str):
            if key in seen and key not in dups:
                dups.append(key)
            seen.add(key)
    return tuple(dups)


def _has_indented_statement(text: str) -> bool:
    """Whether a line starts with blanks and then `header`, `selector` or `comment` as a
    word (`_INDENTED_STATEMENT`; the words are rare, so finding them first is quicker)."""
    for word in ("header", "selector", "comment"):
        start = text.find(word)
        while start != -1:
            if start > 0 and text[start - 1] in " \t":
                line_start = text.rfind("\n", 0, start) + 1
                end = start + len(word)
                if not text[line_start:start].strip(" \t") and (
                    end == len(text) or not (text[end].isalnum() or text[end] == "_")
                ):
                    return True
            start = text.find(word, start + 1)
    return False


def _fast_parse(text: str, filename: str) -> ParsedMapping | None:
    """The mapping, or None where the fast path does not apply (the ast path decides)."""
    if "\r" in text or "\\" in text or "\f" in text or _has_indented_statement(text):
        return None
    try:
        return _FastParser(text).mapping(filename)
    except (_GiveUp, ValueError, IndexError, RecursionError):
        return None
