"""Issue 18 §6: one vocabulary of submission states, CRDS's (STARTED, READY, BAD FILES,
FAIL, CONFIRMED, FORCED, CANCELLED), the same on the monitor, the result page, the list,
the JSON twins and the e-mails; every submission listed, a lock-refused one too (with a
result page that says why); rejected uploads never in the public catalog.
"""

from __future__ import annotations

import pytest
from fixtures.forms import Site, sse_events, submit, text_of
from fixtures.submissions import make_flat

from crds_events import events as ev
from crds_events.handlers.email import EmailComposer
from crds_events.handlers.runner import HandlerRunner
from crds_events.store.projections import rebuild
from crds_events.submissions import states


@pytest.fixture
def site(tmp_path):
    site = Site(tmp_path)
    yield site
    site.close()


def test_every_code_has_one_crds_word():
    assert {states.word(c) for c in states.CODES} == {
        "STARTED", "READY", "BAD FILES", "FAIL", "CONFIRMED", "FORCED", "CANCELLED"}
    assert states.word("processing") == "STARTED"  # not a CRDS state: still STARTED
    for code in states.CODES:
        assert states.code_of(states.word(code)) == code
        assert states.code_of(code) == code
    assert states.code_of("bad-files") == "rejected"
    assert states.code_of("REJECTED") == "rejected" and states.code_of("nonsense") == ""


def _word_on_pages(client, sid: str) -> dict[str, str]:
    """The word each page shows for submission ``sid``."""
    monitor = client.get(f"/submissions/{sid}/monitor").text
    result = client.get(f"/submissions/{sid}").text
    listing = client.get("/submissions/").text
    row = listing.split(f">{sid}</a>", 1)[1].split("</tr>", 1)[0]
    done = [data for _, kind, data in sse_events(client.get(f"/submissions/{sid}/events").text)
            if kind == "done"]
    rows = {r["submission_id"]: r for r in client.get("/submissions.json").json["submissions"]}
    return {
        "monitor": monitor.split('id="outcome"', 1)[1].split(">", 1)[1].split("<", 1)[0],
        "result": result.split('id="state"', 1)[1].split(">", 1)[1].split("<", 1)[0],
        "list": row.split('class="state-', 1)[1].split(">", 1)[1].split("<", 1)[0],
        "stream": done[-1]["status"] if done else "",
        "result.json": client.get(f"/submissions/{sid}.json").json["status"],
        "list.json": rows[sid]["status"],
    }


def test_one_word_per_state_on_every_page_json_and_email(site, tmp_path):
    runner = HandlerRunner(site.store, [EmailComposer(site.settings, base_url="http://x")])
    runner.setup()
    client = site.client("jane")
    bad = make_flat(tmp_path / "bad.fits", "nircam", "F150W", seed=2, bad=True)
    rejected = submit(client, [bad]).headers["Location"].split("/")[2]
    assert isinstance(site.process(rejected), ev.SubmissionRejected)
    good = make_flat(tmp_path / "good.fits", "nircam", "F200W", seed=3)
    ready = submit(client, [good]).headers["Location"].split("/")[2]
    assert isinstance(site.process(ready), ev.SubmissionReady)

    assert set(_word_on_pages(client, rejected).values()) == {"BAD FILES"}
    assert set(_word_on_pages(client, ready).values()) == {"READY"}
    runner.run_until_idle()
    kinds = {r.event.about: r.event.kind for r in site.store.read_all(types=["EmailQueued"])
             if r.event.kind != "STARTED"}
    assert kinds[ev.submission_stream(rejected)] == "BAD FILES"
    assert kinds[ev.submission_stream(ready)] == "READY"

    # the list filters by the word or by the code; anything else is a clear 400
    for asked in ("BAD FILES", "rejected", "bad-files"):
        found = client.get("/submissions.json", query_string={"state": asked}).json
        assert [r["submission_id"] for r in found["submissions"]] == [rejected], asked
    refused = client.get("/submissions/?state=lost")
    assert refused.status_code == 400 and "BAD FILES" in text_of(refused)
    options = client.get("/submissions/").text.split('name="state"', 1)[1].split("</select>")[0]
    assert '<option value="rejected">BAD FILES</option>' in options

    # the rejected upload is nowhere in the public catalog; the archived context is
    rebuild(site.store)  # the projections, as the server's runner keeps them
    catalog = site.app.test_client().get("/catalog.json?limit=1000").json["files"]
    names = {f["name"] for f in catalog}
    certified = {r.event.name for r in site.store.read_stream(ev.submission_stream(rejected))
                 if isinstance(r.event, ev.FileCertified)}
    assert certified and not certified & names
    assert site.pmap in names and {f["state"] for f in catalog} <= {
        "confirmed", "delivered", "archived"}
    assert site.app.test_client().get("/catalog?state=cancelled").status_code == 400


def test_a_lock_refused_submission_is_listed_with_a_result_page_that_says_why(site, tmp_path):
    jane = site.client("jane")
    flat = make_flat(tmp_path / "a.fits", "nircam", "F200W", seed=4)
    held = submit(jane, [flat]).headers["Location"].split("/")[2]
    assert isinstance(site.process(held), ev.SubmissionReady)  # jane holds the NIRCAM lock

    sam = site.client("sam")
    other = make_flat(tmp_path / "b.fits", "nircam", "F150W", seed=6)
    refused = submit(sam, [other]).headers["Location"].split("/")[2]
    outcomes = site.take()
    assert [(o.submission_id, o.state) for o in outcomes] == [(refused, "rejected")]
    assert "lock" in outcomes[0].reason

    rows = {r["submission_id"]: r for r in sam.get("/submissions.json").json["submissions"]}
    assert rows[refused]["status"] == "BAD FILES" and "lock" in rows[refused]["message"]
    listing = text_of(sam.get("/submissions/"))
    assert refused in listing and "lock" in listing.split(refused, 1)[1]
    page = sam.get(f"/submissions/{refused}")
    text = text_of(page)
    assert page.status_code == 200 and "BAD FILES" in text
    assert "Refused before processing started" in text and "lock" in text
    assert set(_word_on_pages(sam, refused).values()) == {"BAD FILES"}
