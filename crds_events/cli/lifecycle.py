"""After confirm: deliveries, delivery reconcile and redeliver, set-context, contexts, mark-bad, mark-ok,
bad-files, remote-context."""

from __future__ import annotations

import json
from pathlib import Path

import click

from crds_events.cli.options import (
    json_option,
    open_log,
    root_option,
    settings_for,
    user_option,
)
from crds_events.contexts.badfiles import BadFilesError, bad_file_rows, mark_bad, mark_ok
from crds_events.contexts.pointers import (
    ContextError,
    context_history,
    get_pointers,
    set_context,
)
from crds_events.contexts.remote import (
    RemoteContextError,
    push_remote_context,
    remote_contexts,
)
from crds_events.delivery.publish import DeliveryError, list_deliveries
from crds_events.delivery.reconcile import reconcile
from crds_events.delivery.redeliver import redeliver


@click.command("deliveries")
@root_option
@json_option()
def deliveries_command(root: Path | None, as_json: bool) -> None:
    """List deliveries to the archive with their state and when each state was reached."""
    store = open_log(settings_for(root))
    try:
        infos = list_deliveries(store)
    finally:
        store.close()
    for info in infos:
        if as_json:
            click.echo(json.dumps(info.to_json(), ensure_ascii=False))
            continue
        times = "  ".join(f"{state} {at[:19].replace('T', ' ')}"
                          for state, at in info.times.items())
        click.echo(f"{info.name:<12} {info.state:<10} {info.submission_id:<24} "
                   f"{len(info.files):>3} files  {times}")
        if info.reason:
            click.echo(f"{'':<12} reason: {info.reason}")
        if info.redelivered_as:
            click.echo(f"{'':<12} redelivered as {info.redelivered_as}")
        if info.redelivery_of:
            click.echo(f"{'':<12} redelivery of {info.redelivery_of}")
        for problem in info.problems:
            click.echo(f"{'':<12} problem: {problem}")


@click.group("delivery")
def delivery_group() -> None:
    """The delivery directory and the archive's progress."""


@delivery_group.command("reconcile")
@root_option
def delivery_reconcile(root: Path | None) -> None:
    """Record what the archive did to the delivery directory (safe to repeat)."""
    settings = settings_for(root)
    store = open_log(settings)
    try:
        report = reconcile(settings, store)
    finally:
        store.close()
    for stream, type_name in report.recorded:
        click.echo(f"recorded {type_name} {stream}")
    for problem in report.problems:
        click.echo(f"problem: {problem}", err=True)
    for note in report.ignored:
        click.echo(f"ignored: {note}", err=True)
    click.echo(f"{report.examined} deliveries examined, {len(report.recorded)} facts "
               f"recorded, {len(report.problems)} problems")


@delivery_group.command("redeliver")
@click.argument("name")
@click.option("--reason", default="", help="Why (optional; printable text, no < > &).")
@user_option
@root_option
def delivery_redeliver(name: str, reason: str, user: str | None, root: Path | None) -> None:
    """Deliver failed delivery NAME (.cat_err) again under a new name (operators).

    The running server's delivery worker writes the new .cat; the archive takes it from
    there like any other.
    """
    settings = settings_for(root)
    store = open_log(settings)
    try:
        done = redeliver(settings, store, name, user, reason)
    except DeliveryError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"{done.delivery} redelivered as {done.redelivery} (event {done.position}); "
               f"the server's delivery worker writes {done.redelivery}.cat")


@click.command("set-context")
@click.argument("kind", type=click.Choice(["latest", "edit", "versions", "build"]))
@click.argument("pmap")
@click.option("--reason", required=True,
              help="Why (history and e-mail). Printable text; no control characters and "
                   "no < > & (shown as HTML).")
@click.option("--calver", default=None,
              help="build only: the calibration software version this context is for.")
@user_option
@root_option
def set_context_command(kind: str, pmap: str, reason: str, calver: str | None,
                        user: str | None, root: Path | None) -> None:
    """Point the KIND context (latest, edit, versions, build) at PMAP (operators)."""
    settings = settings_for(root)
    store = open_log(settings)
    try:
        change = set_context(settings, store, kind, pmap, reason, user, calver=calver)
    except ContextError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    label = f"{kind}[{change.calver}]" if change.calver else kind
    if not change.changed:
        click.echo(f"{label} is already {change.context}; nothing recorded")
        return
    click.echo(f"{label}: {change.previous or '(none)'} -> {change.context} "
               f"({change.direction}), event {change.position}")


