"""Generated data: `generate` (a JWST-like context, references, datasets) and `demo` (the
whole system on this machine, driven through one lifecycle)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from crds_events.cli.options import port_option
from crds_events.demo.generate import GeneratorConfig, generate


@click.command("generate")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for mappings/, references/ and datasets.jsonl.")
@click.option("--instruments", type=click.IntRange(min=1), default=5, show_default=True,
              help="Instruments (JWST's five, then synthetic ones).")
@click.option("--types", "types_", type=click.IntRange(min=1), default=20, show_default=True,
              help="Reference types per instrument.")
@click.option("--cases", type=click.IntRange(min=1), default=16, show_default=True,
              help="At most this many Match rows per rmap.")
@click.option("--useafters", type=click.IntRange(min=1), default=2, show_default=True,
              help="At most this many UseAfter dates per Match row.")
@click.option("--datasets", type=click.IntRange(min=0), default=100_000, show_default=True,
              help="Synthetic datasets in datasets.jsonl.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--no-references", is_flag=True, help="Write the rules and datasets only.")
def generate_command(out: Path, instruments: int, types_: int, cases: int, useafters: int,
                     datasets: int, seed: int, no_references: bool) -> None:
    """Generate a JWST-like context, small FITS/ASDF references and a dataset catalog."""
    try:
        config = GeneratorConfig(instruments=instruments, types=types_, cases=cases,
                                 useafters=useafters, datasets=datasets, seed=seed,
                                 references="none" if no_references else "all")
        result = generate(config, out)
    except (ValueError, OSError) as exc:
        raise click.ClickException(f"generate --out {out}: {exc}") from None
    click.echo(result.summary())
    click.echo(f"context: {result.mappings_dir / result.pmap}")
    click.echo(f"datasets: {result.datasets_path}")


@click.command("demo")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path),
              default=Path("var/demo"), show_default=True, help="The demo's server root.")
@click.option("--host", default="127.0.0.1", show_default=True)
@port_option
@click.option("--no-script", is_flag=True, help="Only serve (no scripted lifecycle).")
@click.option("--fresh", is_flag=True, help="Delete the demo root and start over.")
@click.option("--exit-after-script", is_flag=True,
              help="Stop once the lifecycle is complete (exit 0 only if every step succeeded).")
@click.option("--datasets", type=click.IntRange(min=0), default=100_000, show_default=True,
              help="Synthetic datasets in the catalog (first run of a root only).")
@click.option("--instruments", type=click.IntRange(1, 5), default=5, show_default=True,
              help="Instruments of the generated context (first run only; NIRCam first).")
@click.option("--types", "types_", type=click.IntRange(2, 30), default=20, show_default=True,
              help="Reference types per instrument (first run only; flat is the second).")
@click.option("--step-timeout", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Seconds each step may take.")
def demo_command(root: Path, host: str, port: int, no_script: bool, fresh: bool,
                 exit_after_script: bool, datasets: int, instruments: int, types_: int,
                 step_timeout: float) -> None:
    """Run the whole system on this machine and drive one lifecycle through it."""
    # lazy: the whole server (web app, handlers, scheduler) costs ~0.2 s to import
    from crds_events.demo.scripted import DemoError, DemoOptions, run_demo

    options = DemoOptions(root=root, host=host, port=port, script=not no_script, fresh=fresh,
                          exit_after_script=exit_after_script, datasets=datasets,
                          instruments=instruments, types=types_, step_timeout=step_timeout)
    try:
        status = run_demo(options)
    except DemoError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(status)
