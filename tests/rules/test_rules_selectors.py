"""Selector semantics on small generated rules, compared with the crds library's answers.

Each case writes a small rmap, loads it with crds (`ReferenceMapping.from_string`) and with
ours, and compares the best reference for generated headers: Match weighting, fallback
between weight groups, merged UseAfters, tuples for tied terminals, merge_overlaps, N/A,
OMIT, reffile_required, relevance/omit expressions, and the other five selectors.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

os.environ.setdefault("CRDS_MODE", "local")

from crds.core import log as crds_log
from crds.core import rmap as crds_rmap

from crds_events.rules.document import load_mapping_text
from crds_events.rules.index import ReferenceIndex
from crds_events.rules.selectors import (
    AmbiguousMatchError,
    LookupMiss,
    MatchSelector,
    UseAfterSelector,
)

crds_log.set_verbose(0)


def rmap_text(parkey, selector, **header):
    fields = {
        "derived_from": "generated",
        "filekind": "DARKFILE",
        "instrument": "ACS",
        "mapping": "REFERENCE",
        "name": "hst_acs_darkfile_9999.rmap",
        "observatory": "HST",
        "parkey": parkey,
        **header,
    }
    lines = ["header = {"]
    lines += [f"    {key!r} : {value!r}," for key, value in sorted(fields.items())]
    lines += ["}", "", f"selector = {selector}", ""]
    return "\n".join(lines)


def format_selector(name, entries, indent=0):
    pad = "    " * (indent + 1)
    body = []
    for key, value in entries:
        if isinstance(value, tuple) and value and value[0] in ("UseAfter", "Match"):
            value_text = format_selector(value[0], value[1], indent + 1)
        else:
            value_text = repr(value)
        body.append(f"{pad}{key!r} : {value_text},")
    return f"{name}({{\n" + "\n".join(body) + "\n" + "    " * indent + "})"


def load_both(text):
    try:
        theirs = crds_rmap.ReferenceMapping.from_string(text, ignore_checksum=True)
    except Exception:  # noqa: BLE001
        theirs = None
    try:
        ours = ReferenceIndex(load_mapping_text(text, "hst_acs_darkfile_9999.rmap", True))
    except Exception:  # noqa: BLE001
        ours = None
    assert (theirs is None) == (ours is None), text
    return theirs, ours


def category(result):
    """Compare results exactly except the free text of a NOT FOUND reason."""
    if isinstance(result, str) and result.startswith("NOT FOUND") and result != "NOT FOUND n/a":
        return "NOT FOUND <reason>"
    return result


def full_header(values, keys):
    return {key: values.get(key, "UNDEFINED") for key in keys}


def assert_same_answers(text, headers):
    theirs, ours = load_both(text)
    if ours is None:
        return
    for header in headers:
        header = full_header(header, ours.required_parkeys)
        expected = theirs.get_best_ref(dict(header))
        assert category(ours.best_ref(dict(header))) == category(expected), (header, text)


# ----------------------------------------------------------------------------- generated

MATCH_VALUES = ["X", "Y", "X|Y", "N/A", "*", "Z*", "# >1 and <=3 #", "2.0", "NOT X", "ANY"]
DATES = ["1990-01-01 00:00:00", "2000-01-01 00:00:00", "2005-06-01 12:00:00", "2010-01-01 00:00:00"]
FILES = ["a.fits", "b.fits", "c.fits", "N/A", "OMIT"]
HEADER_VALUES = ["X", "Y", "Z1", "N/A", "*", "2.0", "1.5", "UNDEFINED", "Q", "x"]
HEADER_DATES = ["1989-12-31", "2000-01-01", "2005-06-01", "2012-03-04", "2010/01/01", "bad"]

use_afters = st.lists(
    st.tuples(st.sampled_from(DATES), st.sampled_from(FILES)), min_size=1, max_size=3
).map(lambda items: ("UseAfter", items))
match_keys = st.tuples(st.sampled_from(MATCH_VALUES), st.sampled_from(MATCH_VALUES))


@st.composite
def nested_rules(draw):
    keys = draw(st.lists(match_keys, min_size=1, max_size=6, unique=True))
    entries = [(key, draw(use_afters)) for key in keys]
    required = draw(st.sampled_from(["YES", "NO", "NONE"]))
    extra = {"reffile_required": required}
    if draw(st.booleans()):
        extra["merge_overlaps"] = draw(st.sampled_from(["False", "True"]))
    if draw(st.booleans()):
        extra["rmap_relevance"] = draw(st.sampled_from(['(OPT != "Y")', "ALWAYS", '(FOO == "1")']))
    if draw(st.booleans()):
        extra["rmap_omit"] = '(AMP == "Q")'
    text = rmap_text(
        (("OPT", "AMP"), ("DATE-OBS", "TIME-OBS")), format_selector("Match", entries), **extra
    )
    return text


headers = st.lists(
    st.fixed_dictionaries(
        {
            "OPT": st.sampled_from(HEADER_VALUES),
            "AMP": st.sampled_from(HEADER_VALUES),
            "DATE-OBS": st.sampled_from(HEADER_DATES),
            "TIME-OBS": st.sampled_from(["00:00:00", "12:00", "UNDEFINED"]),
        }
    ),
    min_size=1,
    max_size=8,
)


@given(nested_rules(), headers)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_match_useafter_agrees_with_crds(text, header_list):
    assert_same_answers(text, header_list)


@st.composite
def terminal_rules(draw):
    keys = draw(st.lists(match_keys, min_size=1, max_size=6, unique=True))
    entries = [(key, draw(st.sampled_from(FILES))) for key in keys]
    return rmap_text((("OPT", "AMP"),), format_selector("Match", entries))


@given(terminal_rules(), headers)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_terminal_match_agrees_with_crds(text, header_list):
    assert_same_answers(text, header_list)


# ----------------------------------------------------------------------------- specific


def test_tied_terminals_give_a_tuple_in_key_order():
    text = rmap_text(
        (("OPT", "AMP"),),
        format_selector("Match", [(("X", "N/A"), "b.fits"), (("X", "*"), "a.fits")]),
    )
    theirs, ours = load_both(text)
    header = {"OPT": "X", "AMP": "N/A"}
    assert ours.best_ref(header) == theirs.get_best_ref(header)
    assert isinstance(ours.best_ref(header), tuple)


def test_equal_weight_useafters_merge_greatest_name_on_collision():
    selector = MatchSelector(
        ("OPT",),
        {
            "X|Y": UseAfterSelector(("D",), {"2000-01-01 00:00:00": "a.fits"}),
            "X": UseAfterSelector(("D",), {"2000-01-01 00:00:00": "b.fits", "2005-01-01 00:00:00": "c.fits"}),
        },
    )
    # Both keys match X with weight 1: merged dates, b.fits > a.fits at the same date.
    assert selector.choose({"OPT": "X", "D": "2001-01-01"}) == "b.fits"
    assert selector.choose({"OPT": "X", "D": "2006-01-01"}) == "c.fits"


def test_fallback_to_next_weight_group_on_useafter_miss():
    selector = MatchSelector(
        ("OPT", "AMP"),
        {
            ("X", "A"): UseAfterSelector(("D",), {"2010-01-01 00:00:00": "exact.fits"}),
            ("X", "N/A"): UseAfterSelector(("D",), {"2000-01-01 00:00:00": "general.fits"}),
        },
    )
    assert selector.choose({"OPT": "X", "AMP": "A", "D": "2011-01-01"}) == "exact.fits"
    assert selector.choose({"OPT": "X", "AMP": "A", "D": "2005-01-01"}) == "general.fits"
    with pytest.raises(LookupMiss):
        selector.choose({"OPT": "X", "AMP": "A", "D": "1999-01-01"})


def test_merge_overlaps_false_makes_ties_ambiguous():
    selector = MatchSelector(("OPT",), {"X": "a.fits", "X|Y": "b.fits"}, merge_overlaps=False)
    with pytest.raises(AmbiguousMatchError):
        selector.choose({"OPT": "X"})
    assert selector.choose({"OPT": "Y"}) == "b.fits"


def test_generic_subarray_is_substituted_to_na():
    text = rmap_text(
        (("SUBARRAY", "OPT"),),
        format_selector("Match", [(("GENERIC", "X"), "g.fits"), (("FULL", "X"), "f.fits")]),
    )
    theirs, ours = load_both(text)
    for sub in ("FULL", "SUB1", "N/A", "*"):
        header = {"SUBARRAY": sub, "OPT": "X"}
        assert category(ours.best_ref(header)) == category(theirs.get_best_ref(header))


OTHER_SELECTORS = [
    (
        (("OPT",), ("VERSION",)),
        "Match({\n    'X' : VersionAfter({\n        '1.2' : 'v12.fits',\n        '1.10' : 'v110.fits',\n"
        "        '2' : 'v2.fits',\n    }),\n})",
        "VERSION",
        ["1.0", "1.2", "1.5", "1.10.1", "1.9", "2.0.0", "3", "x.y", "0.9"],
    ),
    (
        (("OPT",), ("SW",)),
        "Match({\n    'X' : SelectVersion({\n        '<5' : 'lt5.fits',\n        '=6.1' : 'eq61.fits',\n"
        "        'default' : 'default.fits',\n    }),\n})",
        "SW",
        ["4", "4.99", "5", "6.1", "7", "default", "abc"],
    ),
    (
        (("OPT",), ("WAVE",)),
        "Match({\n    'X' : GeometricallyNearest({\n        1.2 : 'g12.fits',\n        1.5 : 'g15.fits',\n"
        "        5.0 : 'g50.fits',\n    }),\n})",
        "WAVE",
        ["1.0", "1.35", "1.36", "3.25", "3.3", "9", "x"],
    ),
    (
        (("OPT",), ("WAVE",)),
        "Match({\n    'X' : Bracket({\n        1.2 : 'b12.fits',\n        1.5 : 'b15.fits',\n"
        "        5.0 : 'b50.fits',\n    }),\n})",
        "WAVE",
        ["1.0", "1.2", "1.3", "1.5", "4.9", "5.0", "7", "x"],
    ),
    (
        (("OPT",), ("DATE-OBS", "TIME-OBS")),
        "Match({\n    'X' : ClosestTime({\n        '2017-04-24 00:00:00' : 'c1.fits',\n"
        "        '2018-02-01 00:00:00' : 'c2.fits',\n        '2019-04-15 00:00:00' : 'c3.fits',\n    }),\n})",
        "DATE-OBS",
        ["2010-01-01", "2017-09-12", "2017-09-13", "2018-09-08", "2030-01-01", "bad"],
    ),
]


@pytest.mark.parametrize("parkey,selector,varied,values", OTHER_SELECTORS)
def test_other_selectors_agree_with_crds(parkey, selector, varied, values):
    text = rmap_text(parkey, selector)
    headers = [{"OPT": "X", "TIME-OBS": "00:00:00", varied: value} for value in values]
    assert_same_answers(text, headers)


def test_a_lower_tie_does_not_matter_when_a_better_match_answers():
    selector = MatchSelector(
        ("OPT", "AMP"),
        {("X", "A"): "best.fits", ("X", "N/A"): "tie1.fits", ("X|Y", "N/A"): "tie2.fits"},
        merge_overlaps=False,
    )
    assert selector.choose({"OPT": "X", "AMP": "A"}) == "best.fits"
    with pytest.raises(AmbiguousMatchError):
        selector.choose({"OPT": "X", "AMP": "B"})
