"""`crds-events migrate-store`: move the root's event log from SQLite to PostgreSQL.

Thin over `crds_events.store.transfer`: `copy_sqlite_to_postgres` copies, verifies (counts
and a digest of the stream) and refuses a target that is not empty; `rebuild_target` then
replays the projections there and compares them with the source's.
"""

from __future__ import annotations

from pathlib import Path

import click

from crds_events.cli.options import root_option, settings_for
from crds_events.store import StoreError
from crds_events.store.postgres import is_postgres_url, redact_url


@click.command("migrate-store")
@root_option
@click.option("--to", "target", required=True, metavar="URL",
              help="The PostgreSQL database to copy the log into: postgresql://user:password"
                   "@host:port/database (it must hold no events yet).")
def migrate_store_command(root: Path | None, target: str) -> None:
    """Copy the root's SQLite event log into an empty PostgreSQL database and verify it.

    Stop the server first. Afterwards set ``database_url`` to the same URL in
    crds-events.toml (or $CRDS_EVENTS_DATABASE_URL) and start the server again.
    """
    if not is_postgres_url(target):
        raise click.ClickException(
            "--to: expected a PostgreSQL URL (postgresql://user:password@host:port/database)"
            f", got {target.split(':', 1)[0]!r}...")
    settings = settings_for(root)
    if is_postgres_url(settings.database_url):
        raise click.ClickException(
            f"{settings.root}: the log is already on PostgreSQL "
            f"({redact_url(settings.database_url)}); migrate-store copies a SQLite log")
    if not settings.db_path.is_file():
        raise click.ClickException(
            f"{settings.db_path}: no event log; run `crds-events init --root {settings.root}`")
    # psycopg when used
    from crds_events.store.transfer import copy_sqlite_to_postgres, rebuild_target

    def report(copied: int, total: int) -> None:
        click.echo(f"  {copied}/{total} events", err=True)

    try:
        done = copy_sqlite_to_postgres(settings.db_path, target, progress=report)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"copied {done.events} events (positions 1..{done.last_position}) and "
               f"{done.checkpoints} checkpoints to {redact_url(target)} in "
               f"{done.seconds:.1f} s")
    click.echo(f"verified: {done.events} events, stream digest sha256:{done.digest}")

    def replayed(position: int, head: int) -> None:
        click.echo(f"  replayed {position}/{head}", err=True)

    try:
        built = rebuild_target(settings.db_path, target, progress=replayed)
    except StoreError as exc:
        raise click.ClickException(
            f"{exc} (with database_url set, `crds-events rebuild` replays the projections "
            "again)") from None
    click.echo(f"rebuilt {len(built.projections)} projections from {built.head} events in "
               f"{built.seconds:.1f} s; {len(built.compared)} equal to the source's"
               + (f" ({len(built.not_compared)} not up to date there, not compared: "
                  f"{', '.join(built.not_compared)})" if built.not_compared else ""))
    click.echo(f"next: set database_url = \"{redact_url(target)}\" (with its password) in "
               f"{settings.config_path}, then start the server")
