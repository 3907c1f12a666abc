"""`crds-events mail list` / `mail send-due` on a real root (maildir transport)."""

from __future__ import annotations

import json
import mailbox

from click.testing import CliRunner

from crds_events import events as ev
from crds_events.cli import cli
from crds_events.config import load_settings
from crds_events.handlers.email import EmailComposer
from crds_events.handlers.runner import HandlerRunner
from crds_events.store.eventlog import SQLiteEventStore
from crds_events.store.root import init_root


def test_list_and_send_due(tmp_path, monkeypatch):
    for name in ("CRDS_EVENTS_SMTP_HOST", "CRDS_EVENTS_ROOT"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "root"
    (root).mkdir()
    (root / "crds-events.toml").write_text(
        'observatory = "hst"\n[recipients]\nredcat = ["redcat@example.org"]\n')
    settings = load_settings(root, environ={})
    init_root(settings)
    with SQLiteEventStore(settings.db_path) as log:
        runner = HandlerRunner(log, [EmailComposer(settings)])
        runner.setup()
        log.record(ev.SubmissionFailed("s1", "boom"))
        runner.run_until_idle()
        (queued,) = [r.event for r in log.read_all(types=["EmailQueued"])]

    cli_runner = CliRunner()
    listed = cli_runner.invoke(cli, ["mail", "list", "--root", str(root), "--json"])
    assert listed.exit_code == 0, listed.output
    (row,) = [json.loads(line) for line in listed.output.splitlines()]
    assert (row["email_id"], row["state"], row["recipients"]) == (
        queued.email_id, "queued", ["redcat@example.org"])

    sent = cli_runner.invoke(cli, ["mail", "send-due", "--root", str(root)])
    assert sent.exit_code == 0, sent.output
    assert f"{queued.email_id}: sent (attempt 1)" in sent.output
    (message,) = mailbox.Maildir(settings.maildir, create=False).values()
    assert message["Message-ID"] == queued.message_id

    listed = cli_runner.invoke(cli, ["mail", "list", "--root", str(root), "--state", "sent"])
    assert listed.exit_code == 0 and listed.output.startswith(f"{queued.email_id} ")
    again = cli_runner.invoke(cli, ["mail", "send-due", "--root", str(root)])
    assert again.output.strip().endswith("0 e-mail(s) attempted")


def test_no_log_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(cli, ["mail", "list", "--root", str(tmp_path / "nowhere")])
    assert result.exit_code != 0 and "no event log" in result.output
