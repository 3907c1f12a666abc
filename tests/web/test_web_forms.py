"""The authenticated web pages through Flask's test client: login/logout and sessions, CSRF,
role checks, the batch submit form -> monitor (server-sent events) -> result -> confirm /
cancel, set context, mark bad / OK, and the operate read pages.

Every root is a real temp directory with a real SQLite log, seeded through the domain API
(`fixtures.submissions.seed_root`, `crds_events.accounts.users`); submissions are processed by
the real ingest watcher and submission worker, called synchronously.
"""

from __future__ import annotations

import json
import stat
import threading
import time
from pathlib import Path

import pytest
from fixtures.forms import PASSWORD, Site, login, post, sse_events, submit, text_of, token_of
from fixtures.submissions import make_flat

from crds_events import events as ev
from crds_events.accounts import users
from crds_events.contexts import pointers as contexts
from crds_events.web import create_app
from crds_events.web.pages import auth


@pytest.fixture
def site(tmp_path):
    site = Site(tmp_path)
    yield site
    site.close()


# --- sessions and login ------------------------------------------------------------------------


def test_login_logout_and_the_current_user(site):
    client = site.app.test_client()
    assert "Log in" in text_of(client.get("/login"))
    wrong = login(client, "jane", "wrong password")
    assert wrong.status_code == 401
    assert "wrong user name or password" in text_of(wrong)
    unknown = login(client, "nobody")
    assert unknown.status_code == 401
    assert client.get("/submit").status_code == 302  # still anonymous

    ok = login(client, "jane")
    assert ok.status_code == 302 and ok.headers["Location"] == "/"
    page = client.get("/submit")
    assert page.status_code == 200 and "jane" in text_of(page) and "(submitter)" in text_of(page)

    out = post(client, "/logout", {}, form_page="/submit")
    assert out.status_code == 302
    again = client.get("/submit")
    assert again.status_code == 302 and again.headers["Location"].startswith("/login?next=")


def test_login_returns_to_the_page_asked_for_but_never_off_site(site):
    client = site.app.test_client()
    asked = client.get("/operate/context")
    assert asked.status_code == 302
    assert asked.headers["Location"] == "/login?next=/operate/context"
    back = client.post("/login", data={"name": "olga", "password": PASSWORD,
                                       "next": "/operate/context",
                                       "csrf_token": token_of(client)})
    assert back.headers["Location"] == "/operate/context"
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        other = site.app.test_client()
        response = other.post("/login", data={"name": "olga", "password": PASSWORD,
                                              "next": evil, "csrf_token": token_of(other)})
        assert response.status_code == 302
        assert response.headers["Location"] == "/", evil


def test_disabled_account_is_logged_out_at_once(site):
    client = site.client("sam")
    assert client.get("/submit").status_code == 200
    users.disable_user(site.store, "sam", "left")
    assert client.get("/submit").status_code == 302
    assert login(site.app.test_client(), "sam").status_code == 401


def test_secret_key_file_and_cookie_flags(site, tmp_path):
    key_file = site.settings.root / auth.SECRET_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # a second app on the same root signs with the same key: sessions survive a restart
    second = create_app(site.settings, site.store, config={"TESTING": True})
    assert second.secret_key == site.app.secret_key and len(site.app.secret_key) >= 32
    client = site.app.test_client()
    response = login(client, "jane")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    carried = second.test_client()
    carried.set_cookie("crds_events_session", client.get_cookie("crds_events_session").value)
    assert carried.get("/submit").status_code == 200

    key_file.chmod(0o644)
    with pytest.raises(auth.SecretKeyError, match="chmod 600"):
        create_app(site.settings, site.store)
    key_file.chmod(0o600)

    https = Site(tmp_path / "https", web_https=True)
    try:
        cookie = login(https.app.test_client(), "jane").headers["Set-Cookie"]
        assert "Secure" in cookie
    finally:
        https.close()


# --- CSRF and roles ----------------------------------------------------------------------------


