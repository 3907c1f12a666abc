"""The fast paths of the mode plans answer exactly as each rmap's own lookup
(`Context.compute_plain`), where they take over from it:

- the ACS bias precondition, whose date split at SM4 is a step of the table (both sides of
  the split, the split itself, and dates the hook or the UseAfter cannot read);
- the WFPC2 flat fallback (filters swapped), answered by the retry's table at each date;
- dates that cannot be read, answered as the rmaps handle the failure (do-not-reprocess,
  reffile_required) without their lookups;
- new datasets read straight from their header (`answer_header`): values of every JSON
  type, the types that compare equal but condition apart (True, 1, 1.0; 0.0 and -0.0),
  a missing key next to a None value;
- `split_table` and `overlay` against their definitions.
"""

from __future__ import annotations

import bisect
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crds_events.rules.bestrefs import DatasetError, load_context
from crds_events.rules.datetables import MISS, DateTable, StrictDater, overlay, split_table
from crds_events.rules.ordered import UseAfterSelector

PMAP = "hst/mappings/hst_0001.pmap"
ORACLE = "bestrefs_hst_0001.jsonl"


@pytest.fixture(scope="module")
def hst(corpus):
    context = load_context(corpus / "contexts" / PMAP)
    context.cache_results = False  # every answer computed: the plans are what is tested
    with open(corpus / "oracle" / ORACLE, encoding="utf-8") as lines:
        headers = [json.loads(line)["header"] for line in lines]
    return context, headers


def _plain(context, header):
    try:
        instrument, minimized = context.minimized_header(header)
        results = context.compute_plain(instrument, minimized)
    except DatasetError as exc:
        return {"error": exc.not_found}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in results.items()}


def _fast(context, header):
    try:
        return context.best_references(header)
    except DatasetError as exc:
        return {"error": exc.not_found}


def _check(context, headers):
    for header in [*headers, *headers]:  # the second time from the plans' rows
        assert _fast(context, header) == _plain(context, header), header


def _instrument(headers, name, **values):
    return [h for h in headers if h.get("INSTRUME") == name
            and all(h.get(k) == v for k, v in values.items())]


_SM4_DATES = [
    ("2009-05-13", "23:59:59"), ("2009-05-14", "00:00:00"), ("2009-05-14", "00:00:01"),
    ("2002-03-04", "10:11:12"), ("2015-06-07", "08:09:10"), ("1990-01-01", "00:00:00"),
    ("2009-05-14", ""), ("", "10:11:12"), ("UNDEFINED", "10:11:12"), ("May 14 2009", "00:00:00"),
    ("2009-05-14T00:00:00", "UNDEFINED"), ("not a date", "00:00:00"), ("2009-13-14", "00:00:00"),
]


@pytest.mark.corpus
def test_acs_bias_split_at_sm4_is_a_step_of_the_table(hst):
    context, headers = hst
    acs = _instrument(headers, "ACS")
    assert acs
    cases = []
    for header in acs[:60]:
        for day, time in _SM4_DATES:
            cases.append({**header, "DATE-OBS": day, "TIME-OBS": time})
    for gain in ("0.5", "1.4", "2.0"):  # do-not-reprocess gains excuse the misses
        for day, time in _SM4_DATES:
            cases.append({**acs[0], "DETECTOR": "WFC", "CCDGAIN": gain,
                          "DATE-OBS": day, "TIME-OBS": time})
    _check(context, cases)
    plan = context._plan("ACS", None)
    bias = context.rmap("ACS", "biasfile")
    assert id(bias) in plan._tabulable, "the ACS bias rmap is answered by the plain lookup"
    rows = [row for row in plan._rows.values() if not row.slow]
    assert rows, "every ACS row takes the plain lookup"


@pytest.mark.corpus
def test_wfpc2_flat_fallback_is_answered_by_the_retry_table(hst):
    context, headers = hst
    wfpc2 = _instrument(headers, "WFPC2")
    cases = []
    for header in wfpc2[:20]:
        for filters in (("F555W", "F814W"), ("F814W", "F555W"), ("F336W", "F336W"),
                        ("F439W", "CLEAR"), ("NOSUCH", "F555W")):
            for day in ("1975-01-01", "1994-02-03", "2008-07-06"):
                cases.append({**header, "FILTNAM1": filters[0], "FILTNAM2": filters[1],
                              "FILTER1": header.get("FILTER2"), "FILTER2": header.get("FILTER1"),
                              "DATE-OBS": day, "TIME-OBS": "01:02:03"})
    _check(context, cases)
    flat = context.rmap("WFPC2", "flatfile")
    assert flat.fallback is not None
    assert id(flat) in context._plan("WFPC2", None)._tabulable


