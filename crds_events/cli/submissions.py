"""Getting files in: import-cache, submit, submission show/confirm/force/cancel, mail.

`submit` and `submission confirm|force|cancel` act on the local root, or with `--server` on a
remote crds-events server through its API (the token names the user there).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from crds_events.accounts import locks
from crds_events.cli.options import (
    json_option,
    open_log,
    remote_options,
    require_user,
    root_option,
    settings_for,
    user_option,
)
from crds_events.client.submission_fields import (
    SubmissionFieldsError,
    expand_file_lists,
    load_redcat_parameters,
)
from crds_events.client.submit import (
    RemoteDecision,
    RemoteSubmitError,
    cancel_remote,
    confirm_remote,
    follow_remote,
    force_remote,
    logout_remote,
    submit_remote,
)
from crds_events.contexts.importcache import ImportCacheError, import_cache
from crds_events.events import SubmissionReady, SubmissionRejected
from crds_events.submissions import review
from crds_events.submissions.dropbox import drop_submission

_MAIL_STATES = ("queued", "retrying", "sent", "failed")


@click.command("import-cache")
@click.option("--mappings", "mappings_dir", required=True,
              type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Directory holding the context's mappings.")
@click.option("--references", "references_dir", default=None,
              type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Directory holding (some of) its references.")
@click.option("--context", required=True, help="The pipeline context (.pmap name) to import.")
@click.option("--set", "pointers", default="latest,edit", show_default=True,
              help="Context pointers to set to it (comma-separated; '' for none).")
@user_option
@root_option
def import_cache_command(mappings_dir: Path, references_dir: Path | None, context: str,
                         pointers: str, user: str | None, root: Path | None) -> None:
    """Adopt an existing CRDS cache: catalog CONTEXT's files as archived history."""
    # lazy: rich costs ~45 ms at every start-up; only the progress bars need it
    from rich.console import Console
    from rich.progress import Progress

    settings = settings_for(root)
    store = open_log(settings)
    try:
        with Progress(console=Console(stderr=True), transient=True) as progress:
            tasks: dict[str, Any] = {}

            def report(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = progress.add_task(stage, total=total)
                progress.update(tasks[stage], completed=done, total=total)

            result = import_cache(settings, store, mappings_dir, references_dir,
                                  context=Path(context).name,
                                  set_pointers=pointers.split(","), actor=user,
                                  progress=report)
    except ImportCacheError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(result.summary())


# --- the flow: submit, submission show|confirm|force|cancel ---


@click.command()
@click.argument("files", nargs=-1)
@click.option("--instrument", default=None, help="Instrument of the files (e.g. MIRI).")
@click.option("--description", default=None, help="What the delivery is and why.")
@click.option("--change-level", type=click.Choice(["SEVERE", "MODERATE", "TRIVIAL"],
              case_sensitive=False), default=None, help="[default: SEVERE]")
@click.option("--derive-from", default="edit", show_default=True,
              help="edit, latest or an explicit .pmap name.")
@click.option("--kind", default="batch", show_default=True,
              help="batch, references, mappings, delete or add_existing.")
@click.option("--deliverer", default=None, help="Deliverer's name (default: the user).")
@click.option("--other-email", "other_emails", multiple=True, help="Also notify (repeatable).")
@click.option("--no-auto-rename", is_flag=True, help="Keep the files' names.")
@click.option("--wait", is_flag=True, help="Return when the outcome is known (exit 0: READY).")
@click.option("--monitor", is_flag=True, help="Print the progress lines live (implies --wait).")
@click.option("--timeout", type=float, default=600.0, show_default=True,
              help="Seconds to wait with --wait/--monitor.")
@click.option("--creator", default=None,
              help="Who made the files, if not the deliverer (ReDCaT creator_name).")
@click.option("--redcat-parameters", "redcat_parameters", default=None,
              type=click.Path(dir_okay=False, path_type=Path),
              help="A YAML file of ReDCaT fields (as for crds rc_submit); options given "
                   "here win over it.")
@click.option("--wipe-existing-files", "wipe_existing", is_flag=True,
              help="First delete the files left in your ingest directory.")
@click.option("--keep-existing-files", "keep_existing", is_flag=True,
              help="Leave the files left in your ingest directory (not submitted).")
@click.option("--logout", is_flag=True,
              help="Release your instrument locks (after the submission; alone: only that).")
@click.option("--stats", is_flag=True, help="Print files, bytes and the times taken.")
@click.option("--log-time", "log_time", is_flag=True,
              help="Prefix each progress line with the time (UTC).")
@user_option
@root_option
@remote_options
def submit(files: tuple[str, ...], instrument: str | None, description: str | None,
           change_level: str | None, derive_from: str, kind: str, deliverer: str | None,
           other_emails: tuple[str, ...], no_auto_rename: bool, wait: bool, monitor: bool,
           timeout: float, creator: str | None, redcat_parameters: Path | None,
           wipe_existing: bool, keep_existing: bool, logout: bool, stats: bool,
           log_time: bool, user: str | None, root: Path | None, server_url: str | None,
           api_token: str | None) -> None:
    """Submit FILES through your ingest directory of a local server (or --server URL).

    A FILES word @LIST names a file listing more files (one or more per line, # comments).
    With --kind delete, FILES are the names of the references to take out of the rules
    (nothing is uploaded)."""
    if wipe_existing and keep_existing:
        raise click.UsageError("--wipe-existing-files and --keep-existing-files are "
                               "mutually exclusive")
    try:
        listed = expand_file_lists(files)
        extra = load_redcat_parameters(redcat_parameters) if redcat_parameters else {}
    except SubmissionFieldsError as exc:
        hint = "--redcat-parameters" if redcat_parameters and not exc.field.startswith("@") \
            else "FILES"
        raise click.BadParameter(str(exc), param_hint=hint) from None
    if not listed:
        if logout:
            _logout(user, root, server_url, api_token)
            return
        raise click.UsageError("FILES: name the files to submit (or give --logout alone)")
    files = tuple(listed)  # type: ignore[assignment]
    given = {"instrument": instrument, "description": description,
             "change_level": change_level.upper() if change_level else None,
             "deliverer": deliverer, "creator_name": creator,
             "other_emails": list(other_emails) if other_emails else None}
    extra.update({key: value for key, value in given.items() if value is not None})
    for name in ("instrument", "description"):
        if not extra.get(name):
            raise click.UsageError(f"--{name}: required (or give it in --redcat-parameters)")
    instrument, description = extra.pop("instrument"), extra.pop("description")
    change_level = extra.pop("change_level", "SEVERE")
    deliverer = extra.pop("deliverer", None)
    other_emails = tuple(extra.pop("other_emails", ()))
    derive_from = extra.pop("derive_from", derive_from)
    kind = extra.pop("kind", kind)
    no_auto_rename = not extra.pop("auto_rename", not no_auto_rename)
    progress = _progress_printer(log_time)
    started = time.monotonic()
    deleting = kind.strip().lower() == "delete"
    if deleting:
        if server_url:
            raise click.UsageError("--kind delete: submit it on the server's root or with "
                                   "the web form (the upload API takes files only)")
        for name in files:
            if name.name != str(name):
                raise click.BadParameter(f"{str(name)!r}: name a reference in the rules "
                                         f"(a plain file name), not a path", param_hint="FILES")
    else:
        for path in files:
            if not path.is_file():
                raise click.BadParameter(f"{str(path)!r}: no such file", param_hint="FILES")
    if server_url:  # remote: the token names the user; the server fills a missing deliverer
        fields = {"instrument": instrument, "description": description,
                  "change_level": change_level.upper(), "derive_from": derive_from,
                  "kind": kind, "auto_rename": not no_auto_rename,
                  "other_emails": list(other_emails), **extra}
        if deliverer or user:
            fields["deliverer"] = deliverer or user
        if wipe_existing or keep_existing:  # accepted as crds scripts pass them
            click.echo("note: a crds-events server puts each upload in its own directory: "
                       "no earlier files are submitted with these", err=True)
        try:
            _remote_submit(server_url, api_token, files, fields, wait, monitor, timeout,
                           progress)
        finally:
            _report_stats(stats, files, started)
            if logout:
                _logout(user, root, server_url, api_token)
        return
    user = require_user(user)
    settings = settings_for(root)
    fields = {"deliverer": deliverer or user, "instrument": instrument,
              "description": description, "change_level": change_level.upper(),
              "derive_from": derive_from, "kind": kind, "auto_rename": not no_auto_rename,
              "other_emails": list(other_emails), **extra}
    if deleting:  # the manifest names the references; no file is dropped
        fields["files"] = [str(name) for name in files]
    _existing_files(settings, user, wipe_existing, keep_existing)
    try:
        sid = drop_submission(settings, user, [] if deleting else list(files), fields)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    what = "reference(s) to delete named" if deleting else "file(s) dropped"
    click.echo(f"submission {sid}: {len(files)} {what} in {settings.ingest / user}")
    if not (wait or monitor):
        _report_stats(stats, [] if deleting else files, started)
        if logout:
            _logout(user, root, None, None)
        return
    store = open_log(settings)
    try:
        outcome = review.follow(store, sid, timeout=timeout,
                                on_progress=progress if monitor else None)
    finally:
        store.close()
        _report_stats(stats, [] if deleting else files, started)
        if logout:
            _logout(user, root, None, None)
    if outcome is None:
        raise click.ClickException(
            f"submission {sid}: no outcome after {timeout:g} s (is `crds-events serve` "
            f"running for {settings.root}?)")
    if isinstance(outcome, SubmissionReady):
        click.echo(f"submission {sid}: READY (new context {outcome.new_context})")
        return
    if isinstance(outcome, SubmissionRejected):
        click.echo(f"submission {sid}: BAD FILES: {outcome.reason}")
    else:
        click.echo(f"submission {sid}: FAILED: {outcome.error}")
    raise click.exceptions.Exit(1)


def _progress_printer(log_time: bool) -> Callable[[str], None]:
    """How progress lines are printed: as they come, or after the UTC time (--log-time)."""
    def echo(line: str) -> None:
        if log_time:
            stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
            line = f"{stamp} {line}"
        click.echo(line)
    return echo


def _report_stats(stats: bool, files: tuple[Path, ...] | list[Path], started: float) -> None:
    """--stats: what was submitted and how long it took (to the outcome with --wait)."""
    if not stats:
        return
    size = sum(path.stat().st_size for path in files if path.is_file())
    seconds = max(time.monotonic() - started, 1e-6)
    click.echo(f"stats: {len(files)} file(s), {size:,} bytes in {seconds:.2f} s "
               f"({size / seconds / 1e6:.2f} MB/s)")


def _existing_files(settings: Any, user: str, wipe: bool, keep: bool) -> None:
    """The files left at the top of ``ingest/<user>/`` (the drop area crds's uploads and
    hand drops use; each `submit` has its own directory, so they are never submitted with
    it): deleted with --wipe-existing-files, named in a warning unless --keep-existing-files."""
    area = settings.ingest / user
    try:
        left = sorted(entry for entry in area.iterdir()
                      if entry.is_file() and not entry.is_symlink()
                      and not entry.name.startswith("."))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise click.ClickException(f"cannot list your ingest directory: {exc.strerror}") from None
    if wipe:
        for entry in left:
            with contextlib.suppress(FileNotFoundError):  # gone meanwhile: as wished
                entry.unlink()
            click.echo(f"wiped {entry.name}")
    elif left and not keep:
        click.echo(f"warning: {len(left)} file(s) left in {area} are not part of this "
                   f"submission ({', '.join(e.name for e in left[:5])}"
                   f"{', ...' if len(left) > 5 else ''}); --wipe-existing-files deletes them, "
                   "--keep-existing-files silences this", err=True)


def _logout(user: str | None, root: Path | None, server_url: str | None,
            token: str | None) -> None:
    """--logout: release the instrument locks you hold (CRDS's logout drops the lock)."""
    if server_url:
        try:
            released = logout_remote(server_url, token or "")
        except RemoteSubmitError as exc:
            raise click.ClickException(f"--logout: {exc}") from None
    else:
        name = require_user(user)
        store = open_log(settings_for(root))
        try:
            released = [held.instrument for held in locks.list_locks(store)
                        if held.owner == name
                        and locks.release_lock(store, held.instrument, name) is not None]
        except locks.LockError as exc:
            raise click.ClickException(f"--logout: {exc}") from None
        finally:
            store.close()
    click.echo("logged out: released the lock on " + ", ".join(released) if released
               else "logged out: you held no instrument lock")


def _remote_submit(server_url: str, token: str | None, files: tuple[Path, ...],
                   fields: dict[str, Any], wait: bool, monitor: bool, timeout: float,
                   progress: Callable[[str], None]) -> None:
    """`crds-events submit --server`: upload, then optionally follow to the outcome."""
    try:
        result = submit_remote(server_url, token or "", list(files), fields)
        click.echo(f"submission {result.submission_id}: {len(result.files)} file(s) "
                   f"uploaded to {server_url}")
        if not (wait or monitor):
            return
        follow_remote(server_url, result, timeout=timeout,
                      monitor=progress if monitor else None)
    except RemoteSubmitError as exc:
        raise click.ClickException(str(exc)) from None
    if result.state == "ready":
        click.echo(f"submission {result.submission_id}: READY (new context "
                   f"{result.new_context})")
        return
    if result.state == "timeout":
        raise click.ClickException(f"submission {result.submission_id}: no outcome after "
                                   f"{timeout:g} s")
    label = {"rejected": "BAD FILES"}.get(result.state, result.state.upper())
    click.echo(f"submission {result.submission_id}: {label}: {result.reason}")
    raise click.exceptions.Exit(1)


@click.group()
def submission() -> None:
    """Review a submission: show, confirm, force, cancel."""


@submission.command("show")
@click.argument("submission_id")
@json_option("Everything, as JSON.")
@root_option
def submission_show(submission_id: str, as_json: bool, root: Path | None) -> None:
    """Certify results per file, new mappings and diffs of a submission."""
    settings = settings_for(root)
    store = open_log(settings)
    try:
        info = review.show(settings, store, submission_id)
    except review.ReviewError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    click.echo(f"submission {submission_id}: {info['state'].upper()} "
               f"({info['instrument'].upper()}, by {info['submitter']})")
    click.echo(f"description: {info['description']}")
    if info["reason"]:
        click.echo(f"reason: {info['reason']}")
    for name, entry in info["files"].items():
        label = f"{name} ({entry['original']})" if entry["original"] != name else name
        click.echo(f"  {label}: {entry['status'].upper()}")
        for line in entry["summary"].splitlines():
            click.echo(f"      {line}")
    if info["new_context"]:
        click.echo(f"new context: {info['new_context']}")
    for name, text in (info["result"].get("text_diffs") or {}).items():
        click.echo(f"--- diff for {name}")
        click.echo(text.rstrip())


def _decide(decision: Callable[..., Any], submission_id: str, user: str | None,
            root: Path | None, **kwargs: Any) -> None:
    """`crds-events submission confirm|force|cancel` on the local root."""
    user = require_user(user)
    settings = settings_for(root)
    store = open_log(settings)
    try:
        event = decision(settings, store, submission_id, user, **kwargs)
    except review.ReviewError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    context = getattr(event, "new_context", "")
    click.echo(f"submission {submission_id}: {type(event).__name__.removeprefix('Submission')}"
               f" by {user}" + (f"; edit context is now {context}" if context else ""))


def _remote_decide(decision: Callable[..., RemoteDecision], server_url: str,
                   token: str | None, submission_id: str, **kwargs: Any) -> None:
    """`crds-events submission confirm|force|cancel --server`."""
    try:
        outcome = decision(server_url, token or "", submission_id, **kwargs)
    except RemoteSubmitError as exc:
        raise click.ClickException(str(exc)) from None
    context = outcome.new_context
    click.echo(f"submission {outcome.submission_id}: {outcome.state}"
               + (f"; edit context is now {context}" if context else ""))


@submission.command("confirm")
@click.argument("submission_id")
@user_option
@root_option
@remote_options
def submission_confirm(submission_id: str, user: str | None, root: Path | None,
                       server_url: str | None, api_token: str | None) -> None:
    """Confirm your READY submission: files cataloged, new pmap becomes the edit context."""
    if server_url:
        return _remote_decide(confirm_remote, server_url, api_token, submission_id)
    _decide(review.confirm, submission_id, user, root)


@submission.command("force")
@click.argument("submission_id")
@user_option
@root_option
@remote_options
def submission_force(submission_id: str, user: str | None, root: Path | None,
                     server_url: str | None, api_token: str | None) -> None:
    """Confirm another member's READY submission once their lock is gone."""
    if server_url:
        return _remote_decide(force_remote, server_url, api_token, submission_id)
    _decide(review.force, submission_id, user, root)


@submission.command("cancel")
@click.argument("submission_id")
@click.option("--reason", default="", help="Why (goes in the e-mail).")
@user_option
@root_option
@remote_options
def submission_cancel(submission_id: str, reason: str, user: str | None, root: Path | None,
                      server_url: str | None, api_token: str | None) -> None:
    """Cancel your READY submission: temporary copies discarded, uploads kept."""
    if server_url:
        return _remote_decide(cancel_remote, server_url, api_token, submission_id,
                              reason=reason)
    _decide(review.cancel, submission_id, user, root, reason=reason)


# --- mail: the e-mail outbox ---


@click.group("mail")
def mail_group() -> None:
    """The e-mail outbox: STARTED, READY, BAD FILES, ... e-mails and their delivery."""


@mail_group.command("list")
@root_option
@click.option("--state", "states", multiple=True, type=click.Choice(_MAIL_STATES),
              help="Only e-mails in this state (repeatable).")
@json_option()
def mail_list(root: Path | None, states: tuple[str, ...], as_json: bool) -> None:
    """List e-mails, newest first, with their delivery state (read from the log)."""
    # lazy: the outbox loads the SMTP client (aiosmtplib, asyncio), ~50 ms at every start-up
    from crds_events.mail.outbox import outbox_rows

    store = open_log(settings_for(root))
    try:
        rows = outbox_rows(store, states=states or None)
    finally:
        store.close()
    for row in rows:
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
            continue
        line = (f"{row['email_id']:<16} {row['state']:<8} tries={row['attempts']} "
                f"{row['kind']:<17} {row['subject']}")
        if row["last_error"]:
            line += f"\n{'':<17}last error: {row['last_error']}"
        click.echo(line)


@mail_group.command("send-due")
@root_option
def mail_send_due(root: Path | None) -> None:
    """Attempt every queued or due e-mail once (SMTP, or the maildir without an SMTP host)."""
    # lazy: the outbox loads the SMTP client (aiosmtplib, asyncio), ~50 ms at every start-up
    from crds_events.mail.outbox import retry_due

    settings = settings_for(root)
    open_log(settings).close()  # a clear error when there is no log
    outcomes = retry_due(settings)
    for event in outcomes:
        if event.type == "EmailSent":
            click.echo(f"{event.email_id}: sent (attempt {event.attempt})")
        else:
            retry = f", retry at {event.retry_at}" if event.will_retry else ", given up"
            click.echo(f"{event.email_id}: failed (attempt {event.attempt}{retry}): {event.error}")
    click.echo(f"{len(outcomes)} e-mail(s) attempted")
