"""Reprocessing: datasets import, repro compute/show/ids."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from crds_events.cli.options import open_log, root_option, settings_for
from crds_events.reprocessing.affected import AffectedDatasets
from crds_events.reprocessing.datasets import DatasetImportError, import_datasets
from crds_events.reprocessing.results import affected_ids, compute_and_record, stored_result
from crds_events.rules.context import ContextLoadError
from crds_events.rules.parse import MappingError


@click.group("datasets")
def datasets_group() -> None:
    """The archive's dataset parameters, for reprocessing (affected datasets)."""


@datasets_group.command("import")
@root_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--resume", "resume", metavar="ID",
              help="Go on with the interrupted import ID (FILE may be left out). Running the "
                   "same FILE again resumes it too.")
def datasets_import(root: Path | None, file: Path | None, resume: str | None) -> None:
    """Import FILE.jsonl: one {"id": "<product>:<exposure>", "header": {...}} per line.

    Every line is checked before any is written; the rows are then committed 10,000 at a
    time, so the server's other writers never wait long, and an interrupted import goes on
    where it stopped."""
    # lazy: rich costs ~45 ms at every start-up; only the progress bar needs it
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    if file is None and resume is None:
        raise click.UsageError("give FILE, or --resume ID")
    settings = settings_for(root)
    store = open_log(settings)
    columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
               TimeRemainingColumn())
    name = file.name if file is not None else resume
    try:
        with Progress(*columns, transient=True, disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task(f"importing {name}", total=None)

            def progress(phase: str, done: int, total: int) -> None:
                bar.update(task, completed=done, total=total,
                           description=f"{'checking' if phase == 'check' else 'importing'} {name}")

            def started(import_id: str) -> None:
                click.echo(f"import id {import_id} (if interrupted, run this again or "
                           f"`crds-events datasets import --resume {import_id}`)", err=True)

            result = import_datasets(settings, store, file, progress=progress, resume=resume,
                                     started=started)
    except DatasetImportError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    shown = file if file is not None else result.source
    if result.already:
        click.echo(f"{shown}: already imported (sha1 {result.sha1}, {result.count} datasets); "
                   "nothing changed")
        return
    per = ", ".join(f"{name} {count}" for name, count in result.by_instrument.items())
    click.echo(f"imported {result.count} datasets from {shown} (sha1 {result.sha1}): {per}")


@click.group("repro")
def repro_group() -> None:
    """Affected datasets between two contexts (what DPAS reprocesses)."""


def _summary(result: AffectedDatasets) -> list[str]:
    lines = [f"{result.old_context} -> {result.new_context}: {result.count} affected of "
             f"{result.candidates} datasets considered"]
    for instrument, types in sorted(result.changed.items()):
        for filekind, since in sorted(types.items()):
            lines.append(f"  changed {instrument.lower()}.{filekind} "
                         f"(from {since or 'any date'})")
    lines += [f"  {name}: {count}" for name, count in result.by_instrument.items()]
    lines += [f"  {name}: {count}" for name, count in result.by_type.items()]
    if result.errors:
        lines.append("errors under the new context (datasets):")
        lines += [f"  {count:>8}  {message}" for message, count in result.errors.items()]
    return lines


@repro_group.command("show")
@root_option
@click.argument("old")
@click.argument("new")
@click.option("--changes", is_flag=True, help="Also list each dataset's changed references.")
def repro_show(root: Path | None, old: str, new: str, changes: bool) -> None:
    """Summary of the stored affected datasets for OLD -> NEW."""
    settings = settings_for(root)
    store = open_log(settings)
    try:
        result = stored_result(settings, store, old, new)
    finally:
        store.close()
    if result is None:
        raise click.ClickException(f"no affected datasets stored for {old} -> {new}; run "
                                   f"`crds-events repro compute {old} {new}`")
    for line in _summary(result):
        click.echo(line)
    if changes:
        for dataset_id, filekind, was, now in result.changes():
            click.echo(f"{dataset_id} {filekind} {was} -> {now}")


@repro_group.command("ids")
@root_option
@click.argument("old")
@click.argument("new")
def repro_ids(root: Path | None, old: str, new: str) -> None:
    """The affected dataset ids for OLD -> NEW, one per line."""
    settings = settings_for(root)
    store = open_log(settings)
    try:
        ids = affected_ids(settings, store, old, new)
    finally:
        store.close()
    if ids is None:
        raise click.ClickException(f"no affected datasets stored for {old} -> {new}; run "
                                   f"`crds-events repro compute {old} {new}`")
    for dataset_id in ids:
        click.echo(dataset_id)


@repro_group.command("compute")
@root_option
@click.argument("old")
@click.argument("new")
def repro_compute(root: Path | None, old: str, new: str) -> None:
    """Compute and store the affected datasets for OLD -> NEW now (a manual run; not held
    or mailed: that is what setting latest does)."""
    settings = settings_for(root)
    store = open_log(settings)
    try:
        result, _ = compute_and_record(settings, store, old, new)
    except (ContextLoadError, MappingError, FileNotFoundError) as exc:
        raise click.ClickException(f"{old} -> {new}: {exc}") from None
    finally:
        store.close()
    for line in _summary(result):
        click.echo(line)
    click.echo(f"computed in {result.seconds:.2f} s ({result.distinct} parameter groups)")
