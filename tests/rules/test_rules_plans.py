"""Mode plans and date tables (`plans`, `datetables`) answer exactly as each rmap's own
lookup (`Context.compute_plain`), for new datasets, odd dates and odd values alike.

- the corpus's HST and JWST oracle headers with their dates moved (before every rule,
  between rules, far ahead), the header cache off;
- hypothesis: headers with dates in every spelling CRDS reads (and some it cannot), values
  set to N/A, ANY, UNDEFINED, numbers, booleans, None, blanks or other headers' values;
- the failure paths the tables answer without the rmap: do-not-reprocess (ACS WFC gain
  0.5), no match, invalid values; and the fallback hook they leave to it (WFPC2 flats);
- `DateTable` combining against its definition.
"""

from __future__ import annotations

import bisect
import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crds_events.rules.bestrefs import DatasetError, load_context
from crds_events.rules.datetables import MISS, DateTable, _first_of

CONTEXTS = {
    "hst_0001": ("hst/mappings/hst_0001.pmap", "bestrefs_hst_0001.jsonl"),
    "hst_0002": ("hst/mappings/hst_0002.pmap", "bestrefs_hst_0002.jsonl"),
    "jwst": ("jwst/mappings/jwst_0001.pmap", "bestrefs_jwst.jsonl"),
}


def _context(corpus, name):
    context = load_context(corpus / "contexts" / CONTEXTS[name][0])
    context.cache_results = False  # every answer computed: the plans are what is tested
    return context


def _headers(corpus, name):
    with open(corpus / "oracle" / CONTEXTS[name][1], encoding="utf-8") as lines:
        return [json.loads(line)["header"] for line in lines]


def _plain(context, header, types=None):
    """What `best_references` answers without plans: each rmap's own lookup."""
    try:
        instrument, minimized = context.minimized_header(header)
        wanted = tuple(sorted({t.lower() for t in types})) if types is not None else None
        results = context.compute_plain(instrument, minimized, wanted)
    except DatasetError as exc:
        return {"error": exc.not_found}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in results.items()}


def _fast(context, header, types=None):
    try:
        return context.best_references(header, types)
    except DatasetError as exc:
        return {"error": exc.not_found}


_DATE_KEYS = (("DATE-OBS", "TIME-OBS"), ("META.OBSERVATION.DATE", "META.OBSERVATION.TIME"))


def _moved(header, year):
    moved = dict(header)
    for date_key, _time_key in _DATE_KEYS:
        if isinstance(moved.get(date_key), str) and len(moved[date_key]) >= 10:
            moved[date_key] = f"{year:04d}{moved[date_key][4:]}"
    return moved


@pytest.mark.corpus
@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_new_datasets_answer_as_the_rmaps_own_lookups(corpus, name):
    context = _context(corpus, name)
    rng = random.Random(7)
    checked = 0
    for header in _headers(corpus, name):
        # before every rule, in the thick of them, and far ahead: each a new dataset
        for year in (1975, rng.randint(1990, 2030), 2099):
            moved = _moved(header, year)
            assert _fast(context, moved) == _plain(context, moved), moved
            checked += 1
    assert checked > 300
    assert any(plan._rows for plan in context._plans.values()), "the plans were not used"


_DATES = st.sampled_from([
    "2005-03-04", "1991-01-01", "2030-12-31", "2009-05-13", "2009-05-14", "1970-01-01",
    "2005/03/04", "03/04/2005", "04/03/95", "Mar 04 2005", "2005-03-04T10:11:12", "",
    "UNDEFINED", "not a date", "2005-13-45", "20050304:101112", "N/A",
])
_TIMES = st.sampled_from([
    "10:11:12", "00:00:00", "23:59:59", "10:11", "10:11:12.5", "", "UNDEFINED", "25:00:00",
    "10:11:12 UT", "noon",
])
_ODD = st.sampled_from(["N/A", "ANY", "UNDEFINED", "", " ", "*", "-999", "0", "1.0", None, 0,
                        0.5, 1.4, True, False, "NONE", "OMIT", "PERFORM", "WFC", "HRC"])


