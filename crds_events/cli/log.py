"""The log's commands: init, serve, events, rebuild, backup, restore."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import click

from crds_events.cli.options import (
    json_option,
    open_log,
    port_option,
    root_option,
    settings_for,
)
from crds_events.config import ConfigError
from crds_events.events import event_types
from crds_events.events.visibility import redact
from crds_events.server.logging_setup import configure_logging
from crds_events.store.backup import BackupError, backup, restore
from crds_events.store.projections import default_projections
from crds_events.store.projections import rebuild as rebuild_projections
from crds_events.store.root import init_root


@click.command()
@root_option
@click.option("--observatory", type=click.Choice(["jwst", "hst", "roman"]), default=None,
              help="Observatory this server manages (default from config, else hst).")
def init(root: Path | None, observatory: str | None) -> None:
    """Create the root directory layout, config file and empty event log (idempotent)."""
    settings = settings_for(root, observatory=observatory)
    try:
        created = init_root(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    for path in created:
        click.echo(f"created {path}")
    click.echo(f"{settings.root}: ready for {settings.observatory} "
               f"({'nothing to do' if not created else f'{len(created)} created'})")


@click.command()
@root_option
@click.option("--stream", "streams", multiple=True, help="Only this stream (repeatable).")
@click.option("--type", "types", multiple=True, help="Only this event type (repeatable).")
@click.option("--after", type=click.IntRange(min=0), default=0, help="Start after this position.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N events.")
@json_option()
def events(root: Path | None, streams: tuple[str, ...], types: tuple[str, ...], after: int,
           limit: int | None, as_json: bool) -> None:
    """Show the event timeline (readable, or JSON lines with --json)."""
    unknown = sorted(set(types) - set(event_types()))
    if unknown:
        raise click.ClickException(f"--type: unknown event type(s): {', '.join(unknown)}")
    store = open_log(settings_for(root))
    try:
        records = store.read_all(after, streams=streams or None, types=types or None,
                                 limit=limit)
    finally:
        store.close()
    for record in records:
        # the operator's view: complete, personal data included, but secrets (password and
        # token hashes, keys) are never printed: terminals are logged and pasted
        data = redact(record.type, record.data, personal=True)
        if as_json:
            click.echo(json.dumps({**record.to_json(), "data": data}, ensure_ascii=False))
            continue
        fields = " ".join(f"{k}={v!r}" for k, v in data.items())
        if len(fields) > 160:
            fields = fields[:157] + "..."
        actor = f" by {record.actor}" if record.actor else ""
        click.echo(f"{record.position:>7}  {record.recorded_at}  {record.stream} "
                   f"v{record.version}  {record.type}{actor}  {fields}")


@click.command()
@root_option
def rebuild(root: Path | None) -> None:
    """Drop every projection table and replay the whole log into it (one transaction)."""
    # lazy: rich costs ~45 ms at every start-up; only the progress bar needs it
    from rich.progress import Progress

    store = open_log(settings_for(root))
    projections = default_projections()
    try:
        with Progress(transient=True) as progress:
            task = progress.add_task("replaying", total=None)

            def report(done: int, head: int) -> None:
                progress.update(task, completed=done, total=head)

            head = rebuild_projections(store, projections, progress=report)
    finally:
        store.close()
    names = ", ".join(p.fold.table for p in projections)
    click.echo(f"rebuilt {len(projections)} projections ({names}) from {head} events")


@click.command()
@root_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Web app address.")
@port_option
def serve(root: Path | None, host: str, port: int) -> None:
    """Run the server in the foreground until SIGINT/SIGTERM."""
    # lazy: the whole server (web app, handlers, scheduler) costs ~0.2 s to import
    from crds_events.server.core import ServerError, build_server

    settings = settings_for(root)
    configure_logging(settings.log_format, settings.log_level)
    try:
        server = build_server(settings, host=host, port=port)
    except ServerError as exc:
        raise click.ClickException(str(exc)) from None
    server.serve_forever(announce=lambda message: click.echo(message))


@click.command("backup")
@click.argument("dest", type=click.Path(path_type=Path))
@root_option
def backup_command(dest: Path, root: Path | None) -> None:
    """Back up the root (online: the server may keep running) into DEST (a new directory,
    or a .tar / .tar.gz file)."""
    settings = settings_for(root)
    try:
        result = backup(settings, dest)
    except (BackupError, sqlite3.Error, OSError) as exc:
        raise click.ClickException(f"backup {dest}: {exc}") from None
    click.echo(f"backed up {result.summary()}")


@click.command("restore")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@root_option
@click.option("--force", is_flag=True, help="Replace an event log already in the root.")
def restore_command(source: Path, root: Path | None, force: bool) -> None:
    """Restore a backup (directory or tar) into the root (stop its server first)."""
    settings = settings_for(root)
    try:
        result = restore(source, settings, force=force)
    except (BackupError, sqlite3.Error, OSError) as exc:
        raise click.ClickException(f"restore {source}: {exc}") from None
    click.echo(f"restored {source} into {result.summary()}")
