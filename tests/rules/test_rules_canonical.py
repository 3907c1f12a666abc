"""Canonical format and checksum properties on generated mappings."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from crds_events.rules.canonical import canonical_checksum, format_mapping, rewrite_text
from crds_events.rules.checksum import (
    checksum_text,
    mapping_checksum,
    verify_checksum,
    with_checksum,
)
from crds_events.rules.parse import Call, ChecksumError, ParsedMapping, parse_mapping

# --- strategies -------------------------------------------------------------------

_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12
)
_word = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_|*-.", min_size=1, max_size=10)
_scalar = st.one_of(
    _text,
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.tuples(inner, inner), st.lists(inner, max_size=3)),
    max_leaves=6,
)
_header_value = st.recursive(
    _value, lambda inner: st.dictionaries(_text, inner, max_size=3), max_leaves=8
)
_header = st.dictionaries(_text, _header_value, max_size=6)

_date = st.datetimes().map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S"))
_file = st.from_regex(r"[a-z0-9]{6,9}_[a-z]{3}\.fits", fullmatch=True)
_choice = st.one_of(_file, st.just("N/A"), st.tuples(_file, _file))


def _crds_order(entries):
    """Selector entries in the order CRDS writes them: by str() of each key element."""
    def key(item):
        k = item[0]
        return tuple(str(f) for f in k) if isinstance(k, tuple) else (str(k),)
    return tuple(sorted(entries, key=key))


def _use_after():
    return st.dictionaries(_date, _choice, max_size=4).map(
        lambda d: Call("UseAfter", _crds_order(d.items()))
    )


_match_key = st.one_of(_word, st.tuples(_word, _word), st.integers(-5, 5), st.floats(-9, 9))
_match = st.dictionaries(_match_key, st.one_of(_use_after(), _choice), max_size=4).map(
    lambda d: Call("Match", _crds_order(d.items()))
)
_context_selector = st.dictionaries(_word, _file, max_size=4).map(
    lambda d: Call("dict", tuple(sorted(d.items())))
)
# The comment is written raw between triple quotes, as CRDS writes it.
_comment = st.one_of(
    st.none(),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"),
                                   exclude_characters='\\"\r'), min_size=1, max_size=40),
)


@st.composite
def mappings(draw):
    header = dict(sorted(draw(_header).items()))
    selector = draw(st.one_of(_match, _use_after(), _context_selector))
    return ParsedMapping("gen.rmap", header, selector, draw(_comment))


# --- properties -------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(mappings())
def test_parse_of_format_gives_back_the_mapping(mapping):
    text = format_mapping(mapping)
    assert parse_mapping(text, "gen.rmap") == mapping
    assert parse_mapping(text, "gen.rmap", fast=False) == mapping


@settings(max_examples=80, deadline=None)
@given(mappings(), st.randoms())
def test_format_is_independent_of_written_order(mapping, rnd):
    """Shuffled entries (as a hand-edited file has them) format to the same text."""
    entries = list(mapping.selector.entries)
    rnd.shuffle(entries)
    header = list(mapping.header.items())
    rnd.shuffle(header)
    shuffled = ParsedMapping("gen.rmap", dict(header),
                             Call(mapping.selector.name, tuple(entries)), mapping.comment)
    assert format_mapping(shuffled) == format_mapping(mapping)


@settings(max_examples=100, deadline=None)
@given(mappings(), st.from_regex(r"[0-9a-f]{40}", fullmatch=True))
def test_checksum_ignores_the_sha1sum_line(mapping, other_sum):
    text = format_mapping(mapping)
    assume("sha1sum" not in text)  # any other line naming it is skipped too (tested below)
    with_sum = format_mapping(mapping, {**mapping.header, "sha1sum": other_sum})
    assert mapping_checksum(with_sum) == mapping_checksum(text)
    # ... and it is the plain SHA-1 of the rest of the text.
    rest = "".join(line for line in with_sum.splitlines(True) if other_sum not in line)
    assert mapping_checksum(with_sum) == hashlib.sha1(rest.encode()).hexdigest()


@settings(max_examples=100, deadline=None)
@given(mappings())
def test_rewritten_text_verifies_and_carries_the_canonical_checksum(mapping):
    rewritten = rewrite_text(mapping)
    parsed = parse_mapping(rewritten, "gen.rmap")
    verify_checksum(rewritten, parsed.header, "gen.rmap")
    assert parsed.header["sha1sum"] == canonical_checksum(mapping)
    assert parsed.selector == mapping.selector


@settings(max_examples=50, deadline=None)
@given(mappings())
def test_checksum_changes_when_any_other_line_changes(mapping):
    assume("sha1sum" not in format_mapping(mapping))
    text = rewrite_text(mapping)
    lines = text.splitlines(True)
    for i, line in enumerate(lines):
        if "sha1sum" in line:
            continue
        changed = "".join(lines[:i] + [line.rstrip("\n") + " \n"] + lines[i + 1:])
        assert mapping_checksum(changed) != mapping_checksum(text)


def test_checksum_skips_every_line_naming_sha1sum():
    text = "a\n# sha1sum here too\nb\n'sha1sum' : 'x',\n"
    assert checksum_text(text) == "a\nb\n"
    assert mapping_checksum(text) == hashlib.sha1(b"a\nb\n").hexdigest()


def test_verify_checksum_messages():
    text = "header = {\n    'sha1sum' : 'abc',\n}\nselector = {}\n"
    with pytest.raises(ChecksumError, match=r"^sha1sum mismatch in 'm\.rmap'$"):
        verify_checksum(text, {"sha1sum": "abc"}, "m.rmap")
    with pytest.raises(ChecksumError, match=r"^sha1sum is missing in 'm\.rmap'$"):
        verify_checksum(text, {}, "m.rmap")
    right = mapping_checksum(text)
    verify_checksum(text, {"sha1sum": right.upper()}, "m.rmap")  # CRDS compares lower case


@pytest.mark.parametrize(
    "text",
    [
        "header = {'a' : 1}\nselector = {}\n",
        "header = {\n    'a' : 1\n}\nselector = {}\n",
        "header = {}\nselector = {}\n",
        "header = {'a' : 1,  # a comment\n}\n\nselector = {}\n",
        "# lead\nheader = {\n    'a' : 'é',\n    'sha1sum' : 'old',\n}\nselector = {}\n",
    ],
)
def test_with_checksum_adds_or_replaces_and_keeps_the_rest(text):
    new = with_checksum(text, "t.rmap")
    parsed = parse_mapping(new, "t.rmap")
    verify_checksum(new, parsed.header, "t.rmap")
    assert {k: v for k, v in parsed.header.items() if k != "sha1sum"} == {
        k: v for k, v in parse_mapping(text).header.items() if k != "sha1sum"
    }
    # Only the sha1sum entry is new or changed (plus a comma and a line break as needed).
    def rest(t):
        return re.sub(r"[\s,]", "", checksum_text(t))
    assert rest(new) == rest(text)
    if text.endswith("}\nselector = {}\n") and "{\n" in text:  # multi-line header: 1 line more
        assert len(new.splitlines()) == len(text.splitlines()) + ("sha1sum" not in text)
    assert with_checksum(new, "t.rmap") == new
