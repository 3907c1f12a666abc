"""The rules engine's fast paths give exactly the answers of its plain paths.

- best references cached on the raw header values (`Context._raw_key`): repeated,
  reordered, re-typed and re-cased headers answer as a fresh context answers them;
- Match candidate ranking with bit masks equals a brute-force ranking;
- the parser's one-token string blocks and flat tuples agree with the ast path.
"""

from __future__ import annotations

import fnmatch
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crds_events.rules.bestrefs import DatasetError, load_context
from crds_events.rules.fastparse import fast_parse
from crds_events.rules.match import MatchSelector, _Tie
from crds_events.rules.parse import parse_mapping
from crds_events.rules.patterns import (
    MATCH,
    NO_MATCH,
    GlobPattern,
    RegexPattern,
    glob_list,
    make_pattern,
)

HST = "contexts/hst/mappings/hst_0001.pmap"


def _answer(context, header):
    try:
        return context.best_references(header)
    except DatasetError as exc:
        return {"error": exc.not_found}


def _oracle_headers(corpus, limit=None):
    headers = []
    with open(corpus / "oracle" / "bestrefs_hst_0001.jsonl", encoding="utf-8") as lines:
        for line in lines:
            headers.append(json.loads(line)["header"])
            if limit and len(headers) >= limit:
                break
    return headers


# --- best references cached on raw values -----------------------------------------


@pytest.mark.corpus
def test_repeated_headers_answer_as_the_first_time(corpus):
    """A second pass (in reverse order) is answered from the raw-value cache."""
    context = load_context(corpus / HST)
    headers = _oracle_headers(corpus)
    first = [_answer(context, header) for header in headers]
    assert context._raw_cache, "the second pass should use the raw-value cache"
    assert _answer(context, _slow_path(headers[0])) == first[0]
    again = [_answer(context, header) for header in reversed(headers)]
    assert again[::-1] == first


def _variants(header):
    """The header with values re-typed and keys re-cased: same or different meaning."""
    variants = [dict(header)]
    variants.append({key.lower(): value for key, value in header.items()})
    variants.append({key: value.lower() if isinstance(value, str) else value
                     for key, value in header.items()})
    for key, value in header.items():
        if key == "INSTRUME" or not isinstance(value, str):
            continue
        try:
            number = float(value)
        except ValueError:
            continue
        for other in (int(number), number, -number, True, False, None, 0.0, -0.0, str(number)):
            variants.append({**header, key: other})
    return variants


def _slow_path(header):
    """The header with an extra lower-case key no rule reads: never raw-value cached."""
    return {**header, "not_a_keyword": 0}


@pytest.mark.corpus
def test_retyped_and_recased_headers_answer_as_the_plain_path(corpus):
    """1, 1.0, True and '1' hash alike but condition differently; 0.0 and -0.0 too."""
    warm, plain = load_context(corpus / HST), load_context(corpus / HST)
    for header in _oracle_headers(corpus)[::150]:
        for variant in _variants(header):
            want = _answer(plain, _slow_path(variant))
            assert _answer(warm, variant) == want, variant
            assert _answer(warm, variant) == want, variant  # now from the cache


@pytest.mark.corpus
def test_instrument_spellings_answer_as_the_plain_path(corpus):
    """Only an instrument value that alone decides the instrument is learned."""
    warm, plain = load_context(corpus / HST), load_context(corpus / HST)
    header = _oracle_headers(corpus, 1)[0]
    instrument = header["INSTRUME"]
    for variant in (
        {**header, "INSTRUME": "UNDEFINED", "INSTRUMENT": instrument},
        {**header, "INSTRUME": "UNDEFINED"},
        {**header, "INSTRUME": instrument.lower()},
        {**header, "INSTRUME": f" {instrument} "},
        {**header, "INSTRUME": "FOC"},
        header,
    ):
        want = _answer(plain, _slow_path(variant))
        assert _answer(warm, variant) == want, variant
        assert _answer(warm, variant) == want, variant


# --- Match ranking -------------------------------------------------------------------

_FIELDS = st.sampled_from(["A", "B", "C", "N/A", "*", "A|B", "B|C", "1.0", ">1", "NOT A"])
_VALUES = st.sampled_from(["A", "B", "C", "D", "N/A", "*", "1.0", "2.0", "UNDEFINED"])


def _brute_force_ranking(selector, header):
    scored = []
    for index, key in enumerate(selector.keys):
        statuses = [make_pattern(field).match(header[name])
                    for field, name in zip(key, selector.parameters, strict=True)]
        if NO_MATCH not in statuses:
            scored.append((-statuses.count(MATCH), index))
    scored.sort()  # by weight, then key order
    groups: list[list[int]] = []
    for weight, index in scored:
        if groups and groups[-1][0] == weight:
            groups[-1][1].append(index)
        else:
            groups.append((weight, [index]))
    return [[selector.choices()[i] for i in members] for _, members in groups]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keys=st.lists(st.tuples(_FIELDS, _FIELDS, _FIELDS), min_size=1, max_size=40, unique=True),
    values=st.tuples(_VALUES, _VALUES, _VALUES),
)
def test_match_ranking_equals_brute_force(keys, values):
    parameters = ("P1", "P2", "P3")
    selector = MatchSelector(parameters, {key: f"file{i}.fits" for i, key in enumerate(keys)})
    header = dict(zip(parameters, values, strict=True))
    ranked = selector._ranked_choices(header)
    got = [choice.members if isinstance(choice, _Tie) else [choice] for choice in ranked]
    assert got == _brute_force_ranking(selector, header)
    assert selector._ranked_choices(header) == ranked  # memoised masks: same answer