@st.composite
def _datasets(draw, pool):
    header = dict(draw(st.sampled_from(pool)))
    for date_key, time_key in _DATE_KEYS:
        if date_key in header or draw(st.booleans()):
            header[date_key] = draw(_DATES)
            header[time_key] = draw(_TIMES)
    keys = sorted(k for k in header if "INSTRUME" not in k and "NAME" not in k)
    for key in draw(st.lists(st.sampled_from(keys), max_size=3)) if keys else ():
        other = draw(st.sampled_from(pool))
        header[key] = draw(st.one_of(_ODD, st.just(other.get(key, "UNDEFINED"))))
    if keys and draw(st.booleans()):
        header.pop(draw(st.sampled_from(keys)), None)
    return header


@pytest.mark.corpus
@pytest.mark.parametrize("name", ["hst_0001", "jwst"])
def test_odd_dates_and_values_answer_as_the_rmaps_own_lookups(corpus, name):
    context = _context(corpus, name)  # shared by the examples: rows and tables build up
    pool = _headers(corpus, name)
    types = sorted({t for h in pool[:50] for t in _plain(context, h) if t != "error"})

    @settings(max_examples=400, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(_datasets(pool), st.one_of(st.none(), st.lists(st.sampled_from(types or ["x"]),
                                                          min_size=1, max_size=3)))
    def check(header, wanted):
        assert _fast(context, header, wanted) == _plain(context, header, wanted), header

    check()


@pytest.mark.corpus
def test_failures_answered_by_the_tables_and_the_fallback_left_to_the_rmap(corpus):
    context = _context(corpus, "hst_0001")
    acs = next(h for h in _headers(corpus, "hst_0001")
               if h.get("INSTRUME") == "ACS" and h.get("DETECTOR") == "WFC")
    wfpc2 = next(h for h in _headers(corpus, "hst_0001") if h.get("INSTRUME") == "WFPC2")
    cases = []
    for gain in ("0.5", "1.4", "2.0", "7.0"):  # do-not-reprocess gains make misses N/A
        for year in (1975, 2005, 2020):
            cases.append(_moved({**acs, "CCDGAIN": gain}, year))
    for filters in (("F555W", "F814W"), ("F814W", "F555W"), ("F336W", "F336W")):
        for year in (1975, 1995, 2008):
            cases.append(_moved({**wfpc2, "FILTNAM1": filters[0], "FILTNAM2": filters[1]}, year))
    cases.append({**acs, "DETECTOR": "NOSUCH"})  # an invalid value
    for header in cases * 2:  # the second time from the plans' rows
        assert _fast(context, header) == _plain(context, header), header
    answers = [_fast(context, h) for h in cases]
    values = {v for a in answers for v in a.values() if isinstance(v, str)}
    assert "NOT FOUND n/a" in values and any(v.startswith("NOT FOUND") and v != "NOT FOUND n/a"
                                             for v in values)


def _at(table, date):
    return table.values[bisect.bisect_right(table.keys, date)]


_TABLE_VALUES = st.sampled_from(["a.fits", "b.fits", "c.fits", MISS])


@st.composite
def _tables(draw, parameters=("DATE-OBS", "TIME-OBS")):
    keys = sorted(set(draw(st.lists(st.integers(0, 30), max_size=6))))
    values = [draw(_TABLE_VALUES) for _ in range(len(keys) + 1)]
    if not keys and draw(st.booleans()):
        return DateTable.constant(values[0])  # no date parameters: does not read the date
    return DateTable([f"{k:02d}" for k in keys], values, parameters)


@given(_tables(), _tables())
def test_first_of_answers_the_first_table_unless_it_misses(first, then):
    combined = _first_of(first, then)
    assert combined is not None
    for day in range(-1, 32):
        date = f"{day:02d}" if day >= 0 else ""
        want = _at(first, date)
        if want is MISS:
            want = _at(then, date)
        assert _at(combined, date) == want
    # the walk reads the date where its first reached UseAfter reads it
    expected = first.parameters or (then.parameters if first.values[0] is MISS else ())
    assert combined.parameters == expected


@given(_tables(("DATE-OBS",)), _tables(("DATE-OBS", "TIME-OBS")))
def test_two_date_spellings_are_not_combined(first, then):
    if first.parameters and then.parameters and MISS in first.values:
        assert _first_of(first, then) is None
