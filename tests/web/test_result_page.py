"""Issue 18 §4-5: the ReDCaT checklist as typed fields, and a result page that puts the
evidence first and the decision last, behind a confirmation step.

Real parts: a JWST root on disk, the web app through Flask's test client, the ingest
watcher's scan and the submission worker, the handler runner with the e-mail composer.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.forms import Site, post, submit, text_of
from fixtures.submissions import make_flat

from crds_events import events as ev
from crds_events.contexts import pointers as contexts
from crds_events.handlers.email import EmailComposer
from crds_events.handlers.runner import HandlerRunner
from crds_events.submissions import checklist
from crds_events.web.pages.result_view import review_view

CHECKLIST = {"calpipe_version": "1.15.0", "history_updated": "yes",
             "pedigree_updated": "no", "useafter_matches": "n/a",
             "correctness_testing": "Compared with the previous flat: < 0.1% change"}


@pytest.fixture
def site(tmp_path):
    site = Site(tmp_path)
    yield site
    site.close()


def _ready(site, tmp_path: Path, **fields) -> tuple[str, ev.SubmissionReady]:
    """jane's READY submission of a NIRCam F070W flat: it replaces jwst_nircam_flat_0001
    (same selector and use-after date)."""
    client = site.client("jane")
    flat = make_flat(tmp_path / "flat_a.fits", "nircam", "F070W", seed=5,
                     useafter="2022-01-01T00:00:00")
    response = submit(client, [flat], **fields)
    assert response.status_code == 302, text_of(response)
    sid = response.headers["Location"].split("/")[2]
    outcome = site.process(sid)
    assert isinstance(outcome, ev.SubmissionReady), outcome
    return sid, outcome


def test_checklist_is_typed_and_shown_on_the_result_page_json_and_ready_email(site, tmp_path):
    runner = HandlerRunner(site.store, [EmailComposer(site.settings, base_url="http://x")])
    runner.setup()  # the composer mails what follows its setup
    form = site.client("jane").get("/submit").text
    # yes/no and choice items are menus, text items are text boxes
    assert '<select id="rc-history_updated" name="history_updated">' in form
    assert '<option>N/A</option>' in form
    assert '<input id="rc-calpipe_version" name="calpipe_version"' in form

    sid, _ = _ready(site, tmp_path, **CHECKLIST)
    # stored as the manifest fields they always were, typed: yes/no as booleans
    started = next(r.event for r in site.store.read_stream(ev.submission_stream(sid))
                   if isinstance(r.event, ev.SubmissionStarted))
    assert started.redcat == {"calpipe_version": "1.15.0", "history_updated": True,
                              "pedigree_updated": False, "useafter_matches": "N/A",
                              "correctness_testing": CHECKLIST["correctness_testing"]}

    client = site.client("jane")
    page = client.get(f"/submissions/{sid}")
    table = text_of(page).split("ReDCaT checklist", 1)[1].split("Certify results", 1)[0]
    assert "HISTORY updated with the files' history? yes" in table
    assert "PEDIGREE keyword updated? no" in table
    assert "USEAFTER matches the files it replaces? N/A" in table
    assert "Compared with the previous flat: < 0.1% change" in table
    twin = client.get(f"/submissions/{sid}.json").json
    assert {c["name"]: c["value"] for c in twin["checklist"]}["history_updated"] is True
    assert twin["status"] == "READY" and twin["state"] == "ready"

    runner.run_until_idle()
    ready = [r.event for r in site.store.read_all(types=["EmailQueued"])
             if r.event.kind == "READY" and r.event.about == ev.submission_stream(sid)]
    assert len(ready) == 1
    body = ready[0].body
    assert "ReDCaT checklist:" in body
    assert "  HISTORY updated with the files' history?: yes" in body
    assert "  Calibration pipeline version used to make and test the files: 1.15.0" in body


def test_a_bad_checklist_answer_keeps_the_input_names_the_field_and_drops_nothing(
        site, tmp_path):
    client = site.client("jane")
    flat = make_flat(tmp_path / "flat.fits", "nircam", seed=1)
    head = site.head()
    response = submit(client, [flat], history_updated="maybe", useafter_matches="perhaps",
                      calpipe_version="1.2.3", description="kept description")
    assert response.status_code == 400
    assert 'data-field="history_updated">&#39;maybe&#39;: answer yes or no' in response.text
    assert "one of yes, no, N/A" in text_of(response)
    assert 'value="1.2.3"' in response.text and "kept description" in response.text
    assert '<details id="checklist" open>' in response.text  # the error is not hidden
    drop = Path(site.settings.ingest) / "jane"
    assert not drop.exists() or not any(drop.iterdir())
    assert site.head() == head


def test_result_page_evidence_first_decision_last_behind_a_confirmation_step(site, tmp_path):
    sid, outcome = _ready(site, tmp_path)
    client = site.client("jane")
    page = client.get(f"/submissions/{sid}").text
    order = [page.index(marker) for marker in (
        'id="summary"', 'id="certify"', 'id="logical-diff"', 'id="text-diff"',
        'id="actions"')]
    assert order == sorted(order), order
    # logical differences as a table of rules / selector / action / change, names linked
    diff = page.split('id="logical-diff"', 1)[1].split("</table>", 1)[0]
    assert "<th>Rules</th><th>Selector</th><th>Action</th><th>Change</th>" in diff
    assert "('" not in diff  # no raw Python tuples
    official = next(n for n in outcome.files if n.endswith(".fits"))
    assert f'href="/browse/{official}"' in diff
    # the new reference links to its differences from the one it replaces
    assert (f'class="diff-link" href="/diff/jwst_nircam_flat_0001.fits/{official}"'
            in page)

    # the confirm button leads to a question; asking records nothing
    head = site.head()
    question = client.get(f"/submissions/{sid}/confirm")
    assert question.status_code == 200 and 'id="confirm-final"' in question.text
    assert outcome.new_context in text_of(question)
    assert site.head() == head
    sam = site.client("sam")
    assert sam.get(f"/submissions/{sid}/confirm").status_code == 409  # not sam's to confirm
    assert site.app.test_client().get(f"/submissions/{sid}/confirm").status_code == 302
    assert site.head() == head

    done = post(client, f"/submissions/{sid}/confirm", {},
                form_page=f"/submissions/{sid}/confirm")
    assert done.status_code == 302
    assert contexts.get_context(site.store, "edit") == outcome.new_context
    after = client.get(f"/submissions/{sid}").text
    assert 'id="delivery"' in after and 'id="actions"' not in after
    assert "delivery.js" in after
    progress = client.get(f"/submissions/{sid}/delivery.json").json
    assert progress["state"] == "requested"
    assert [s["step"] for s in progress["steps"]] == ["requested", "created", "archiving",
                                                      "archived"]
    assert progress["steps"][0]["at"] and not progress["steps"][-1]["at"]
    # a decided submission has no confirmation step any more
    again = client.get(f"/submissions/{sid}/confirm")
    assert again.status_code == 409 and "CONFIRMED" in text_of(again)


def test_errors_are_said_once():
    repeated = "NAXIS1: value 10 not in 2048"
    shown = {"reason": "certify found errors", "result": {
        "errors": [f"flat.fits: {repeated}", "flat.fits: " + repeated, "another problem"],
        "files": [{"original_name": "flat.fits", "errors": [repeated, repeated],
                   "certify": {"messages": [
                       {"level": "error", "keyword": "NAXIS1", "reason": repeated},
                       {"level": "error", "keyword": "NAXIS1", "reason": repeated},
                       {"level": "info", "reason": "ignored"}]}}],
        "warnings": ["w", "w"]}}
    shown["result"]["generated_mappings"] = {"a.pmap": "", "a.rmap": ""}
    shown["result"]["rules_certify"] = {
        name: {"status": "WARNINGS", "messages": [{"level": "warning", "reason": "w"},
                                                  {"level": "warning", "reason": "rule x"}]}
        for name in ("a.pmap", "a.rmap")}
    view = review_view(shown)
    # a rules warning already in the warnings is not repeated; a new one is said once
    assert view["rules_messages"] == {"a.pmap": [{"level": "warning", "text": "warning: rule x"}],
                                      "a.rmap": []}
    texts = [m["text"] for m in view["files"][0]["messages"]]
    assert len(texts) == 1 and repeated in texts[0]
    assert view["errors"] == ["flat.fits: " + repeated, "another problem"]
    assert view["warnings"] == ["w"] and view["reason"] == "certify found errors"


def test_checklist_normalize_types():
    assert checklist.normalize("history_updated", "Yes") == (True, "")
    assert checklist.normalize("history_updated", False) == (False, "")
    assert checklist.normalize("useafter_matches", "n/a") == ("N/A", "")
    assert checklist.normalize("calpipe_version", 1.15) == ("1.15", "")
    assert checklist.normalize("calpipe_version", "  ") == (None, "")
    value, problem = checklist.normalize("history_updated", "maybe")
    assert value is None and "answer yes or no" in problem
    assert "unknown ReDCaT" in checklist.normalize("no_such_item", "x")[1]
