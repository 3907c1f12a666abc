"""Pipelines: `sync`, a CRDS cache that the crds client can use, filled from a server; and
`pipeline add|rotate|revoke|list`, the operators' register of pipelines and their keys.

A key is printed once, alone on stdout (``KEY=$(crds-events pipeline add ops)``), with the
explanation on stderr; the server keeps only its hash.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import click

from crds_events.cli.options import json_option, open_log, root_option, settings_for, user_option
from crds_events.client.sync import RichSyncProgress, SyncError, sync
from crds_events.contexts.pipelines import (
    IssuedKey,
    PipelineError,
    add_pipeline,
    list_pipelines,
    revoke_pipeline,
    rotate_pipeline,
)


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
              help="Tell the server this pipeline now uses the cache's default context; KEY "
                   "is the key `crds-events pipeline add NAME` issued it.")
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
        # not the key: it is the pipeline's secret and terminals are logged
        click.echo(f"pushed context {result.pushed_context}")


# --- the register of pipelines (operators, on the server's root) ---------------------------


@click.group("pipeline")
def pipeline_group() -> None:
    """Register pipelines and issue, rotate or revoke the keys they push contexts with."""


def _change(root: Path | None, action: Callable[..., Any], name: str, user: str | None
            ) -> Any:
    settings = settings_for(root)
    store = open_log(settings)
    try:
        return action(store, name, actor=user)
    except PipelineError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()


def _show_key(issued: IssuedKey, what: str) -> None:
    click.echo(f"pipeline {issued.name}: {what}. Its key, shown this once and not stored "
               "(give it to the pipeline as a secret: crds sync --push-context KEY):", err=True)
    click.echo(issued.key)


@pipeline_group.command("add")
@click.argument("name")
@user_option
@root_option
def pipeline_add(name: str, user: str | None, root: Path | None) -> None:
    """Register pipeline NAME and print its key (once)."""
    _show_key(_change(root, add_pipeline, name, user), "registered")


@pipeline_group.command("rotate")
@click.argument("name")
@user_option
@root_option
def pipeline_rotate(name: str, user: str | None, root: Path | None) -> None:
    """Issue NAME a new key (printed once); its old key is refused from now on."""
    _show_key(_change(root, rotate_pipeline, name, user), "new key; the old one is refused")


@pipeline_group.command("revoke")
@click.argument("name")
@user_option
@root_option
def pipeline_revoke(name: str, user: str | None, root: Path | None) -> None:
    """Refuse NAME's key from now on (`pipeline add NAME` registers it again)."""
    _change(root, revoke_pipeline, name, user)
    click.echo(f"pipeline {name}: revoked; its key is refused")


@pipeline_group.command("list")
@json_option("A JSON list.")
@root_option
def pipeline_list(as_json: bool, root: Path | None) -> None:
    """Registered pipelines: state and last push (never their keys)."""
    settings = settings_for(root)
    store = open_log(settings)
    try:
        rows = list_pipelines(store, settings.observatory)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no pipeline registered (crds-events pipeline add NAME)")
    for row in rows:
        pushed = (f"last pushed {row['last_context']} at {row['last_pushed_at']}"
                  if row["last_context"] else "never pushed")
        click.echo(f"{row['name']:<20} {row['state']:<8} {pushed}")
