"""The fast path of mapping parsing: a regex tokenizer and a recursive descent over the
literal subset of Python that CRDS writes mappings in.

ast.parse builds a Python object per node; for big rmaps (tens of thousands of entries)
that is most of the load time. Mappings as CRDS writes them use a tiny subset of Python,
so a regex tokenizer and a recursive descent over exactly that subset read them several
times faster. It is deliberately conservative: anything it does not fully understand
(escapes in strings, string prefixes, line continuations, unusual whitespace, odd
numbers, any error at all) makes it give up, and the ast path of
`crds_events.rules.parse.parse_mapping` decides - with its exact error messages. Tests
assert that both paths give equal results.
"""

from __future__ import annotations

import math
import re

from crds_events.errors import CrdsEventsError
from crds_events.rules.parsed import (
    SELECTOR_NAMES,
    TOP_LEVEL_NAMES,
    Call,
    ParsedMapping,
    UnsafeNameError,
    check_named_files,
    crds_test_data_names_allowed,
)

__all__ = ["fast_parse"]


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


class _GiveUp(CrdsEventsError):
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
            if name not in TOP_LEVEL_NAMES or name in sections or toks[self.pos + 1] != "=":
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


def fast_parse(text: str, filename: str) -> ParsedMapping | None:
    """The mapping, or None where the fast path does not apply (the ast path decides):
    also where it names a file that is not a plain CRDS file name (`check_named_files`)."""
    if "\r" in text or "\\" in text or "\f" in text or _has_indented_statement(text):
        return None
    try:
        parsed = _FastParser(text).mapping(filename)
    except (_GiveUp, ValueError, IndexError, RecursionError):
        return None
    try:
        check_named_files(parsed, compat=crds_test_data_names_allowed())
    except UnsafeNameError:
        return None  # refused: the ast path raises it, with the same names and lines
    return parsed
