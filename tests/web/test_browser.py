"""The web UI in a real browser: Playwright drives Debian's chromium (headless) against a
real server on 127.0.0.1 - handler runner, ingest watcher and submission worker, delivery
worker and watcher, e-mail outbox, the waitress web server - with the archive poller
simulator (ops/archive_poller.py) archiving deliveries as SDP's poller would.

The story: a submitter logs in, uploads a reference through the batch form, watches the
live monitor reach READY, reviews the diffs and confirms; the new context is in the
history. The delivery is archived (by the poller, through the real delivery path); an
operator sets the new context latest; "as of" the event before the confirm shows the earlier
state. A submitter gets no set-context form and a 403 when posting anyway; a form posted
without its CSRF token fails. Every page is screenshotted to test-artifacts/browser/.
"""

from __future__ import annotations

import re

import pytest
from fixtures.browser import TIMEOUT_MS, LiveSite, log_in, new_page, screenshot
from fixtures.submissions import make_flat
from helpers import wait_for

from crds_events import events as ev
from crds_events.contexts import pointers as contexts
from crds_events.delivery.publish import delivery_states

pytestmark = pytest.mark.slow


@pytest.fixture
def live(tmp_path):
    with LiveSite(tmp_path) as site:
        yield site


def _shot(page, name: str) -> None:
    screenshot(page, "browser", name)


def _login(page, url: str, name: str) -> None:
    log_in(page, url, name)
    page.goto(f"{url}/submissions/")
    assert name in page.inner_text("#current-user")


def _wait(condition, what: str, timeout: float = 30.0):
    value = wait_for(condition, timeout, interval=0.1)
    if not value:
        raise AssertionError(f"timed out waiting for {what}")
    return value


