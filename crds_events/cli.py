"""The `crds-events` command line: a thin click layer over library functions.

Every command turns its options into a library call and prints the result. Errors that a
user can act on are raised as `click.ClickException` (one clear line, non-zero exit); any
other exception is reported in one line too, with the traceback only under `--debug`.
"""

from __future__ import annotations

import sys

import click

from crds_events import __version__


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


# --- foundation commands (init, events, rebuild, serve) ---

# --- rules commands (bestrefs) ---

# --- checksum commands ---

# --- tools commands (certify, refactor, newcontext, diff, uniqname, list) ---


def main() -> None:
    cli(obj={}, prog_name="crds-events")


if __name__ == "__main__":
    sys.exit(main())
