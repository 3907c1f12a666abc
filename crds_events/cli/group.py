"""The `crds-events` click group: its global options, error handling and the explicit list
of its commands, in the README's areas (one module each; `user` and `lock` in `accounts`)."""

from __future__ import annotations

import click

from crds_events import __version__
from crds_events.cli import (
    accounts,
    demo,
    lifecycle,
    log,
    migrate,
    pipelines,
    reprocessing,
    rules,
    submissions,
)


class _Group(click.Group):
    """Turns unexpected exceptions into one line unless --debug was given."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence for a CLI
            if ctx.obj and ctx.obj.get("debug"):
                raise
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="crds-events")
@click.option("--debug", is_flag=True, help="Show tracebacks for unexpected errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """crds-events: calibration reference files and rules, event-sourced."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


COMMANDS: tuple[click.Command, ...] = (
    # the log
    log.init, log.serve, log.events, log.rebuild, log.backup_command, log.restore_command,
    migrate.migrate_store_command,
    # rules
    rules.bestrefs_command, rules.checksum_command, rules.certify_command,
    rules.refactor_command, rules.newcontext_command, rules.diff_command,
    rules.uniqname_command, rules.uniq_command, rules.list_command,
    # submissions
    submissions.import_cache_command, accounts.user_group, accounts.lock_group,
    submissions.submit, submissions.submission, submissions.mail_group,
    # after confirm
    lifecycle.deliveries_command, lifecycle.delivery_group, lifecycle.set_context_command,
    lifecycle.contexts_command, lifecycle.mark_bad_command, lifecycle.mark_ok_command,
    lifecycle.bad_files_command, lifecycle.remote_context_group,
    # reprocessing
    reprocessing.datasets_group, reprocessing.repro_group,
    # pipelines
    pipelines.sync_command, pipelines.pipeline_group,
    # generated data
    demo.generate_command, demo.demo_command,
)

for _command in COMMANDS:
    cli.add_command(_command)


def main() -> None:
    """The `crds-events` console script."""
    cli(obj={}, prog_name="crds-events")
