"""Accounts: `user` (add, list, disable, password, token [revoke], tokens) and `lock`
(acquire, release, list)."""

from __future__ import annotations

from pathlib import Path

import click

from crds_events.accounts.locks import (
    LockError,
    acquire_lock,
    current_lock,
    format_time,
    list_locks,
    release_lock,
)
from crds_events.accounts.users import (
    DEFAULT_TOKEN_DAYS,
    MAX_TOKEN_DAYS,
    User,
    UserError,
    add_user,
    can,
    disable_user,
    get_user,
    issue_token,
    list_tokens,
    list_users,
    revoke_token,
    set_password,
    validate_email,
    validate_name,
)
from crds_events.cli.options import open_log, require_user, root_option, settings_for, user_option
from crds_events.store import EventStore


def _read_password(password_file: Path | None) -> str:
    if password_file is None:
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        text = password_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"--password-file {password_file}: cannot read: {exc}") from None
    return text.splitlines()[0] if text.splitlines() else ""


def _known_user(store: EventStore, name: str | None) -> User:
    """The acting `--user`, which must exist and be enabled."""
    name = require_user(name)
    user = get_user(store, name)
    if user is None:
        raise click.ClickException(f"--user {name!r}: no such user (crds-events user add)")
    if user.disabled:
        raise click.ClickException(f"--user {name!r}: this account is disabled")
    return user


@click.group("user")
def user_group() -> None:
    """Manage users: add, list, disable, API tokens."""


@user_group.command("add")
@click.argument("name")
@click.option("--email", required=True, help="The user's e-mail address.")
@click.option("--role", type=click.Choice(["submitter", "operator", "admin"]),
              default="submitter", show_default=True)
@click.option("--full-name", default="", help="Display name.")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Read the password from this file's first line (default: prompt).")
@user_option
@root_option
def user_add(name: str, email: str, role: str, full_name: str, password_file: Path | None,
             user: str | None, root: Path | None) -> None:
    """Add user NAME with a password (stored only as an scrypt hash)."""
    try:  # check the cheap things before asking for a password
        validate_name(name)
        validate_email(email)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    password = _read_password(password_file)
    store = open_log(settings_for(root))
    try:
        added = add_user(store, name, email, role, password, full_name=full_name, actor=user)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"added {added.role} {added.name} <{added.email}>")


@user_group.command("list")
@root_option
def user_list(root: Path | None) -> None:
    """List users: name, role, e-mail, state."""
    store = open_log(settings_for(root))
    try:
        users = list_users(store)
    finally:
        store.close()
    for listed in users:
        state = "disabled" if listed.disabled else "active"
        click.echo(f"{listed.name:<20} {listed.role:<10} {state:<9} {listed.email}")


@user_group.command("disable")
@click.argument("name")
@click.option("--reason", default="", help="Why (recorded in the log).")
@user_option
@root_option
def user_disable(name: str, reason: str, user: str | None, root: Path | None) -> None:
    """Disable user NAME (the history is kept; the account can no longer act)."""
    store = open_log(settings_for(root))
    try:
        changed = disable_user(store, name, reason, actor=user)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"disabled {name}" if changed else f"{name} was already disabled")


@user_group.command("password")
@click.argument("name")
@click.option("--password-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Read the new password from this file's first line (default: prompt).")
@user_option
@root_option
def user_password(name: str, password_file: Path | None, user: str | None,
                  root: Path | None) -> None:
    """Set NAME's password; every web session NAME has open ends."""
    password = _read_password(password_file)
    store = open_log(settings_for(root))
    try:
        set_password(store, name, password, actor=user)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"password of {name} changed; its web sessions are logged out")


class _TokenGroup(click.Group):
    """`user token NAME` issues a token (the default sub-command); `user token revoke NAME
    TOKEN_ID` revokes one."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["issue", *args]
        return super().parse_args(ctx, args)


@user_group.group("token", cls=_TokenGroup)
def user_token() -> None:
    """API tokens: `token NAME [--days N]` issues one, `token revoke NAME TOKEN_ID` revokes."""


@user_token.command("issue")
@click.argument("name")
@click.option("--days", type=click.IntRange(1, MAX_TOKEN_DAYS), default=DEFAULT_TOKEN_DAYS,
              show_default=True, help="Days until the token expires.")
@user_option
@root_option
def user_token_issue(name: str, days: int, user: str | None, root: Path | None) -> None:
    """Issue a new API token for NAME and print it (it is shown only once)."""
    store = open_log(settings_for(root))
    try:
        token = issue_token(store, name, days=days, actor=user)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(token)


@user_token.command("revoke")
@click.argument("name")
@click.argument("token_id")
@click.option("--reason", default="", help="Why (recorded in the log).")
@user_option
@root_option
def user_token_revoke(name: str, token_id: str, reason: str, user: str | None,
                      root: Path | None) -> None:
    """Revoke NAME's token TOKEN_ID (the id `user tokens NAME` lists): it is refused from now
    on."""
    store = open_log(settings_for(root))
    try:
        changed = revoke_token(store, name, token_id, reason, actor=user)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"revoked token {token_id} of {name}" if changed
               else f"token {token_id} of {name} was already revoked")


@user_group.command("tokens")
@click.argument("name")
@root_option
def user_tokens(name: str, root: Path | None) -> None:
    """List NAME's API tokens: id, issued, expires, state (never the token itself)."""
    store = open_log(settings_for(root))
    try:
        tokens = list_tokens(store, name)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    if not tokens:
        click.echo(f"{name} has no API tokens")
    for token in tokens:
        expires = token.expires_at or "never"
        click.echo(f"{token.token_id:<10} issued {token.issued_at[:19]:<20} "
                   f"expires {expires:<20} {token.state()}")


@click.group("lock")
def lock_group() -> None:
    """Instrument locks: acquire, release, list."""


@lock_group.command("acquire")
@click.argument("instrument")
@user_option
@root_option
def lock_acquire(instrument: str, user: str | None, root: Path | None) -> None:
    """Lock INSTRUMENT for --user (renews it if already theirs)."""
    settings = settings_for(root)
    store = open_log(settings)
    try:
        account = _known_user(store, user)
        if not can(account, "acquire_lock"):
            raise click.ClickException(f"{account.name}: not allowed to lock instruments")
        lock = acquire_lock(store, instrument, account.name, timeout=settings.lock_timeout)
    except LockError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"{lock.instrument} locked by {lock.owner} until {format_time(lock.expires_at)}")


@lock_group.command("release")
@click.argument("instrument")
@user_option
@root_option
def lock_release(instrument: str, user: str | None, root: Path | None) -> None:
    """Release --user's lock on INSTRUMENT (an admin may release anyone's)."""
    store = open_log(settings_for(root))
    try:
        account = _known_user(store, user)
        holder = current_lock(store, instrument)
        force = holder is not None and can(account, "release_lock", owner=holder.owner)
        released = release_lock(store, instrument, account.name, force=force)
    except LockError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    if released is None:
        click.echo(f"{instrument.lower()} was not locked")
    else:
        click.echo(f"{released.instrument} released (was held by {released.owner})")


@lock_group.command("list")
@root_option
def lock_list(root: Path | None) -> None:
    """Locks in force: instrument, holder, expiry."""
    store = open_log(settings_for(root))
    try:
        locks = list_locks(store)
    finally:
        store.close()
    if not locks:
        click.echo("no instrument is locked")
    for lock in locks:
        click.echo(f"{lock.instrument:<12} {lock.owner:<20} until {format_time(lock.expires_at)}")