_PARTS = st.text(alphabet="AB1.-_ /\n]!^$()+", max_size=4)


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(_PARTS, min_size=2, max_size=4), others=st.lists(_PARTS, max_size=4))
def test_wildcard_free_alternatives_match_as_their_regex(parts, others):
    """`A|B|C` is answered from a set, not a compiled regex: same statuses."""
    key = "|".join(parts)
    regex = "^(" + "|".join(fnmatch.translate(part) for part in glob_list(key)) + ")$"
    reference, pattern = RegexPattern(regex), GlobPattern(key)
    for value in [*parts, *(p.strip() for p in parts), *(p + "\n" for p in parts), *others,
                  regex, "*", "N/A", "", "\n"]:
        assert pattern.match(value) == reference.match(value), (key, value)


# --- parser string blocks and flat tuples ------------------------------------------

_TEXT = st.text(alphabet="abAB09 -_:,.#{}()[]*|/\"", max_size=8)
_BLANK = st.sampled_from(["", " ", "  ", "\t"])
_NUMBER = st.sampled_from(["0", "7", "-7", "1.0", "-1.5", "1.", ".5", "1e3", "2E-2", "-0",
                           "-0.0", "007", "1_0", "0x1", "1e999", "- 1"])


@st.composite
def _block(draw):
    """`{` newline, `'k' : 'v',` lines in a varied layout, closing brace."""
    entries = draw(st.lists(st.tuples(_TEXT, _TEXT), min_size=1, max_size=6))
    lines = []
    for key, value in entries:
        indent, before, after = draw(_BLANK), draw(_BLANK), draw(_BLANK)
        comma = draw(st.sampled_from([",", ",", "", ", ", ",  # c"]))
        lines.append(f"{indent}'{key}'{before}:{after}'{value}'{comma}")
        if draw(st.integers(0, 9)) == 0:
            lines.append(draw(st.sampled_from(["", "  ", "# note"])))
    return "{\n" + "\n".join(lines) + "\n" + draw(_BLANK) + "}"


@st.composite
def _flat_tuple(draw):
    items = draw(st.lists(st.one_of(_TEXT.map(lambda t: f"'{t}'"), _NUMBER), min_size=1,
                          max_size=4))
    sep = draw(st.sampled_from([", ", ",", " , "]))
    trailing = draw(st.sampled_from(["", ",", ", "]))
    return "(" + sep.join(items) + trailing + ")"


@st.composite
def _mapping_text(draw):
    keys = draw(st.lists(_flat_tuple(), min_size=1, max_size=4))
    body = "".join(f"    {key} : UseAfter({draw(_block())}),\n" for key in keys)
    header = draw(st.sampled_from([
        "{\n    'name' : 'x.rmap',\n    'parkey' : (('A',), ('D',)),\n}",
        draw(_block()),
    ]))
    return f"header = {header}\n\nselector = Match({{\n{body}}})\n"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mapping_text())
def test_string_blocks_and_flat_tuples_agree_with_the_ast_path(text):
    fast = fast_parse(text, "p.rmap")
    try:
        slow = parse_mapping(text, "p.rmap", fast=False)
    except Exception as exc:  # noqa: BLE001 - the ast path refuses: so must the fast path
        assert fast is None, (text, exc)
        return
    if fast is None:
        return
    assert fast == slow, text
    assert fast.header_duplicates == slow.header_duplicates
    assert list(fast.header) == list(slow.header)
    for a, b in zip(fast.selector.walk(), slow.selector.walk(), strict=True):
        assert (a.lines, a.lineno) == (b.lines, b.lineno), text


def test_canonical_blocks_take_the_fast_path():
    text = (
        "header = {\n    'name' : 'x.rmap',\n    'parkey' : (('A', 'B'), ('D',)),\n}\n\n"
        "selector = Match({\n"
        "    ('X', 1.5) : UseAfter({\n        '2001-01-01' : 'a.fits',\n"
        "        '2002-01-01' : 'b.fits',\n    }),\n"
        "    ('Y', -2) : UseAfter({\n        '2001-01-01' : 'c.fits',\n    }),\n})\n"
    )
    fast = fast_parse(text, "p.rmap")
    assert fast is not None
    assert fast == parse_mapping(text, "p.rmap", fast=False)
    uses = [call for call in fast.selector.walk() if call.name == "UseAfter"]
    assert [call.lines for call in uses] == [(8, 9), (12,)]


@pytest.mark.corpus
def test_full_load_compiles_every_match_selector(corpus):
    """`load_all` builds what CRDS builds at load (its Match matchers), not just the tree."""
    context = load_context(corpus / HST, load_all=True)
    stack = [rmap.selector for instrument in context.pipeline.instruments
             for rmap in context.pipeline.imap(instrument).rmaps().values()]
    matches = 0
    while stack:
        selector = stack.pop()
        if isinstance(selector, MatchSelector):
            matches += 1
            assert selector._fields is not None and selector._valid is not None, selector
        stack.extend(choice for choice in selector.choices() if hasattr(choice, "choices"))
    assert matches > 100