def test_submit_review_confirm_archive_set_latest_time_travel(chromium, live, tmp_path):
    store = live.server.store
    flat = make_flat(tmp_path / "nircam_flat.fits", "nircam", "F200W", seed=42)
    page = new_page(chromium)

    # --- log in, fill the batch form ---------------------------------------------------
    page.goto(f"{live.url}/login")
    _shot(page, "01-login")
    _login(page, live.url, "jane")
    page.goto(f"{live.url}/submit")
    page.set_input_files("input[name=files]", str(flat))
    page.select_option("select[name=instrument]", "NIRCAM")
    page.fill("textarea[name=description]", "New NIRCam F200W flat from the browser")
    page.select_option("select[name=change_level]", "MODERATE")
    _shot(page, "02-submit-form")
    page.click("#submit-button")

    # --- the live monitor reaches READY (server-sent events) --------------------------
    page.wait_for_url(re.compile(r"/submissions/[^/]+/monitor$"))
    sid = page.url.rstrip("/").split("/")[-2]
    assert page.get_attribute("#monitor", "data-done") == "0"  # rendered before the outcome
    page.wait_for_function(
        "document.getElementById('outcome').textContent === 'READY'", timeout=TIMEOUT_MS)
    lines = page.locator("#monitor li").all_inner_texts()
    progress = [r.event.message for r in store.read_stream(ev.submission_stream(sid))
                if r.type == ev.SubmissionProgress.type]
    assert progress and all(any(m in line for line in lines) for m in progress)
    assert any(line.endswith(("READY: 4 file(s), new context jwst_0002.pmap",))
               for line in lines), lines
    _shot(page, "03-monitor-ready")

    # --- review the result and its diffs, confirm -------------------------------------
    page.click("#result-link")
    page.wait_for_selector("#logical-diff")
    outcome = store.read_stream(ev.submission_stream(sid))[-1].event
    assert isinstance(outcome, ev.SubmissionReady)
    new_pmap = outcome.new_context
    assert page.inner_text("#new-context") == new_pmap
    assert "added Match rule for jwst_nircam_flat_0002.fits" in page.inner_text("#logical-diff")
    assert "jwst_nircam_flat_0002.fits" in page.inner_text("#text-diff")
    assert "jwst_nircam_flat_0002.fits" in page.inner_text("#certify")
    _shot(page, "04-result-ready")
    before_confirm = store.head()
    page.click("#confirm")  # issue 18: Confirm asks once more before anything is recorded
    page.click("#confirm-final")
    page.wait_for_selector("#state.confirmed")
    assert contexts.get_context(store, "edit") == new_pmap
    _shot(page, "05-result-confirmed")

    # --- the new context is in the history --------------------------------------------
    page.goto(f"{live.url}/submissions/")
    assert new_pmap in page.inner_text("#submissions")
    _shot(page, "06-submission-history")
    page.goto(f"{live.url}/history")
    assert new_pmap in page.inner_text("main")
    _shot(page, "07-context-history")

    # --- archived through the delivery path (worker -> .cat -> poller -> watcher) ------
    def archived():
        infos = [i for i in delivery_states(store).values() if i.submission_id == sid]
        return infos and infos[0].state == "archived" and infos[0]

    delivery = _wait(archived, f"the delivery of {sid} to be archived")
    page.goto(f"{live.url}/operate/deliveries")
    assert delivery.name in page.inner_text("#deliveries")
    assert "archived" in page.inner_text("#deliveries")
    _shot(page, "08-deliveries")

    # --- a submitter: no set-context form, 403 when posting anyway ----------------------
    page.goto(f"{live.url}/operate/context")
    assert page.locator("#set-context-form").count() == 0
    assert page.locator("#no-set-context").is_visible()
    _shot(page, "09-context-as-submitter")
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    head = store.head()
    refused = page.request.post(f"{live.url}/operate/context", form={
        "kind": "latest", "context": new_pmap, "reason": "not mine to set",
        "csrf_token": token})
    assert refused.status == 403 and "may not set context" in refused.text()
    # --- a form posted without its CSRF token fails ------------------------------------
    page.evaluate("document.querySelector('#logout').form"
                  ".querySelector('input[name=csrf_token]').remove()")
    page.click("#logout")
    page.wait_for_load_state()
    assert "CSRF token missing" in page.inner_text("main")
    _shot(page, "10-csrf-missing")
    assert store.head() == head
    page.goto(f"{live.url}/submit")  # still logged in: the logout did not happen
    assert "jane" in page.inner_text("#current-user")
    page.click("#logout")
    page.wait_for_url(lambda url: "/submit" not in url)
    page.goto(f"{live.url}/submit")  # logged out: the form asks for a login first
    page.wait_for_selector("#login-form")

    # --- an operator sets the new context latest ------------------------------------
    op_page = new_page(chromium)
    _login(op_page, live.url, "olga")
    op_page.goto(f"{live.url}/operate/context")
    op_page.select_option("select[name=kind]", "latest")
    op_page.fill("input[name=context]", new_pmap)
    op_page.fill("textarea[name=reason]", "Operational after browser review")
    op_page.click("#set-context")
    op_page.wait_for_selector("#pointer-latest")
    assert op_page.inner_text("#pointer-latest") == new_pmap
    assert contexts.get_context(store, "latest") == new_pmap
    _shot(op_page, "11-set-latest")
    op_page.goto(f"{live.url}/operate/emails")
    _shot(op_page, "12-emails")

    # --- the pipeline syncs and pushes its context; reprocessing for the transition ------
    from crds_events.contexts.pipelines import add_pipeline
    from crds_events.contexts.remote import push_remote_context

    issued = add_pipeline(store, live.settings.release_pipeline, actor="olga")
    push_remote_context(live.settings, store, issued.key, new_pmap)
    op_page.goto(f"{live.url}/operate/pipelines")
    assert op_page.inner_text("#commanded") == new_pmap
    assert "yes" in op_page.inner_text("#pipelines")  # in sync
    _shot(op_page, "13-pipelines")
    computed = _wait(lambda: [r for r in store.read_stream(ev.reprocessing_stream("jwst"))
                              if r.type == ev.AffectedDatasetsComputed.type],
                     "the affected datasets of the new latest context")
    op_page.goto(f"{live.url}/operate/reprocessing")
    row = op_page.inner_text("#reprocessing")
    assert f"{live.pmap} → {new_pmap}" in row
    assert str(computed[-1].event.count) in row
    _shot(op_page, "14-reprocessing")
    op_page.goto(f"{live.url}/operate/bad-files")
    _shot(op_page, "15-bad-files")

    # --- time travel: as of the event before the confirm --------------------------------
    op_page.goto(f"{live.url}/asof/{before_confirm}")
    _shot(op_page, "16-asof-before-confirm")
    then = op_page.request.get(f"{live.url}/asof/{before_confirm}.json").json()
    pointers = {p["kind"]: p["context"] for p in then["pointers"]}
    assert pointers == {"edit": live.pmap, "latest": live.pmap}
    # then, the new files were only certified in a submission: not cataloged, not archived
    states_then = {f["name"]: f["state"] for f in then["files"]}
    assert states_then[new_pmap] not in ("confirmed", "delivered", "archived")
    assert states_then[live.pmap] == "archived"
    assert then["deliveries"] == []
    now = op_page.request.get(f"{live.url}/asof/{store.head()}.json").json()
    pointers_now = {p["kind"]: p["context"] for p in now["pointers"]}
    assert pointers_now == {"edit": new_pmap, "latest": new_pmap}
    assert {f["name"]: f["state"] for f in now["files"]}[new_pmap] == "archived"

    op_page.context.close()
    page.context.close()