@click.command("contexts")
@click.option("--history", is_flag=True, help="Every change, newest first.")
@json_option("JSON output.")
@root_option
def contexts_command(history: bool, as_json: bool, root: Path | None) -> None:
    """Show the context pointers (or their history)."""
    settings = settings_for(root)
    store = open_log(settings)
    try:
        if history:
            rows = list(reversed(context_history(store, observatory=settings.observatory)))
        else:
            rows = list(get_pointers(store, settings.observatory).values())
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no context set yet")
    for row in rows:
        when = row.get("recorded_at") or row.get("set_at")
        kind = f"{row['kind']}[{row['calver']}]" if row["calver"] else row["kind"]
        extra = f" ({row['direction']})" if history else ""
        click.echo(f"{when}  {kind:<10} {row['context']:<24} from "
                   f"{row['previous'] or '(none)'}{extra} by {row['actor'] or '?'}: "
                   f"{row['description'].splitlines()[0] if row['description'] else ''}")


@click.command("mark-bad")
@click.argument("files", nargs=-1, required=True)
@click.option("--reason", required=True, help="Why the files are bad (no control characters, "
                                              "no < > &).")
@user_option
@root_option
def mark_bad_command(files: tuple[str, ...], reason: str, user: str | None,
                     root: Path | None) -> None:
    """Reject FILES and blacklist every mapping that uses them (admins)."""
    settings = settings_for(root)
    store = open_log(settings)
    try:
        result = mark_bad(settings, store, files, reason, user)
    except BadFilesError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    for name in result.marked:
        click.echo(f"{name}: marked bad")
    for name in result.unchanged:
        click.echo(f"{name}: already bad")
    for name in result.blacklisted:
        click.echo(f"{name}: blacklisted")


@click.command("mark-ok")
@click.argument("files", nargs=-1, required=True)
@click.option("--reason", default="", help="Why (optional).")
@user_option
@root_option
def mark_ok_command(files: tuple[str, ...], reason: str, user: str | None,
                    root: Path | None) -> None:
    """Clear the rejection of FILES; mappings no longer using a bad file are cleared (admins)."""
    settings = settings_for(root)
    store = open_log(settings)
    try:
        result = mark_ok(settings, store, files, user, reason)
    except BadFilesError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    for name in result.marked:
        click.echo(f"{name}: marked OK")
    for name in result.unchanged:
        click.echo(f"{name}: was not marked bad")
    for name in result.unblacklisted:
        click.echo(f"{name}: no longer blacklisted")


@click.command("bad-files")
@json_option("JSON output.")
@root_option
def bad_files_command(as_json: bool, root: Path | None) -> None:
    """List rejected and blacklisted files."""
    store = open_log(settings_for(root))
    try:
        rows = bad_file_rows(store)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps([{"name": r["name"], "rejected": r["rejected"],
                                "blacklisted": r["blacklisted"], "reason": r["reject_reason"]}
                               for r in rows], indent=2))
        return
    for row in rows:
        what = "rejected" if row["rejected"] else "blacklisted"
        reason = f": {row['reject_reason']}" if row["reject_reason"] else ""
        click.echo(f"{row['name']}  {what}{reason}")
    click.echo(f"{len(rows)} bad file(s)")


@click.group("remote-context", invoke_without_command=True)
@root_option
@click.pass_context
def remote_context_group(ctx: click.Context, root: Path | None) -> None:
    """Commanded (latest) vs actual contexts of pipelines (by name); `push KEY PMAP` records
    one with a registered pipeline's key (`crds-events pipeline add NAME`)."""
    ctx.ensure_object(dict)
    ctx.obj["ctx_root"] = root
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_for(root)
    store = open_log(settings)
    try:
        rows = remote_contexts(store, settings.observatory)
    finally:
        store.close()
    if not rows:
        click.echo("no pipeline has pushed a context yet")
    for row in rows:
        state = "in sync" if row["in_sync"] else "BEHIND/DIFFERENT"
        click.echo(f"{row['pipeline']:<20} actual {row['actual']:<24} commanded "
                   f"{row['commanded'] or '(none)':<24} {state}  (pushed {row['pushed_at']})")


@remote_context_group.command("push")
@click.argument("key")
@click.argument("pmap")
@user_option
@root_option
@click.pass_context
def remote_context_push(ctx: click.Context, key: str, pmap: str, user: str | None,
                        root: Path | None) -> None:
    """Record that the pipeline whose key is KEY now holds PMAP."""
    settings = settings_for(root or ctx.obj.get("ctx_root"))
    store = open_log(settings)
    try:
        row = push_remote_context(settings, store, key, pmap, user)
    except RemoteContextError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    news = "recorded" if row["recorded"] else "unchanged, not recorded again"
    click.echo(f"{row['pipeline']}: {row['actual']} ({news}); commanded {row['commanded'] or '(none)'}")
