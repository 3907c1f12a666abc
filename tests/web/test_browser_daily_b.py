"""Issue 18 (part B) in a real browser: Playwright drives Debian's chromium against a real
server (handler runner, ingest watcher and submission worker, delivery worker, e-mail
outbox, waitress) as a submitter, an operator and an anonymous visitor.

What is asserted is what is on screen: the ReDCaT checklist answers on the result page and
in the READY e-mail; one state word per state across the monitor, the result page and the
list; the rules display under 200 ms with its sections collapsed, a section's rules loaded
when it is opened; a bad best-references line keeps the input; no page wider than the
viewport at 400 and 1280 px (``document.documentElement.scrollWidth``) over a crawl of the
main pages as anonymous, submitter and operator; anonymous users see only the links they
can open. Screenshots of each step go to test-artifacts/browser-daily-b/.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path

import pytest
from fixtures.browser import TIMEOUT_MS, LiveSite, log_in, new_page, screenshot
from fixtures.submissions import make_flat
from helpers import wait_for

from crds_events import events as ev

WIDTHS = (400, 1280)
VIEWPORT = {"width": 1280, "height": 900}

pytestmark = pytest.mark.slow


@pytest.fixture
def live(tmp_path):
    with LiveSite(tmp_path) as site:
        yield site


def _shot(page, name: str) -> None:
    screenshot(page, "browser-daily-b", name)


def _submit(page, url: str, flat: Path, description: str, checklist: bool = False) -> str:
    page.goto(f"{url}/submit")
    page.set_input_files("input[name=files]", str(flat))
    page.select_option("select[name=instrument]", "NIRCAM")
    page.fill("textarea[name=description]", description)
    if checklist:
        page.click("#checklist summary")
        page.select_option("#rc-history_updated", "yes")
        page.select_option("#rc-keywords_checked", "no")
        page.select_option("#rc-useafter_matches", "N/A")
        page.fill("#rc-calpipe_version", "1.15.0")
    page.click("#submit-button")
    page.wait_for_url(re.compile(r"/submissions/[^/]+/monitor$"))
    return page.url.rstrip("/").split("/")[-2]


def _outcome(page, word: str) -> None:
    page.wait_for_function(f"document.getElementById('outcome').textContent === '{word}'",
                           timeout=TIMEOUT_MS)


def _too_wide(page) -> tuple[int, int] | None:
    width, viewport = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    return (width, viewport) if width > viewport else None


def test_daily_b_checklist_states_rules_forms_and_widths(chromium, live, tmp_path):
    store = live.server.store
    page = new_page(chromium, VIEWPORT)
    log_in(page, live.url, "jane")

    # --- a submission with the checklist answered: READY, answers on screen and mailed ---
    flat = make_flat(tmp_path / "good.fits", "nircam", "F200W", seed=11)
    ready = _submit(page, live.url, flat, "Checked flat", checklist=True)
    _outcome(page, "READY")
    _shot(page, "01-monitor-ready")
    page.click("#result-link")
    page.wait_for_selector("#checklist")
    answers = page.inner_text("#checklist")
    assert re.search(r"HISTORY updated with the files' history\?\s+yes", answers)
    assert re.search(r"Selection keywords checked\?\s+no", answers)
    assert re.search(r"USEAFTER matches the files it replaces\?\s+N/A", answers)
    assert "1.15.0" in answers
    assert page.inner_text("#state") == "READY"
    _shot(page, "02-result-checklist")

    def ready_mail():
        return next((r.event for r in store.read_all(types=["EmailQueued"])
                     if r.event.kind == "READY"
                     and r.event.about == ev.submission_stream(ready)), None)

    mail = wait_for(ready_mail, 30.0, interval=0.2)
    assert mail, "no READY e-mail queued"
    assert "ReDCaT checklist:" in mail.body
    assert "HISTORY updated with the files' history?: yes" in mail.body
    assert "USEAFTER matches the files it replaces?: N/A" in mail.body

    # --- the confirmation step, then the live delivery progress ---------------------------
    page.click("#confirm")
    page.wait_for_selector("#confirm-final")
    _shot(page, "03-confirm-question")
    page.click("#confirm-final")
    page.wait_for_selector("#state.confirmed")
    assert page.inner_text("#state") == "CONFIRMED"
    page.wait_for_function(
        "(document.getElementById('delivery-state') || {}).textContent === 'archived'",
        timeout=TIMEOUT_MS)
    steps = page.locator("#delivery-steps li.done").all_inner_texts()
    assert len(steps) == 4 and "archived" in steps[-1]
    _shot(page, "04-delivery-archived")

    # --- a bad file: BAD FILES on the monitor, the result page and the list ---------------
    bad = make_flat(tmp_path / "bad.fits", "nircam", "F150W", seed=12, bad=True)
    rejected = _submit(page, live.url, bad, "A broken flat")
    _outcome(page, "BAD FILES")
    words = {"monitor": page.inner_text("#outcome")}
    page.goto(f"{live.url}/submissions/{rejected}")
    words["result"] = page.inner_text("#state")
    page.goto(f"{live.url}/submissions/")
    row = page.locator("#submissions tr", has_text=rejected)
    words["list"] = row.locator("td[class^=state-]").inner_text().splitlines()[0]
    confirmed_row = page.locator("#submissions tr", has_text=ready)
    assert confirmed_row.locator("td[class^=state-]").inner_text() == "CONFIRMED"
    assert set(words.values()) == {"BAD FILES"}, words
    assert "REJECTED" not in page.inner_text("main").upper().replace("REJECTED UPLOAD", "")
    _shot(page, "05-submissions-states")

    # --- the rules display: collapsed, under 200 ms, a section loaded when opened ---------
    pmap = next(r.event.new_context for r in store.read_stream(ev.submission_stream(ready))
                if r.type == ev.SubmissionReady.type)
    timings = []
    for _ in range(7):
        page.goto(f"{live.url}/contexts/{pmap}")
        timings.append(page.evaluate(
            "(() => { const n = performance.getEntriesByType('navigation')[0];"
            " return n.responseEnd - n.requestStart; })()"))
    # the bound is the (the page takes ~20 ms); the first load warms the templates
    # and the context, and one request of a loaded 2-core CI machine may stall: the median of
    # the warm loads is what a reader sees (bench/web.py measures the p95 on its own)
    warm = sorted(timings[1:])
    assert warm[len(warm) // 2] < 200, timings
    assert page.locator("details.instrument[open]").count() == 0
    assert page.locator("details.rmap").count() >= 2
    assert page.locator("details.rmap table").count() == 0  # nothing loaded yet
    page.locator("details.instrument", has_text="NIRCAM").locator("summary").first.click()
    section = page.locator("details.rmap", has_text="nircam_flat").first
    section.locator("summary").click()
    section.locator("table").wait_for()
    assert "jwst_nircam_flat_" in section.inner_text()
    page.fill("#rules-q", "miri")
    assert page.locator("details.instrument", has_text="NIRCAM").is_hidden()
    assert page.locator("details.instrument", has_text="MIRI").is_visible()
    _shot(page, f"06-rules-{statistics.median(timings):.0f}ms")

    # --- a bad best-references line keeps the input ---------------------------------------
    page.goto(f"{live.url}/bestrefs")
    typed = "META.INSTRUMENT.NAME = NIRCAM\nnot a keyword line"
    page.fill("textarea[name=header]", typed)
    page.click("form.filters button[type=submit]")
    page.wait_for_selector("#error-header")
    assert page.input_value("textarea[name=header]") == typed
    assert "line 2" in page.inner_text("#error-header")
    _shot(page, "07-bestrefs-bad-line")

    # --- widths: no page wider than the viewport, as anonymous, submitter, operator -------
    public = ["/", "/contexts", "/history", "/catalog", "/activity", "/events", "/bestrefs",
              "/bestrefs/explore", "/plots", f"/contexts/{pmap}", f"/browse/{pmap}",
              f"/diff/{live.pmap}/{pmap}", f"/asof/{store.head()}", "/asof/3"]
    personal = ["/submissions/", f"/submissions/{ready}", f"/submissions/{rejected}",
                f"/submissions/{ready}/monitor", "/submit", "/operate/deliveries",
                "/operate/pipelines", "/operate/reprocessing", "/operate/emails",
                "/operate/context", "/operate/bad-files"]
    op_page = new_page(chromium, VIEWPORT)
    log_in(op_page, live.url, "olga")
    anon_page = new_page(chromium, VIEWPORT)
    too_wide = {}
    for who, viewer, paths in (("anonymous", anon_page, public),
                               ("submitter", page, public + personal),
                               ("operator", op_page, public + personal)):
        for width in WIDTHS:
            viewer.set_viewport_size({"width": width, "height": 900})
            for path in paths:
                response = viewer.goto(f"{live.url}{path}")
                assert response is not None and response.status < 500, (who, path)
                found = _too_wide(viewer)
                if width == 400 and path in ("/", f"/submissions/{ready}", "/operate/deliveries"):
                    _shot(viewer, f"08-{who}-400-{re.sub(r'[^a-z0-9]+', '_', path)}")
                if found:
                    too_wide[(who, width, path)] = found
                    _shot(viewer, f"too-wide-{who}-{width}-{re.sub(r'[^a-z0-9]+', '_', path)}")
    assert not too_wide, too_wide

    # --- anonymous users see only the links they can open --------------------------------
    anon_page.set_viewport_size({"width": 1280, "height": 900})
    anon_page.goto(f"{live.url}/")
    nav = anon_page.locator("nav.main a").all_inner_texts()
    assert "Home" in nav and "Catalog" in nav
    for hidden in ("Submissions", "Deliveries", "Pipelines", "Reprocessing", "E-mails"):
        assert hidden not in nav, nav
    for href in anon_page.locator("nav.main a").evaluate_all("a => a.map(x => x.href)"):
        opened = anon_page.request.get(href, max_redirects=0)
        assert opened.status == 200, href
    _shot(anon_page, "09-anonymous-home")
    op_page.goto(f"{live.url}/")
    assert "Deliveries" in op_page.locator("nav.main a").all_inner_texts()

    op_page.context.close()
    anon_page.context.close()
    page.context.close()