def test_post_without_or_with_a_wrong_csrf_token_is_refused_and_changes_nothing(site):
    client = site.client("olga")
    head = site.head()
    form = {"kind": "versions", "context": site.pmap, "reason": "versions for the test"}
    missing = client.post("/operate/context", data=form)
    assert missing.status_code == 400
    assert "CSRF token missing" in text_of(missing)
    wrong = client.post("/operate/context", data={**form, "csrf_token": "x" * 43})
    assert wrong.status_code == 400 and "CSRF token wrong" in text_of(wrong)
    # another session's token is not this session's
    other = site.app.test_client()
    foreign = client.post("/operate/context", data={**form, "csrf_token": token_of(other)})
    assert foreign.status_code == 400
    login_without = site.app.test_client().post("/login", data={"name": "olga",
                                                                "password": PASSWORD})
    assert login_without.status_code == 400
    assert site.head() == head
    assert contexts.get_context(site.store, "versions") is None
    # the same form with the token works (the check is what refused it)
    done = post(client, "/operate/context", form)
    assert done.status_code == 302
    assert contexts.get_context(site.store, "versions") == site.pmap


def test_token_authenticated_endpoints_need_no_csrf_token(site):
    # JSON-RPC carries no cookie authority: a POST without any token is answered normally
    reply = site.app.test_client().post("/json/", json={
        "jsonrpc": "1.0", "method": "get_server_info", "params": [], "id": 1})
    assert reply.status_code == 200 and "CSRF" not in reply.text
    assert reply.json["error"] is None and reply.json["result"]["observatory"] == "jwst"
    # a routing failure under /json/ keeps its own error, not a CSRF refusal
    assert "CSRF" not in site.app.test_client().put("/json/nowhere").text


def test_roles_submitter_sees_no_set_context_form_and_gets_403(site):
    client = site.client("jane")
    page = client.get("/operate/context")
    assert page.status_code == 200
    assert 'id="set-context-form"' not in page.text and "Only operators" in text_of(page)
    head = site.head()
    refused = post(client, "/operate/context",
                   {"kind": "versions", "context": site.pmap, "reason": "trying"},
                   form_page="/submit")
    assert refused.status_code == 403
    assert "may not set context" in text_of(refused)
    bad = post(client, "/operate/bad-files", {"files": site.pmap, "reason": "x",
                                              "action": "bad"}, form_page="/submit")
    assert bad.status_code == 403
    assert site.head() == head

    operator = site.client("olga")
    assert 'id="set-context-form"' in operator.get("/operate/context").text
    assert post(operator, "/operate/bad-files", {"files": site.pmap, "reason": "x",
                                                 "action": "bad"},
                form_page="/operate/context").status_code == 403
    assert site.head() == head


