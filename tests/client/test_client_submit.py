"""Remote submission through a real server over HTTP: upload with a token, follow the
processing through jpoll, confirm or cancel; refused without a valid token."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from fixtures.servers import SubmissionServer
from fixtures.submissions import make_flat

from crds_events import events as ev
from crds_events.cli import cli
from crds_events.client.submit import (
    RemoteSubmitError,
    cancel_remote,
    confirm_remote,
    submit_remote,
)
from crds_events.contexts.pointers import context_pointers

FIELDS = {"deliverer": "Jane Doe", "instrument": "NIRCAM", "description": "New flats",
          "change_level": "MODERATE"}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = SubmissionServer(tmp_path_factory.mktemp("submit"))
    yield server
    server.stop()


def _pointers(live) -> dict[str, str]:
    return context_pointers(live.server.store, "jwst")


def test_remote_submit_reaches_ready_and_confirm_sets_edit(live, tmp_path):
    files = [make_flat(tmp_path / "flat_a.fits", "nircam", "F200W", seed=11),
             make_flat(tmp_path / "flat_b.fits", "nircam", "F444W", seed=12)]
    lines: list[str] = []
    result = submit_remote(live.url, live.token, files, FIELDS, monitor=lines.append,
                           timeout=60, poll=0.1)
    assert result.state == "ready", (result.reason, lines)
    assert result.files == ["flat_a.fits", "flat_b.fits"]
    assert result.new_context == "jwst_0002.pmap"
    # the lines are the server's own progress events, in order
    progress = [r.event.message for r in live.server.store.read_stream(
        ev.submission_stream(result.submission_id)) if r.type == ev.SubmissionProgress.type]
    assert progress and all(line in lines for line in progress)
    assert any("flat_a.fits" in line for line in lines)

    decision = confirm_remote(live.url, live.token, result.submission_id)
    assert decision.state == "confirmed" and decision.new_context == "jwst_0002.pmap"
    assert _pointers(live)["edit"] == "jwst_0002.pmap"
    # a second confirm is refused with the server's reason
    with pytest.raises(RemoteSubmitError, match=result.submission_id) as caught:
        confirm_remote(live.url, live.token, result.submission_id)
    assert caught.value.status == 409


def test_cli_submit_wait_then_cancel(live, tmp_path):
    flat = make_flat(tmp_path / "miri_flat.fits", "miri", "F070W", seed=21)
    runner = CliRunner()
    submitted = runner.invoke(cli, [
        "submit", "--server", live.url, "--token", live.token, "--instrument", "MIRI",
        "--description", "remote flats", "--deliverer", "Jane Doe", "--monitor",
        "--timeout", "60", str(flat)])
    assert submitted.exit_code == 0, submitted.output
    assert "READY" in submitted.output and "uploaded" in submitted.output
    sid = submitted.output.split()[1].rstrip(":")
    stream = [r.type for r in live.server.store.read_stream(ev.submission_stream(sid))]
    assert ev.SubmissionReady.type in stream
    before = _pointers(live)

    cancelled = runner.invoke(cli, ["submission", "cancel", "--server", live.url, "--token",
                                    live.token, "--reason", "changed my mind", sid])
    assert cancelled.exit_code == 0, cancelled.output
    assert "cancelled" in cancelled.output
    last = live.server.store.read_stream(ev.submission_stream(sid))[-1].event
    assert isinstance(last, ev.SubmissionCancelled) and last.reason == "changed my mind"
    assert _pointers(live) == before


def test_uploads_without_a_valid_token_are_refused(live, tmp_path):
    flat = make_flat(tmp_path / "flat.fits", "nircam", "F150W", seed=31)
    ingest = live.settings.ingest
    before = sorted(p.name for p in ingest.rglob("*")) if ingest.exists() else []
    for token, reason in ((live.token[:-4] + "xxxx", "invalid"),
                          (live.revoked, "account is disabled")):
        with pytest.raises(RemoteSubmitError, match=reason) as caught:
            submit_remote(live.url, token, [flat], FIELDS)
        assert caught.value.status == 401
    with pytest.raises(RemoteSubmitError, match="token"):
        submit_remote(live.url, "", [flat], FIELDS)
    with pytest.raises(RemoteSubmitError) as caught:
        cancel_remote(live.url, "not-a-token", "whatever")
    assert caught.value.status == 401
    no_token = CliRunner().invoke(cli, ["submit", "--server", live.url, "--instrument", "NIRCAM",
                                        "--description", "x", str(flat)], env={
                                            "CRDS_EVENTS_TOKEN": ""})
    assert no_token.exit_code == 1 and "token" in no_token.output
    after = sorted(p.name for p in ingest.rglob("*")) if ingest.exists() else []
    assert after == before  # nothing reached the ingest directory
    # a bad manifest field is the server's clear 400, before anything is dropped
    with pytest.raises(RemoteSubmitError, match="instrument") as caught:
        submit_remote(live.url, live.token, [flat], {**FIELDS, "instrument": "NOPE"})
    assert caught.value.status == 400


def test_bad_file_is_reported_rejected(live, tmp_path):
    bad = make_flat(tmp_path / "bad_flat.fits", "nircam", "F090W", seed=41, bad=True)
    result = submit_remote(live.url, live.token, [bad], FIELDS, wait=True, timeout=60,
                           poll=0.1)
    assert result.state == "rejected", result
    assert result.reason
    last = live.server.store.read_stream(ev.submission_stream(result.submission_id))[-1]
    assert last.type == ev.SubmissionRejected.type


def test_a_large_upload_with_a_bad_token_reports_the_refusal(live, tmp_path):
    """The server may refuse before reading the body; the client still names the reason."""
    big = tmp_path / "big_flat.fits"
    with open(big, "wb") as handle:
        handle.truncate(48 * 1024 * 1024)
    with pytest.raises(RemoteSubmitError, match="account is disabled") as caught:
        submit_remote(live.url, live.revoked, [big], FIELDS)
    assert caught.value.status == 401