@pytest.mark.corpus
def test_unreadable_dates_are_answered_as_the_rmaps_handle_them(hst):
    context, headers = hst
    cases = []
    for instrument in ("ACS", "COS", "STIS", "NICMOS", "WFC3", "WFPC2"):
        for header in _instrument(headers, instrument)[:15]:
            for day, time in (("UNDEFINED", "10:11:12"), ("not a date", "00:00:00"),
                              ("2005-02-30", "00:00:00"), ("", ""), ("2005-01-01", "99:00:00")):
                cases.append({**header, "DATE-OBS": day, "TIME-OBS": time})
            missing = dict(header)
            missing.pop("DATE-OBS", None)
            cases.append(missing)
    acs = _instrument(headers, "ACS")[0]
    for gain in ("0.5", "1.4", "7.0"):
        cases.append({**acs, "DETECTOR": "WFC", "CCDGAIN": gain, "DATE-OBS": "UNDEFINED"})
    _check(context, cases)
    answers = [_fast(context, h) for h in cases]
    texts = {v for a in answers for v in a.values() if isinstance(v, str)}
    assert any(v.startswith("NOT FOUND") and "UNDEFINED" in v for v in texts)


@pytest.mark.corpus
def test_values_of_every_type_read_straight_from_the_header(hst):
    context, headers = hst
    cases = []
    for instrument in ("ACS", "COS", "WFC3", "STIS"):
        for header in _instrument(headers, instrument)[:10]:
            keys = [k for k in header if k not in ("INSTRUME", "DATE-OBS", "TIME-OBS")]
            for key in keys[:6]:
                # values that compare equal but condition apart, one after the other: a
                # row found for one must not answer the other
                for value in (1, 1.0, True, "1", "1.0", 0, 0.0, -0.0, False, "0", None, "",
                              "N/A", 2.5, "2.5", 2.50):
                    cases.append({**header, key: value})
                missing = dict(header)
                del missing[key]  # a missing key is UNDEFINED, a None value is NONE
                cases.append(missing)
    _check(context, cases)


def _at(table, date):
    return table.values[bisect.bisect_right(table.keys, date)]


@st.composite
def _tables(draw, parameters=("DATE-OBS", "TIME-OBS"), values=("a", "b", "c", MISS)):
    keys = sorted(set(draw(st.lists(st.integers(0, 30), max_size=6))))
    answers = [draw(st.sampled_from(values)) for _ in range(len(keys) + 1)]
    if not keys and draw(st.booleans()):
        return DateTable.constant(answers[0])  # does not read the date
    return DateTable([f"{k:02d}" for k in keys], answers, parameters)


_DATER = StrictDater(UseAfterSelector(("DATE-OBS", "TIME-OBS"), {"05": "x.fits"}))


@given(_tables(), _tables(), st.integers(0, 30))
def test_split_table_answers_before_then_after_the_point(before, after, point):
    split = f"{point:02d}"
    combined = split_table(before, after, split, _DATER)
    assert combined.parameters == ("DATE-OBS", "TIME-OBS")  # always reads the date
    for day in range(-1, 32):
        date = f"{day:02d}" if day >= 0 else ""
        want = _at(before, date) if date < split else _at(after, date)
        assert _at(combined, date) == want


@given(_tables(), _tables(values=("x", "y", MISS)))
def test_overlay_answers_the_second_where_the_first_fails(first, then):
    combined = overlay(first, then, lambda value: value is MISS)
    assert combined is not None
    for day in range(-1, 32):
        date = f"{day:02d}" if day >= 0 else ""
        want = _at(first, date)
        if want is MISS:
            want = _at(then, date)
        assert _at(combined, date) == want


def test_strict_dater_refuses_empty_date_values():
    use_after = UseAfterSelector(("DATE-OBS", "TIME-OBS"), {"2000-01-01 00:00:00": "x.fits"})
    dater = StrictDater(use_after)
    header = {"DATE-OBS": "2005-01-02", "TIME-OBS": "03:04:05"}
    assert dater.lookup_key(header) == use_after.lookup_key(header) == "2005-01-02 03:04:05"
    for empty in ({"DATE-OBS": "", "TIME-OBS": "03:04:05"}, {"DATE-OBS": "2005-01-02", "TIME-OBS": ""},
                  {"DATE-OBS": "2005-01-02"}):
        with pytest.raises(Exception, match="Empty date parameter"):
            dater.memoised_lookup_key(empty)
