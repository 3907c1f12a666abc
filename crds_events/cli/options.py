"""Options shared by several commands, each declared once, and the helpers that resolve them.

`--root` becomes settings (`settings_for`) and an open event log (`open_log`); `--user` is
the acting user (`require_user` when a command cannot act anonymously); `--json` switches a
listing to JSON; `--server` and `--token` send a command to a remote crds-events server
instead of the local root; `--port` is the web app's port (`serve`, `demo`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from crds_events.config import ConfigError, Settings, load_settings
from crds_events.store import EventStore, SQLiteEventStore, StoreError, open_store
from crds_events.store.postgres import is_postgres_url

F = TypeVar("F", bound=Callable[..., Any])

JSON_LINES_HELP = "One JSON object per line."

root_option = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Server root directory (default $CRDS_EVENTS_ROOT, else ./var).",
)

user_option = click.option(
    "--user", "user", envvar="CRDS_EVENTS_USER", default=None,
    help="Act as this user (default $CRDS_EVENTS_USER).")

port_option = click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
    help="Web app port (0: any free port).")


def json_option(help_text: str = JSON_LINES_HELP) -> Callable[[F], F]:
    """`--json` (the `as_json` flag); commands differ only in how they describe the output."""
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def remote_options(fn: F) -> F:
    """`--server URL` and `--token`: act on a remote crds-events server through its API."""
    for decorator in reversed((
        click.option(
            "--server", "server_url", default=None,
            help="A crds-events server URL: act there, through its API, instead of locally."),
        click.option(
            "--token", "api_token", envvar="CRDS_EVENTS_TOKEN", default=None,
            help="Your API token for --server (default $CRDS_EVENTS_TOKEN)."),
    )):
        fn = decorator(fn)
    return fn


def settings_for(root: Path | None, **overrides: Any) -> Settings:
    """The settings of `root` (a bad config file is one clear error line)."""
    try:
        settings = load_settings(root, overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return settings


def open_log(settings: Settings) -> EventStore:
    """The root's event log (SQLite or PostgreSQL, `database_url`); a missing or unreadable
    log is one clear error line."""
    if is_postgres_url(settings.database_url):
        try:
            return open_store(settings)
        except StoreError as exc:
            raise click.ClickException(str(exc)) from None
    if not settings.db_path.is_file():
        raise click.ClickException(
            f"{settings.db_path}: no event log; run `crds-events init --root {settings.root}`"
        )
    try:
        return SQLiteEventStore(settings.db_path)
    except (StoreError, sqlite3.Error) as exc:
        raise click.ClickException(f"{settings.db_path}: {exc}") from None


def require_user(name: str | None) -> str:
    """The `--user` of a command that cannot act anonymously."""
    if not name:
        raise click.ClickException("--user: who is acting? (or set CRDS_EVENTS_USER)")
    return name
