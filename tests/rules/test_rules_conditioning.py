"""Value conditioning, lenient dates and Match patterns, checked against the crds library
(installed as a test dependency) as the independent truth on generated inputs."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

os.environ.setdefault("CRDS_MODE", "local")

from crds.core import selectors as crds_selectors
from crds.core import timestamp as crds_timestamp
from crds.core import utils as crds_utils

from crds_events.rules import conditioning, dates, patterns

SPECIAL_VALUES = [
    "1", "1.0", "1.", "+1", " 1 ", "1e0", "1e20", "-2147483648", "4294967295", "N/A",
    "n/a", "N/AXYZ", "()", "NOT APPLICABLE", "NOT_APPLICABLE", "ANY", "any", "T", "TRUE",
    "false", "F", "", "  wfc  ", "UNDEFINED", "-1", ".5", "5.", "1E+20", "inf", "nan", "0x10",
]
VALUES = st.one_of(
    st.sampled_from(SPECIAL_VALUES),
    st.text(alphabet="0123456789.+-eEAnyNT/ a()_", max_size=12),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False),
    st.booleans(),
)


@given(VALUES)
@settings(max_examples=600)
def test_condition_value_agrees_with_crds(value):
    assert conditioning.condition_value(value) == crds_utils.condition_value(value)


@pytest.mark.parametrize("value", SPECIAL_VALUES + [True, False, 1, 1.0, -2147483648])
def test_condition_value_special_cases(value):
    assert conditioning.condition_value(value) == crds_utils.condition_value(value)


def test_condition_value_distinguishes_true_from_one():
    # True == 1 in Python; the cache must not confuse them.
    assert conditioning.condition_value(1) == "1.0"
    assert conditioning.condition_value(True) == "T"
    assert conditioning.condition_value(1) == "1.0"


def test_condition_header_upper_cases_keys_later_key_wins():
    header = {"detector": "wfc", "DETECTOR": " hrc ", "CCDGAIN": 2}
    assert conditioning.condition_header(header) == {"DETECTOR": "HRC", "CCDGAIN": "2.0"}


# ----------------------------------------------------------------------------- dates

DATE_PARTS = st.sampled_from(
    [
        "2010-01-01", "2010/01/01", "01/02/2010", "01-02-2010", "31/12/99", "01/02/03",
        "Jan 05 2010", "january 5, 2010", "05-Jan-2010", "20100105:123456", "2010-13-01",
        "2010-02-30", "2010-01-01T00:00:00", "Foo 01 2010", "", "2010-1-1", "1/2/2010",
        "Dec 01 1993 00:00:00 UT", "2009-05-14",
    ]
)
TIME_PARTS = st.sampled_from(
    ["", "00:00:00", "12:30", "12:30 PM", "12:30AM", "01:02:03.25", "23:59:59.999999",
     "24:00:00", "12:61", "1:2:3:4", "10:00:00 UT", "x", "UNDEFINED"]
)


def _crds_reformat(text):
    try:
        return crds_timestamp.reformat_date(text)
    except Exception:  # noqa: BLE001 - any failure counts as "invalid"
        return None


def _our_reformat(text):
    try:
        return dates.reformat_date(text)
    except dates.DateError:
        return None


@given(DATE_PARTS, TIME_PARTS)
@settings(max_examples=400)
def test_reformat_date_agrees_with_crds(date, time):
    text = f"{date} {time}".strip()
    assert _our_reformat(text) == _crds_reformat(text)


@given(st.text(alphabet="0123456789-/: TAPMJanDecU,", max_size=25))
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_reformat_date_agrees_with_crds_on_noise(text):
    assert _our_reformat(text) == _crds_reformat(text)


def test_undefined_date_is_its_own_error():
    with pytest.raises(dates.UndefinedDateError):
        dates.reformat_date("2010-01-01 UNDEFINED")


# ----------------------------------------------------------------------------- patterns

KEYS = [
    "WFC", "A|B|C", " A | B ", "F1*", "F1*|F2??W", "(WF[CX])", "(A|B)", "{A|B}", "{*}",
    "# >1 AND <=20 #", "#>20 OR <5#", "# >5 #", ">1.5", "<=3", "BETWEEN 3000 3200",
    "NOT WFC", "NOT A|B", "NOT BETWEEN 1 2", "NOT (WF.)", "N/A", "*", "1.0", "-1.0",
]
HEADER_VALUES = [
    "WFC", "WFX", "A", "B", "D", "A|B", "F110W", "F2ABW", "F1", "*", "N/A", "4.0", "20.0",
    "21.0", "5.0", "1.5", "1.6", "3100.0", "3200.0", "2999.0", "#>20 OR <5#", "{A|B}", "",
    "UNDEFINED", "1.0", "-1.0", "NOT WFC",
]


@pytest.mark.parametrize("key", KEYS)
def test_patterns_agree_with_crds_matchers(key):
    ours = patterns.make_pattern(key)
    theirs = crds_selectors.matcher(key)
    for value in HEADER_VALUES:
        assert ours.match(value) == theirs.match(value), (key, value)


@given(
    st.lists(st.sampled_from(["A", "B", "C*", "?X", "N/A", "1.0"]), min_size=1, max_size=3),
    st.sampled_from(HEADER_VALUES + ["CX", "ZX", "C"]),
)
def test_glob_alternatives_agree_with_crds(parts, value):
    key = "|".join(parts)
    assert patterns.make_pattern(key).match(value) == crds_selectors.matcher(key).match(value)


def test_bad_between_is_refused():
    with pytest.raises(patterns.PatternError):
        patterns.make_pattern("BETWEEN 42 39")


@pytest.mark.parametrize("element", ["a|b", "any", 1, 1.5, ("x", "y"), "(a|b)", "{a}", "# >1 #"])
def test_match_key_conditioning_agrees_with_crds(element):
    expected = crds_selectors.MatchSelector.condition_key_element(element)
    assert conditioning.condition_match_element(element) == expected
