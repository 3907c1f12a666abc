"""Pipelines: `sync`, a CRDS cache that the crds client can use, filled from a server."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path

import click

from crds_events.client.sync import RichSyncProgress, SyncError, sync


def _contexts(values: tuple[str, ...]) -> list[str]:
    """--contexts A B or --contexts A,B or repeated: crds takes several after one flag."""
    return [name for value in values for name in value.replace(",", " ").split()]


@click.command("sync")
@click.option("--server", "server_url", envvar="CRDS_SERVER_URL", required=True,
              help="Server to sync from (default $CRDS_SERVER_URL).")
@click.option("--contexts", "contexts", multiple=True, required=True,
              help="Contexts to sync (.pmap/.imap/.rmap names, or latest/edit/...); "
                   "repeatable or comma-separated.")
@click.option("--fetch-references", is_flag=True, help="Also fetch the references they name.")
@click.option("--check-files", is_flag=True,
              help="Verify the sha1 of files already cached; replace those that differ.")
@click.option("--push-context", "push_key", default=None, metavar="KEY",
              help="Tell the server this pipeline (KEY) now uses the cache's default context.")
@click.option("--cache", "cache_dir", envvar="CRDS_PATH", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="The CRDS cache directory (default $CRDS_PATH).")
@click.option("--workers", type=click.IntRange(1, 32), default=4, show_default=True,
              help="Parallel downloads.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds before a silent request fails.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar (default: when stderr is a terminal).")
def sync_command(server_url: str, contexts: tuple[str, ...], fetch_references: bool,
                 check_files: bool, push_key: str | None, cache_dir: Path, workers: int,
                 timeout: float, progress: bool | None) -> None:
    """Sync a CRDS cache (mappings, references, config) that the crds client can use."""
    show = sys.stderr.isatty() if progress is None else progress
    try:
        with RichSyncProgress() if show else nullcontext() as bar:
            result = sync(server_url, _contexts(contexts), cache_dir,
                          fetch_references=fetch_references, check_files=check_files,
                          push_context_key=push_key, progress=bar, workers=workers,
                          timeout=timeout)
    except SyncError as exc:
        raise click.ClickException(str(exc)) from None
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    for name in result.repaired:
        click.echo(f"replaced {name}: it differed from the server's copy", err=True)
    if result.not_on_server:
        click.echo(f"{len(result.not_on_server)} reference(s) named by the rules are not on "
                   f"the server (e.g. {', '.join(result.not_on_server[:3])})", err=True)
    click.echo(result.summary())
    if result.default_context:
        click.echo(f"default context: {result.default_context}")
    if result.pushed_context:
        click.echo(f"pushed context {result.pushed_context} for pipeline {push_key}")
