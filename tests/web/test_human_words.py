"""Issue 18 §10 and the seed's habits: words and units for people (durations, labels, event
summaries without JSON, latency units), Set Context's reason pre-filled from a
one-submission change, and the age of each pipeline's pushed context.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from fixtures.forms import Site, post, submit, text_of
from fixtures.submissions import make_flat

from crds_events import events as ev
from crds_events.web.pages import words
from crds_events.web.plots import _latency_unit


def test_durations_labels_and_summaries_read_as_words():
    assert [words.duration(s) for s in (0, 0.0004, 0.4, 12, 150, 7300, 4 * 86400)] == [
        "0.0 s", "0 ms", "0.4 s", "12 s", "2.5 min", "2.0 h", "4.0 days"]
    now = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    assert words.age("2024-05-01T11:55:00Z", now) == "5.0 min ago"
    assert words.age("not a time") == ""
    assert words.label("certify_status") == "Certify status"
    assert words.label("change_level") == "Change level"
    text = words.summary({"context": "jwst_0002.pmap", "previous": "", "files": ["a", "b"],
                          "description": "it's new", "auto_rename": True})
    assert text == "Context: jwst_0002.pmap; Files: a, b; Description: it's new; Auto rename: yes"
    assert "\\u0027" not in text and "{" not in text
    assert words.summary({"description": "x" * 300}, 50).endswith("…")
    # delivery latency in the unit its size calls for, never 0.0003 hours
    assert _latency_unit([0.0003]) == ("seconds", 3600.0)
    assert _latency_unit([0.5]) == ("minutes", 60.0)
    assert _latency_unit([5.0]) == ("hours", 1.0)


@pytest.fixture
def site(tmp_path):
    site = Site(tmp_path)
    yield site
    site.close()


def _confirmed(site, tmp_path, seed: int, description: str) -> str:
    jane = site.client("jane")
    flat = make_flat(tmp_path / f"f{seed}.fits", "nircam", f"F{100 + seed}W", seed=seed)
    sid = submit(jane, [flat], description=description).headers["Location"].split("/")[2]
    outcome = site.process(sid)
    assert isinstance(outcome, ev.SubmissionReady), outcome
    assert post(jane, f"/submissions/{sid}/confirm", {},
                form_page=f"/submissions/{sid}/confirm").status_code == 302
    return outcome.new_context


def test_set_context_reason_is_prefilled_from_a_one_submission_change(site, tmp_path):
    olga = site.client("olga")
    empty = olga.get("/operate/context").text  # edit == latest: nothing to suggest
    assert re.search(r'<textarea name="reason"[^>]*></textarea>', empty)
    new = _confirmed(site, tmp_path, 1, "Fresh NIRCam F101W flat")
    form = olga.get("/operate/context").text
    assert f'name="context" list="pmaps" value="{new}"' in form
    assert re.search(r'<textarea name="reason"[^>]*>Fresh NIRCam F101W flat</textarea>', form)
    # two submissions since latest: the operator writes the reason
    newer = _confirmed(site, tmp_path, 2, "Another flat")
    form = olga.get("/operate/context").text
    assert f'value="{newer}"' in form
    assert re.search(r'<textarea name="reason"[^>]*></textarea>', form)
    # a context asked for by name: the one submission that made it since latest
    asked = olga.get("/operate/context", query_string={"context": new}).text
    assert re.search(r'<textarea name="reason"[^>]*>Fresh NIRCam F101W flat</textarea>', asked)
    # a submitter gets no form, so no suggestion either
    assert "Fresh NIRCam" not in text_of(site.client("jane").get("/operate/context")).split(
        "Recent changes")[0]


def test_pipelines_show_the_age_of_the_context_they_run(site):
    from crds_events.contexts.pipelines import add_pipeline
    from crds_events.contexts.remote import push_remote_context
    from crds_events.store.projections import rebuild

    key = add_pipeline(site.store, "ops-pipeline").key
    push_remote_context(site.settings, site.store, key, site.pmap)
    rebuild(site.store)
    page = site.client("olga").get("/operate/pipelines").text
    assert re.search(r'class="muted context-age">\(made [\d.]+ (ms|s|min) ago\)', page)
    assert re.search(r'class="muted age">\([\d.]+ (ms|s|min) ago\)', page)