def test_anonymous_users_are_sent_to_login_or_refused(site):
    client = site.app.test_client()
    for path in ("/submit", "/submissions/", "/operate/deliveries", "/operate/emails",
                 "/operate/pipelines", "/operate/reprocessing", "/operate/bad-files"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"], path
    refused = client.post("/operate/context", data={
        "kind": "latest", "context": site.pmap, "reason": "x",
        "csrf_token": token_of(client)})
    assert refused.status_code == 401


# --- batch submit, monitor, result, confirm/cancel --------------------------------------------


def _submit(site, client, files: list[Path], **fields):
    """The batch form (`fixtures.forms.submit`) with other e-mails and a CALPIPE version."""
    return submit(client, files, **{"other_emails": "qa@example.org",
                                    "calpipe_version": "1.15.0", **fields})


def test_submit_monitor_result_confirm(site, tmp_path):
    client = site.client("jane")
    flat = make_flat(tmp_path / "flat_a.fits", "nircam", "F200W", seed=5)
    response = _submit(site, client, [flat])
    assert response.status_code == 302, text_of(response)
    sid = response.headers["Location"].split("/")[2]
    assert response.headers["Location"] == f"/submissions/{sid}/monitor"
    # the drop: the file and a manifest with the form's fields, in the submission's own
    # directory in jane's ingest directory
    drop = Path(site.settings.ingest) / "jane" / sid
    assert (drop / "flat_a.fits").read_bytes() == flat.read_bytes()
    import yaml

    manifest = yaml.safe_load((drop / "submission.yaml").read_text())
    assert manifest["instrument"] == "NIRCAM" and manifest["deliverer"] == "Jane Doe"
    assert manifest["change_level"] == "MODERATE" and manifest["files"] == ["flat_a.fits"]
    assert manifest["redcat"] == {"calpipe_version": "1.15.0"}
    assert manifest["other_emails"] == "qa@example.org"

    # before the server takes it: the stream says nothing and ends within the asked time
    waiting = client.get(f"/submissions/{sid}/events?max=0.3")
    assert waiting.status_code == 200 and sse_events(waiting.text) == []
    assert "WAITING" in text_of(client.get(f"/submissions/{sid}/monitor"))
    # a stopping web server ends open streams at once (not after the full 25 s)
    state = site.app.extensions["crds_events"]
    previous = getattr(state, "stopping", None)
    state.stopping = threading.Event()
    state.stopping.set()
    try:
        started = time.monotonic()
        assert sse_events(client.get(f"/submissions/{sid}/events").text) == []
        assert time.monotonic() - started < 5
    finally:
        state.stopping = previous

    outcome = site.process(sid)
    assert isinstance(outcome, ev.SubmissionReady), outcome

    # server-sent events: every progress line with its log position, then the outcome
    stream = client.get(f"/submissions/{sid}/events")
    assert stream.mimetype == "text/event-stream"
    events = sse_events(stream.text)
    records = site.store.read_stream(ev.submission_stream(sid))
    progress = [r for r in records if r.type == ev.SubmissionProgress.type]
    sent = {data["message"] for _, kind, data in events if kind == "progress"}
    assert {r.event.message for r in progress} <= sent
    assert [i for i, _, _ in events] == sorted(i for i, _, _ in events)
    last_id, last_kind, last = events[-1]
    assert last_kind == "done" and last["state"] == "ready"
    assert last["new_context"] == outcome.new_context
    assert last_id == next(r.position for r in records if r.type == ev.SubmissionReady.type)
    # a reconnect resumes after the last event it saw
    middle = events[len(events) // 2][0]
    resumed = sse_events(client.get(f"/submissions/{sid}/events",
                                     headers={"Last-Event-ID": str(middle)}).text)
    assert [i for i, _, _ in resumed] == [i for i, _, _ in events if i > middle]

    monitor = client.get(f"/submissions/{sid}/monitor")
    assert "READY" in text_of(monitor) and 'id="result-link"' in monitor.text

    result = client.get(f"/submissions/{sid}")
    page = text_of(result)
    assert result.status_code == 200 and "READY" in page
    for name in outcome.files:
        assert name in page
    assert "Logical differences" in page and "Text differences" in page
    assert 'id="confirm"' in result.text and 'id="force"' not in result.text
    # another submitter may force (not confirm) jane's submission; the lock still stops it
    sam = site.client("sam")
    seen_by_sam = sam.get(f"/submissions/{sid}").text
    assert 'id="force"' in seen_by_sam and 'id="confirm"' not in seen_by_sam
    head = site.head()
    forced = post(sam, f"/submissions/{sid}/force", {}, form_page=f"/submissions/{sid}")
    assert forced.status_code == 409 and "still holds the NIRCAM lock" in text_of(forced)
    assert site.head() == head

    confirmed = post(client, f"/submissions/{sid}/confirm", {},
                     form_page=f"/submissions/{sid}")
    assert confirmed.status_code == 302
    assert contexts.get_context(site.store, "edit") == outcome.new_context
    after = text_of(client.get(f"/submissions/{sid}"))
    assert "CONFIRMED" in after and f"new edit context {outcome.new_context}" in after
    # a second confirm: refused with review's reason, nothing recorded
    head = site.head()
    again = post(client, f"/submissions/{sid}/confirm", {}, form_page=f"/submissions/{sid}")
    assert again.status_code == 409 and f"submission {sid}: already confirmed by " in \
        text_of(again)
    assert site.head() == head

    history = client.get("/submissions/")
    assert sid in history.text and outcome.new_context in text_of(history)
    rows = client.get("/submissions.json").json["submissions"]
    assert [(r["submission_id"], r["state"]) for r in rows] == [(sid, "confirmed")]
    deliveries = client.get("/operate/deliveries.json").json["deliveries"]
    assert [d["submission_id"] for d in deliveries] == [sid]
    assert sid in client.get("/operate/deliveries").text


def test_submit_bad_input_names_every_field_and_drops_nothing(site, tmp_path):
    client = site.client("jane")
    flat = make_flat(tmp_path / "flat.fits", "nircam", seed=1)
    head = site.head()
    response = _submit(site, client, [flat], instrument="HUBBLECAM", description="",
                       derive_from="hst_0001.pmap", other_emails="not-an-address")
    assert response.status_code == 400
    page = text_of(response)
    assert "Nothing was submitted" in page
    assert "instrument: unknown JWST instrument 'HUBBLECAM'" in page
    assert "description: must not be empty" in page or "description: missing" in page
    assert "derive_from" in page and "other_emails[0]" in page
    # the form keeps what was typed
    assert 'value="not-an-address"' in response.text
    drop = Path(site.settings.ingest) / "jane"
    assert not drop.exists() or not any(drop.iterdir())
    assert site.head() == head

    no_files = post(client, "/submit", {"instrument": "NIRCAM", "description": "x"},
                    form_page="/submit", content_type="multipart/form-data")
    assert no_files.status_code == 400 and "choose one or more files" in text_of(no_files)
    assert not drop.exists() or not any(drop.iterdir())


def test_bad_file_rejected_then_cancel_a_ready_one(site, tmp_path):
    client = site.client("jane")
    bad = make_flat(tmp_path / "bad.fits", "nircam", "F150W", seed=2, bad=True)
    sid = _submit(site, client, [bad]).headers["Location"].split("/")[2]
    outcome = site.process(sid)
    assert isinstance(outcome, ev.SubmissionRejected)
    page = client.get(f"/submissions/{sid}")
    assert "BAD FILES" in text_of(page) and "bad.fits" in text_of(page)
    assert 'id="confirm"' not in page.text and 'id="cancel"' not in page.text
    done = sse_events(client.get(f"/submissions/{sid}/events").text)[-1]
    assert done[1] == "done" and done[2]["state"] == "rejected"

    # (BAD FILES gave jane's NIRCAM lock back; this one takes it again)
    good = make_flat(tmp_path / "good.fits", "nircam", "F070W", seed=3)
    sid = _submit(site, client, [good]).headers["Location"].split("/")[2]
    assert isinstance(site.process(sid), ev.SubmissionReady)
    edit = contexts.get_context(site.store, "edit")
    cancelled = post(client, f"/submissions/{sid}/cancel", {"reason": "wrong filter"},
                     form_page=f"/submissions/{sid}")
    assert cancelled.status_code == 302
    last = site.store.read_stream(ev.submission_stream(sid))[-1].event
    assert isinstance(last, ev.SubmissionCancelled) and last.reason == "wrong filter"
    assert last.by == "jane"
    assert contexts.get_context(site.store, "edit") == edit
    assert client.get(f"/submissions/{sid}/monitor").status_code == 200
    assert "CANCELLED" in text_of(client.get(f"/submissions/{sid}"))


def test_unknown_submission_is_404(site):
    client = site.client("jane")
    assert client.get("/submissions/20990101T000000-abcdef").status_code == 404
    assert client.get("/submissions/bad%20id%3Cb%3E").status_code == 404
    assert client.get("/submissions/..%2Fetc").status_code in (404, 405)
    head = site.head()
    response = post(client, "/submissions/20990101T000000-abcdef/confirm", {},
                    form_page="/submit")
    assert response.status_code == 404 and "no such submission" in text_of(response)
    assert site.head() == head


# --- operator and admin levers --------------------------------------------------------------


def test_set_context_happy_path_and_refusals(site):
    client = site.client("olga")
    done = post(client, "/operate/context", {"kind": "versions", "context": site.pmap,
                                             "reason": "the versions pointer"})
    assert done.status_code == 302
    page = client.get("/operate/context")
    assert "versions context set to jwst_0001.pmap" in text_of(page)
    history = contexts.context_history(site.store, kind="versions")
    assert [(h["context"], h["actor"], h["description"]) for h in history] == [
        (site.pmap, "olga", "the versions pointer")]

    head = site.head()
    unknown = post(client, "/operate/context", {"kind": "latest", "context": "jwst_0099.pmap",
                                                "reason": "no such context"})
    assert unknown.status_code == 400 and "jwst_0099.pmap" in text_of(unknown)
    markup = post(client, "/operate/context", {"kind": "edit", "context": site.pmap,
                                               "reason": "<script>alert(1)</script>"})
    assert markup.status_code == 400 and "<script>alert" not in markup.text
    assert "&lt;script&gt;" in markup.text  # the typed reason comes back escaped
    bad_kind = post(client, "/operate/context", {"kind": "sideways", "context": site.pmap,
                                                 "reason": "x"})
    assert bad_kind.status_code == 400 and "kind 'sideways'" in text_of(bad_kind)
    assert site.head() == head


def _newer_context(site: Site) -> str:
    """jwst_0002.pmap (NIRCAM's flat rmap replaced), imported as the edit context."""
    from fixtures.contexts import write_generation

    from crds_events.contexts.importcache import import_cache

    refs = site.tmp / "refs"
    refs.mkdir(exist_ok=True)
    write_generation(site.tmp / "context", refs, 2)
    import_cache(site.settings, site.store, site.tmp / "context", refs, "jwst_0002.pmap",
                 ("edit",))
    return "jwst_0002.pmap"


def test_mark_bad_and_ok(site):
    from crds_events.contexts.badfiles import bad_files

    client = site.client("ada")
    # a file of the operational context is refused as CRDS refuses it: the form again (400)
    head = site.head()
    operational = "jwst_nircam_flat_0001.rmap"
    refused = post(client, "/operate/bad-files", {"files": operational, "reason": "bad rules",
                                                  "action": "bad"})
    assert refused.status_code == 400 and 'id="bad-files-form"' in refused.text
    assert (f"File '{operational}' is in the current operational context '{site.pmap}'. "
            "Create a new context which does not contain it and make that context "
            f"operational. Then mark '{operational}' as 'bad'.") in text_of(refused)
    assert site.head() == head and bad_files(site.store) == []

    newer = _newer_context(site)
    rmap = "jwst_nircam_flat_0002.rmap"  # only in the newer (edit) context
    marked = post(client, "/operate/bad-files", {"files": rmap, "reason": "bad rules",
                                                 "action": "bad"})
    assert marked.status_code == 302
    page = client.get("/operate/bad-files")
    text = text_of(page)
    assert f"Marked BAD: {rmap}" in text

    listed = bad_files(site.store)
    # the rmap and every mapping using it: the newer imap and pmap, never the operational
    assert listed == sorted([rmap, "jwst_nircam_0002.imap", newer])
    for name in listed:
        assert name in text

    head = site.head()
    unknown = post(client, "/operate/bad-files", {"files": "jwst_nowhere_0001.fits",
                                                  "reason": "x", "action": "bad"})
    assert unknown.status_code == 400 and "jwst_nowhere_0001.fits" in text_of(unknown)
    no_reason = post(client, "/operate/bad-files", {"files": "jwst_miri_flat_0001.rmap",
                                                    "reason": "",
                                                    "action": "bad"})
    assert no_reason.status_code == 400
    assert site.head() == head

    ok = post(client, "/operate/bad-files", {"files": rmap, "reason": "fixed",
                                             "action": "ok"})
    assert ok.status_code == 302
    assert bad_files(site.store) == []


# --- read pages --------------------------------------------------------------------------------


def test_read_pages_render_empty_and_populated(site, tmp_path):
    from crds_events.contexts.remote import push_remote_context, remote_contexts
    from crds_events.handlers.email import EmailComposer
    from crds_events.handlers.runner import HandlerRunner
    from crds_events.reprocessing.affected import AffectedDatasets, AffectedGroup
    from crds_events.reprocessing.results import affected_ids, record_result

    client = site.client("jane")
    for path in ("/submissions/", "/operate/deliveries", "/operate/pipelines",
                 "/operate/reprocessing", "/operate/emails", "/operate/bad-files",
                 "/operate/context"):
        assert client.get(path).status_code == 200, path
    assert client.get("/operate/pipelines.json").json["pipelines"] == []
    assert client.get("/operate/reprocessing.json").json["transitions"] == []
    assert client.get("/operate/emails.json").json["emails"] == []

    # a registered pipeline pushes its context: commanded vs actual, by name, never the key
    from crds_events.contexts.pipelines import add_pipeline

    key = add_pipeline(site.store, "ops-pipeline").key
    push_remote_context(site.settings, site.store, key, site.pmap)
    rows = client.get("/operate/pipelines.json").json["pipelines"]
    assert rows == json.loads(json.dumps(remote_contexts(site.store, "jwst")))
    page = client.get("/operate/pipelines").text
    assert rows[0]["in_sync"] is True and "ops-pipeline" in page
    assert key not in page + json.dumps(rows)

    # a stored reprocessing result: the page counts it, ids.txt is the stored id list
    result = AffectedDatasets(
        "jwst_0001.pmap", "jwst_0002.pmap",
        [AffectedGroup("nircam", (("flat", "a.fits", "b.fits"),), ["JW02", "JW01"]),
         AffectedGroup("miri", (("flat", "c.fits", "d.fits"),), ["JW03"])],
        candidates=10, distinct=3, changed={}, errors={})
    record_result(site.settings, site.store, result)
    row = client.get("/operate/reprocessing.json").json["transitions"][0]
    assert (row["old_context"], row["new_context"], row["count"]) == (
        "jwst_0001.pmap", "jwst_0002.pmap", 3)
    ids = client.get("/operate/reprocessing/jwst_0001.pmap/jwst_0002.pmap/ids.txt")
    assert ids.status_code == 200 and "attachment" in ids.headers["Content-Disposition"]
    assert ids.text.splitlines() == affected_ids(site.settings, site.store,
                                                 "jwst_0001.pmap", "jwst_0002.pmap")
    assert client.get("/operate/reprocessing/jwst_0002.pmap/jwst_0003.pmap/ids.txt"
                      ).status_code == 404
    assert client.get("/operate/reprocessing/x.fits/y/ids.txt").status_code == 404

    # e-mails: the composer queues the STARTED e-mail of a submission
    flat = make_flat(tmp_path / "flat.fits", "nircam", "F277W", seed=9)
    sid = _submit(site, client, [flat]).headers["Location"].split("/")[2]
    site.process(sid)
    HandlerRunner(site.store, [EmailComposer(site.settings, base_url="http://crds.test",
                                                 mail_history=True)]
                  ).run_until_idle()
    from crds_events.mail.outbox import outbox_rows

    queued = outbox_rows(site.store)
    assert queued, "the composer queued nothing"
    shown = client.get("/operate/emails.json").json["emails"]
    assert [r["subject"] for r in shown] == [r["subject"] for r in queued]
    page = client.get("/operate/emails").text
    for row in queued:
        assert row["subject"].replace("&", "&amp;") in page
    assert client.get("/operate/emails?state=failed").status_code == 200
    assert client.get("/operate/emails?state=bogus").status_code == 400
