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
# (imports kept in this section: cli.py is shared between helpers)
import sqlite3  # noqa: E402
from pathlib import Path  # noqa: E402

_root_option = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Server root directory (default $CRDS_EVENTS_ROOT, else ./var).",
)


def _settings(root: Path | None, **overrides):
    from crds_events.config import ConfigError, load_settings

    try:
        return load_settings(root, overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _open_log(settings):
    from crds_events.store import SQLiteEventStore, StoreError

    if not settings.db_path.is_file():
        raise click.ClickException(
            f"{settings.db_path}: no event log; run `crds-events init --root {settings.root}`"
        )
    try:
        return SQLiteEventStore(settings.db_path)
    except (StoreError, sqlite3.Error) as exc:
        raise click.ClickException(f"{settings.db_path}: {exc}") from None


@cli.command()
@_root_option
@click.option("--observatory", type=click.Choice(["jwst", "hst", "roman"]), default=None,
              help="Observatory this server manages (default from config, else hst).")
def init(root: Path | None, observatory: str | None) -> None:
    """Create the root directory layout, config file and empty event log (idempotent)."""
    from crds_events.config import ConfigError, init_root

    settings = _settings(root, observatory=observatory)
    try:
        created = init_root(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    for path in created:
        click.echo(f"created {path}")
    click.echo(f"{settings.root}: ready for {settings.observatory} "
               f"({'nothing to do' if not created else f'{len(created)} created'})")


@cli.command()
@_root_option
@click.option("--stream", "streams", multiple=True, help="Only this stream (repeatable).")
@click.option("--type", "types", multiple=True, help="Only this event type (repeatable).")
@click.option("--after", type=click.IntRange(min=0), default=0, help="Start after this position.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def events(root, streams, types, after, limit, as_json) -> None:
    """Show the event timeline (readable, or JSON lines with --json)."""
    import json

    from crds_events.events import event_types

    unknown = sorted(set(types) - set(event_types()))
    if unknown:
        raise click.ClickException(f"--type: unknown event type(s): {', '.join(unknown)}")
    store = _open_log(_settings(root))
    try:
        records = store.read_all(after, streams=streams or None, types=types or None,
                                 limit=limit)
    finally:
        store.close()
    for record in records:
        if as_json:
            click.echo(json.dumps(record.to_json(), ensure_ascii=False))
            continue
        fields = " ".join(f"{k}={v!r}" for k, v in record.data.items())
        if len(fields) > 160:
            fields = fields[:157] + "..."
        actor = f" by {record.actor}" if record.actor else ""
        click.echo(f"{record.position:>7}  {record.recorded_at}  {record.stream} "
                   f"v{record.version}  {record.type}{actor}  {fields}")


@cli.command()
@_root_option
def rebuild(root: Path | None) -> None:
    """Drop every projection table and replay the whole log into it (one transaction)."""
    from rich.progress import Progress

    from crds_events.store.projections import default_projections
    from crds_events.store.projections import rebuild as rebuild_projections

    store = _open_log(_settings(root))
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


@cli.command()
@_root_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Web app address.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Web app port (0: any free port).")
def serve(root: Path | None, host: str, port: int) -> None:
    """Run the server in the foreground until SIGINT/SIGTERM."""
    from crds_events.server.core import ServerError, build_server
    from crds_events.server.logging_setup import configure_logging

    settings = _settings(root)
    configure_logging(settings.log_format, settings.log_level)
    try:
        server = build_server(settings, host=host, port=port)
    except ServerError as exc:
        raise click.ClickException(str(exc)) from None
    server.serve_forever(announce=lambda message: click.echo(message))


# --- rules commands (bestrefs) ---


@cli.command("bestrefs")
@click.option(
    "--context", "context_path", required=True,
    type=click.Path(exists=True, dir_okay=False), help="The .pmap; children are beside it.",
)
@click.option(
    "--headers", "headers_path", required=True, type=click.Path(exists=True, dir_okay=False),
    help='JSON lines, each holding {"header": {...}} (other keys pass through).',
)
@click.option("--output", "output_path", type=click.Path(dir_okay=False), default=None,
              help="Where to write the JSON lines (default: standard output).")
@click.option("--types", default=None, help="Comma-separated reference types (default: all).")
def bestrefs_command(context_path, headers_path, output_path, types):
    """Best references for each dataset header of a JSON-lines file."""
    from crds_events.rules.bestrefs import load_context
    from crds_events.rules.bestrefs_io import BestrefsInputError, annotate_lines
    from crds_events.rules.parse import MappingError

    try:
        context = load_context(context_path)
    except (MappingError, ValueError) as exc:
        raise click.ClickException(f"{context_path}: {exc}") from exc
    wanted = [t.strip() for t in types.split(",") if t.strip()] if types else None
    out = open(output_path, "w", encoding="utf-8") if output_path else sys.stdout  # noqa: SIM115
    try:
        with open(headers_path, encoding="utf-8") as lines:
            for text in annotate_lines(context, lines, wanted, source=headers_path):
                out.write(text + "\n")
    except BestrefsInputError as exc:
        raise click.ClickException(str(exc)) from exc
    except (MappingError, ValueError) as exc:  # a broken child mapping, found when first used
        raise click.ClickException(f"{context_path}: {exc}") from exc
    finally:
        if output_path:
            out.close()


# --- checksum commands ---


@cli.command("checksum")
@click.option("--verify", is_flag=True, help="Only verify: print each file's status.")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def checksum_command(verify: bool, files: tuple[str, ...]) -> None:
    """Rewrite mappings in canonical form with a fresh sha1sum, or --verify them.

    With --verify, prints `FILE: OK`, `FILE: mismatch (...)` or `FILE: error (...)` per
    file and exits 1 if any is not OK. Without it, rewrites each file as `crds checksum`
    does; a file that cannot be rewritten is reported and the others still are. Files that
    are not mappings are FITS references: their CHECKSUM/DATASUM are added or verified.
    """
    from pathlib import PurePath

    from crds_events.files.checksums import checksum_reference
    from crds_events.files.errors import ReferenceFileError
    from crds_events.rules.naming import MAPPING_KINDS
    from crds_events.rules.parse import MappingError
    from crds_events.rules.rewrite import rewrite_mapping_checksum, verify_mapping_checksum

    failures = 0
    for path in files:
        if PurePath(path).suffix not in MAPPING_KINDS:
            try:
                click.echo(checksum_reference(path, verify=verify))
            except ReferenceFileError as exc:
                click.echo(f"{path}: error ({exc})", err=True)
                failures += 1
            continue
        if verify:
            status = verify_mapping_checksum(path)
            click.echo(str(status))
            failures += not status.ok
            continue
        try:
            new_sum = rewrite_mapping_checksum(path)
        except (MappingError, OSError) as exc:
            click.echo(f"{path}: error ({exc})", err=True)
            failures += 1
        else:
            click.echo(f"{path}: sha1sum {new_sum}")
    if failures:
        raise click.exceptions.Exit(1)

# --- delivery commands ---


@cli.command("deliveries")
@_root_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def deliveries_command(root: Path | None, as_json: bool) -> None:
    """List deliveries to the archive with their state and when each state was reached."""
    import json

    from crds_events.delivery.publish import list_deliveries

    store = _open_log(_settings(root))
    try:
        infos = list_deliveries(store)
    finally:
        store.close()
    for info in infos:
        if as_json:
            click.echo(json.dumps(info.to_json(), ensure_ascii=False))
            continue
        times = "  ".join(f"{state} {at[:19].replace('T', ' ')}"
                          for state, at in info.times.items())
        click.echo(f"{info.name:<12} {info.state:<10} {info.submission_id:<24} "
                   f"{len(info.files):>3} files  {times}")
        if info.reason:
            click.echo(f"{'':<12} reason: {info.reason}")
        for problem in info.problems:
            click.echo(f"{'':<12} problem: {problem}")


@cli.group("delivery")
def delivery_group() -> None:
    """The delivery directory and the archive's progress."""


@delivery_group.command("reconcile")
@_root_option
def delivery_reconcile(root: Path | None) -> None:
    """Record what the archive did to the delivery directory (safe to repeat)."""
    from crds_events.watch.delivery import reconcile

    settings = _settings(root)
    store = _open_log(settings)
    try:
        report = reconcile(settings, store)
    finally:
        store.close()
    for stream, type_name in report.recorded:
        click.echo(f"recorded {type_name} {stream}")
    for problem in report.problems:
        click.echo(f"problem: {problem}", err=True)
    for note in report.ignored:
        click.echo(f"ignored: {note}", err=True)
    click.echo(f"{report.examined} deliveries examined, {len(report.recorded)} facts "
               f"recorded, {len(report.problems)} problems")

# --- context commands (set-context, mark-bad, remote-context) ---
_ctx_user_option = click.option(
    "--user", "ctx_user", envvar="CRDS_EVENTS_USER", default=None,
    help="Act as this user (default $CRDS_EVENTS_USER).")


@cli.command("set-context")
@click.argument("kind", type=click.Choice(["latest", "edit", "versions", "build"]))
@click.argument("pmap")
@click.option("--reason", required=True,
              help="Why (history and e-mail). Printable text; no control characters and "
                   "no < > & (shown as HTML).")
@click.option("--calver", default=None,
              help="build only: the calibration software version this context is for.")
@_ctx_user_option
@_root_option
def set_context_command(kind, pmap, reason, calver, ctx_user, root) -> None:
    """Point the KIND context (latest, edit, versions, build) at PMAP (operators)."""
    from crds_events.contexts.pointers import ContextError, set_context

    settings = _settings(root)
    store = _open_log(settings)
    try:
        change = set_context(settings, store, kind, pmap, reason, ctx_user, calver=calver)
    except ContextError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    label = f"{kind}[{change.calver}]" if change.calver else kind
    if not change.changed:
        click.echo(f"{label} is already {change.context}; nothing recorded")
        return
    click.echo(f"{label}: {change.previous or '(none)'} -> {change.context} "
               f"({change.direction}), event {change.position}")


@cli.command("contexts")
@click.option("--history", is_flag=True, help="Every change, newest first.")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@_root_option
def contexts_command(history, as_json, root) -> None:
    """Show the context pointers (or their history)."""
    import json

    from crds_events.contexts.pointers import context_history, get_pointers

    settings = _settings(root)
    store = _open_log(settings)
    try:
        if history:
            rows = list(reversed(context_history(store, observatory=settings.observatory)))
        else:
            rows = list(get_pointers(store, settings.observatory).values())
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no context set yet")
    for row in rows:
        when = row.get("recorded_at") or row.get("set_at")
        kind = f"{row['kind']}[{row['calver']}]" if row["calver"] else row["kind"]
        extra = f" ({row['direction']})" if history else ""
        click.echo(f"{when}  {kind:<10} {row['context']:<24} from "
                   f"{row['previous'] or '(none)'}{extra} by {row['actor'] or '?'}: "
                   f"{row['description'].splitlines()[0] if row['description'] else ''}")


@cli.command("mark-bad")
@click.argument("files", nargs=-1, required=True)
@click.option("--reason", required=True, help="Why the files are bad (no control characters, "
                                              "no < > &).")
@_ctx_user_option
@_root_option
def mark_bad_command(files, reason, ctx_user, root) -> None:
    """Reject FILES and blacklist every mapping that uses them (admins)."""
    from crds_events.contexts.badfiles import BadFilesError, mark_bad

    settings = _settings(root)
    store = _open_log(settings)
    try:
        result = mark_bad(settings, store, files, reason, ctx_user)
    except BadFilesError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    for name in result.marked:
        click.echo(f"{name}: marked bad")
    for name in result.unchanged:
        click.echo(f"{name}: already bad")
    for name in result.blacklisted:
        click.echo(f"{name}: blacklisted")


@cli.command("mark-ok")
@click.argument("files", nargs=-1, required=True)
@click.option("--reason", default="", help="Why (optional).")
@_ctx_user_option
@_root_option
def mark_ok_command(files, reason, ctx_user, root) -> None:
    """Clear the rejection of FILES; mappings no longer using a bad file are cleared (admins)."""
    from crds_events.contexts.badfiles import BadFilesError, mark_ok

    settings = _settings(root)
    store = _open_log(settings)
    try:
        result = mark_ok(settings, store, files, ctx_user, reason)
    except BadFilesError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    for name in result.marked:
        click.echo(f"{name}: marked OK")
    for name in result.unchanged:
        click.echo(f"{name}: was not marked bad")
    for name in result.unblacklisted:
        click.echo(f"{name}: no longer blacklisted")


@cli.command("bad-files")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@_root_option
def bad_files_command(as_json, root) -> None:
    """List rejected and blacklisted files."""
    import json

    from crds_events.contexts.badfiles import bad_file_rows

    store = _open_log(_settings(root))
    try:
        rows = bad_file_rows(store)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps([{"name": r["name"], "rejected": r["rejected"],
                                "blacklisted": r["blacklisted"], "reason": r["reject_reason"]}
                               for r in rows], indent=2))
        return
    for row in rows:
        what = "rejected" if row["rejected"] else "blacklisted"
        reason = f": {row['reject_reason']}" if row["reject_reason"] else ""
        click.echo(f"{row['name']}  {what}{reason}")
    click.echo(f"{len(rows)} bad file(s)")


@cli.group("remote-context", invoke_without_command=True)
@_root_option
@click.pass_context
def remote_context_group(ctx, root) -> None:
    """Commanded (latest) vs actual contexts of pipelines; `push KEY PMAP` records one."""
    ctx.ensure_object(dict)
    ctx.obj["ctx_root"] = root
    if ctx.invoked_subcommand is not None:
        return
    from crds_events.contexts.remote import remote_contexts

    settings = _settings(root)
    store = _open_log(settings)
    try:
        rows = remote_contexts(store, settings.observatory)
    finally:
        store.close()
    if not rows:
        click.echo("no pipeline has pushed a context yet")
    for row in rows:
        state = "in sync" if row["in_sync"] else "BEHIND/DIFFERENT"
        click.echo(f"{row['key']:<20} actual {row['actual']:<24} commanded "
                   f"{row['commanded'] or '(none)':<24} {state}  (pushed {row['pushed_at']})")


@remote_context_group.command("push")
@click.argument("key")
@click.argument("pmap")
@_ctx_user_option
@_root_option
@click.pass_context
def remote_context_push(ctx, key, pmap, ctx_user, root) -> None:
    """Record that pipeline KEY now holds PMAP."""
    from crds_events.contexts.remote import RemoteContextError, push_remote_context

    settings = _settings(root or ctx.obj.get("ctx_root"))
    store = _open_log(settings)
    try:
        row = push_remote_context(settings, store, key, pmap, ctx_user)
    except RemoteContextError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    news = "recorded" if row["recorded"] else "unchanged, not recorded again"
    click.echo(f"{key}: {row['actual']} ({news}); commanded {row['commanded'] or '(none)'}")


# --- reprocessing commands (datasets, repro) ---


@cli.group("datasets")
def datasets_group() -> None:
    """The archive's dataset parameters, for reprocessing (affected datasets)."""


@datasets_group.command("import")
@_root_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def datasets_import(root: Path | None, file: Path) -> None:
    """Import FILE.jsonl: one {"id": "<product>:<exposure>", "header": {...}} per line."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from crds_events.reprocessing.datasets import DatasetImportError, import_datasets

    settings = _settings(root)
    store = _open_log(settings)
    columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
               TimeRemainingColumn())
    try:
        with Progress(*columns, transient=True, disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task(f"importing {file.name}", total=None)

            def progress(_phase: str, done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = import_datasets(settings, store, file, progress=progress)
    except DatasetImportError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    if result.already:
        click.echo(f"{file}: already imported (sha1 {result.sha1}, {result.count} datasets); "
                   "nothing changed")
        return
    per = ", ".join(f"{name} {count}" for name, count in result.by_instrument.items())
    click.echo(f"imported {result.count} datasets from {file} (sha1 {result.sha1}): {per}")


@cli.group("repro")
def repro_group() -> None:
    """Affected datasets between two contexts (what DPAS reprocesses)."""


def _repro_summary(result) -> list[str]:
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
@_root_option
@click.argument("old")
@click.argument("new")
@click.option("--changes", is_flag=True, help="Also list each dataset's changed references.")
def repro_show(root: Path | None, old: str, new: str, changes: bool) -> None:
    """Summary of the stored affected datasets for OLD -> NEW."""
    from crds_events.reprocessing.results import stored_result

    settings = _settings(root)
    store = _open_log(settings)
    try:
        result = stored_result(settings, store, old, new)
    finally:
        store.close()
    if result is None:
        raise click.ClickException(f"no affected datasets stored for {old} -> {new}; run "
                                   f"`crds-events repro compute {old} {new}`")
    for line in _repro_summary(result):
        click.echo(line)
    if changes:
        for dataset_id, filekind, was, now in result.changes():
            click.echo(f"{dataset_id} {filekind} {was} -> {now}")


@repro_group.command("ids")
@_root_option
@click.argument("old")
@click.argument("new")
def repro_ids(root: Path | None, old: str, new: str) -> None:
    """The affected dataset ids for OLD -> NEW, one per line."""
    from crds_events.reprocessing.results import affected_ids

    settings = _settings(root)
    store = _open_log(settings)
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
@_root_option
@click.argument("old")
@click.argument("new")
def repro_compute(root: Path | None, old: str, new: str) -> None:
    """Compute and store the affected datasets for OLD -> NEW now (a manual run; not held
    or mailed: that is what setting latest does)."""
    from crds_events.reprocessing.results import compute_and_record
    from crds_events.rules.context import ContextError
    from crds_events.rules.parse import MappingError

    settings = _settings(root)
    store = _open_log(settings)
    try:
        result, _ = compute_and_record(settings, store, old, new)
    except (ContextError, MappingError, FileNotFoundError) as exc:
        raise click.ClickException(f"{old} -> {new}: {exc}") from None
    finally:
        store.close()
    for line in _repro_summary(result):
        click.echo(line)
    click.echo(f"computed in {result.seconds:.2f} s ({result.distinct} parameter groups)")

# --- rpc client commands (sync, remote submit, list --server) ---
# (`submit`, `submission confirm|force|cancel` and `list` delegate here with --server)

_rpc_server_option = click.option(
    "--server", "server_url", default=None,
    help="A crds-events server URL: act there, through its API, instead of locally.")
_rpc_token_option = click.option(
    "--token", "api_token", envvar="CRDS_EVENTS_TOKEN", default=None,
    help="Your API token for --server (default $CRDS_EVENTS_TOKEN).")


def _rpc_contexts(values: tuple[str, ...]) -> list[str]:
    """--contexts A B or --contexts A,B or repeated: crds takes several after one flag."""
    return [name for value in values for name in value.replace(",", " ").split()]


@cli.command("sync")
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
def sync_command(server_url, contexts, fetch_references, check_files, push_key, cache_dir,
                 workers, timeout, progress) -> None:
    """Sync a CRDS cache (mappings, references, config) that the crds client can use."""
    from contextlib import nullcontext

    from crds_events.client.sync import RichSyncProgress, SyncError, sync

    show = sys.stderr.isatty() if progress is None else progress
    try:
        with RichSyncProgress() if show else nullcontext() as bar:
            result = sync(server_url, _rpc_contexts(contexts), cache_dir,
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


def _rpc_remote_submit(server_url: str, token: str | None, files, fields: dict,
                       wait: bool, monitor: bool, timeout: float) -> None:
    """`crds-events submit --server`: upload, then optionally follow to the outcome."""
    from crds_events.client.submit import RemoteSubmitError, follow_remote, submit_remote

    try:
        result = submit_remote(server_url, token or "", list(files), fields)
        click.echo(f"submission {result.submission_id}: {len(result.files)} file(s) "
                   f"uploaded to {server_url}")
        if not (wait or monitor):
            return
        follow_remote(server_url, result, timeout=timeout,
                      monitor=(lambda line: click.echo(line)) if monitor else None)
    except RemoteSubmitError as exc:
        raise click.ClickException(str(exc)) from None
    if result.state == "ready":
        click.echo(f"submission {result.submission_id}: READY (new context "
                   f"{result.new_context})")
        return
    if result.state == "timeout":
        raise click.ClickException(f"submission {result.submission_id}: no outcome after "
                                   f"{timeout:g} s")
    label = {"rejected": "BAD FILES"}.get(result.state, result.state.upper())
    click.echo(f"submission {result.submission_id}: {label}: {result.reason}")
    raise click.exceptions.Exit(1)


def _rpc_remote_decide(action: str, server_url: str, token: str | None, submission_id: str,
                       **kwargs) -> None:
    """`crds-events submission confirm|force|cancel --server`."""
    from crds_events.client import submit as remote

    try:
        decision = getattr(remote, f"{action}_remote")(server_url, token or "", submission_id,
                                                       **kwargs)
    except remote.RemoteSubmitError as exc:
        raise click.ClickException(str(exc)) from None
    context = decision.new_context
    click.echo(f"submission {decision.submission_id}: {decision.state}"
               + (f"; edit context is now {context}" if context else ""))


def _rpc_remote_list(server_url: str, what: str) -> None:
    """`crds-events list --server`: the server's status or file lists."""
    from crds_events.client.rpc import RpcError
    from crds_events.client.status import remote_list, remote_status
    from crds_events.contexts.listing import format_status

    try:
        if what == "status":
            lines = list(format_status(remote_status(server_url)))
        else:
            lines = remote_list(server_url, what)
    except (RpcError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    for line in lines:
        click.echo(line)


# --- web commands ---

# --- ops commands (demo, backup, restore, generate) ---


@cli.command("generate")
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
def generate_command(out, instruments, types_, cases, useafters, datasets, seed,
                     no_references) -> None:
    """Generate a JWST-like context, small FITS/ASDF references and a dataset catalog."""
    from crds_events.demo.generate import GeneratorConfig, generate

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


@cli.command("backup")
@click.argument("dest", type=click.Path(path_type=Path))
@_root_option
def backup_command(dest: Path, root: Path | None) -> None:
    """Back up the root (online: the server may keep running) into DEST (a new directory,
    or a .tar / .tar.gz file)."""
    from crds_events.store.backup import BackupError, backup

    settings = _settings(root)
    try:
        result = backup(settings, dest)
    except (BackupError, sqlite3.Error, OSError) as exc:
        raise click.ClickException(f"backup {dest}: {exc}") from None
    click.echo(f"backed up {result.summary()}")


@cli.command("restore")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@_root_option
@click.option("--force", is_flag=True, help="Replace an event log already in the root.")
def restore_command(source: Path, root: Path | None, force: bool) -> None:
    """Restore a backup (directory or tar) into the root (stop its server first)."""
    from crds_events.store.backup import BackupError, restore

    settings = _settings(root)
    try:
        result = restore(source, settings, force=force)
    except (BackupError, sqlite3.Error, OSError) as exc:
        raise click.ClickException(f"restore {source}: {exc}") from None
    click.echo(f"restored {source} into {result.summary()}")


@cli.command("demo")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path),
              default=Path("var/demo"), show_default=True, help="The demo's server root.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Web app port (0: any free port).")
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
def demo_command(root, host, port, no_script, fresh, exit_after_script, datasets,
                 instruments, types_, step_timeout) -> None:
    """Run the whole system on this machine and drive one lifecycle through it."""
    from crds_events.demo.scripted import DemoError, DemoOptions, run_demo

    options = DemoOptions(root=root, host=host, port=port, script=not no_script, fresh=fresh,
                          exit_after_script=exit_after_script, datasets=datasets,
                          instruments=instruments, types=types_, step_timeout=step_timeout)
    try:
        status = run_demo(options)
    except DemoError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(status)

# --- submission commands ---
# (mail: the e-mail outbox)

_MAIL_STATES = ("queued", "retrying", "sent", "failed")


@cli.group("mail")
def mail_group() -> None:
    """The e-mail outbox: STARTED, READY, BAD FILES, ... e-mails and their delivery."""


@mail_group.command("list")
@_root_option
@click.option("--state", "states", multiple=True, type=click.Choice(_MAIL_STATES),
              help="Only e-mails in this state (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def mail_list(root: Path | None, states: tuple[str, ...], as_json: bool) -> None:
    """List e-mails, newest first, with their delivery state (read from the log)."""
    import json

    from crds_events.mail.outbox import outbox_rows

    store = _open_log(_settings(root))
    try:
        rows = outbox_rows(store, states=states or None)
    finally:
        store.close()
    for row in rows:
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
            continue
        line = (f"{row['email_id']:<16} {row['state']:<8} tries={row['attempts']} "
                f"{row['kind']:<17} {row['subject']}")
        if row["last_error"]:
            line += f"\n{'':<17}last error: {row['last_error']}"
        click.echo(line)


@mail_group.command("send-due")
@_root_option
def mail_send_due(root: Path | None) -> None:
    """Attempt every queued or due e-mail once (SMTP, or the maildir without an SMTP host)."""
    from crds_events.mail.outbox import retry_due

    settings = _settings(root)
    _open_log(settings).close()  # a clear error when there is no log
    outcomes = retry_due(settings)
    for event in outcomes:
        if event.type == "EmailSent":
            click.echo(f"{event.email_id}: sent (attempt {event.attempt})")
        else:
            retry = f", retry at {event.retry_at}" if event.will_retry else ", given up"
            click.echo(f"{event.email_id}: failed (attempt {event.attempt}{retry}): {event.error}")
    click.echo(f"{len(outcomes)} e-mail(s) attempted")
# (flow: submit, submission show|confirm|force|cancel)

_flow_user_option = click.option(
    "--user", "flow_user", envvar="CRDS_EVENTS_USER", default=None,
    help="Act as this user (default $CRDS_EVENTS_USER).")


def _flow_user(name: str | None) -> str:
    if not name:
        raise click.ClickException("--user: who is acting? (or set CRDS_EVENTS_USER)")
    return name


@cli.command()
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--instrument", required=True, help="Instrument of the files (e.g. MIRI).")
@click.option("--description", required=True, help="What the delivery is and why.")
@click.option("--change-level", type=click.Choice(["SEVERE", "MODERATE", "TRIVIAL"],
              case_sensitive=False), default="SEVERE", show_default=True)
@click.option("--derive-from", default="edit", show_default=True,
              help="edit, latest or an explicit .pmap name.")
@click.option("--kind", default="batch", show_default=True,
              help="batch, references, mappings, delete or add_existing.")
@click.option("--deliverer", default=None, help="Deliverer's name (default: the user).")
@click.option("--other-email", "other_emails", multiple=True, help="Also notify (repeatable).")
@click.option("--no-auto-rename", is_flag=True, help="Keep the files' names.")
@click.option("--wait", is_flag=True, help="Return when the outcome is known (exit 0: READY).")
@click.option("--monitor", is_flag=True, help="Print the progress lines live (implies --wait).")
@click.option("--timeout", type=float, default=600.0, show_default=True,
              help="Seconds to wait with --wait/--monitor.")
@_flow_user_option
@_root_option
@_rpc_server_option
@_rpc_token_option
def submit(files, instrument, description, change_level, derive_from, kind, deliverer,
           other_emails, no_auto_rename, wait, monitor, timeout, flow_user, root,
           server_url, api_token) -> None:
    """Submit FILES through your ingest directory of a local server (or --server URL)."""
    from crds_events.submissions.review import follow
    from crds_events.watch.ingest import drop_submission

    if server_url:  # remote: the token names the user; the server fills a missing deliverer
        fields = {"instrument": instrument, "description": description,
                  "change_level": change_level.upper(), "derive_from": derive_from,
                  "kind": kind, "auto_rename": not no_auto_rename,
                  "other_emails": list(other_emails)}
        if deliverer or flow_user:
            fields["deliverer"] = deliverer or flow_user
        _rpc_remote_submit(server_url, api_token, files, fields, wait, monitor, timeout)
        return
    user = _flow_user(flow_user)
    settings = _settings(root)
    fields = {"deliverer": deliverer or user, "instrument": instrument,
              "description": description, "change_level": change_level.upper(),
              "derive_from": derive_from, "kind": kind, "auto_rename": not no_auto_rename,
              "other_emails": list(other_emails)}
    try:
        sid = drop_submission(settings, user, list(files), fields)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"submission {sid}: {len(files)} file(s) dropped in {settings.ingest / user}")
    if not (wait or monitor):
        return
    store = _open_log(settings)
    try:
        outcome = follow(store, sid, timeout=timeout,
                         on_progress=(lambda line: click.echo(line)) if monitor else None)
    finally:
        store.close()
    if outcome is None:
        raise click.ClickException(
            f"submission {sid}: no outcome after {timeout:g} s (is `crds-events serve` "
            f"running for {settings.root}?)")
    from crds_events import events as ev

    if isinstance(outcome, ev.SubmissionReady):
        click.echo(f"submission {sid}: READY (new context {outcome.new_context})")
        return
    if isinstance(outcome, ev.SubmissionRejected):
        click.echo(f"submission {sid}: BAD FILES: {outcome.reason}")
    else:
        click.echo(f"submission {sid}: FAILED: {outcome.error}")
    raise click.exceptions.Exit(1)


@cli.group()
def submission() -> None:
    """Review a submission: show, confirm, force, cancel."""


@submission.command("show")
@click.argument("submission_id")
@click.option("--json", "as_json", is_flag=True, help="Everything, as JSON.")
@_root_option
def submission_show(submission_id, as_json, root) -> None:
    """Certify results per file, new mappings and diffs of a submission."""
    import json

    from crds_events.submissions.review import ReviewError, show

    settings = _settings(root)
    store = _open_log(settings)
    try:
        info = show(settings, store, submission_id)
    except ReviewError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    click.echo(f"submission {submission_id}: {info['state'].upper()} "
               f"({info['instrument'].upper()}, by {info['submitter']})")
    click.echo(f"description: {info['description']}")
    if info["reason"]:
        click.echo(f"reason: {info['reason']}")
    for name, entry in info["files"].items():
        label = f"{name} ({entry['original']})" if entry["original"] != name else name
        click.echo(f"  {label}: {entry['status'].upper()}")
        for line in entry["summary"].splitlines():
            click.echo(f"      {line}")
    if info["new_context"]:
        click.echo(f"new context: {info['new_context']}")
    for name, text in (info["result"].get("text_diffs") or {}).items():
        click.echo(f"--- diff for {name}")
        click.echo(text.rstrip())


def _flow_decide(action: str, submission_id: str, flow_user, root, **kwargs) -> None:
    from crds_events.submissions import review

    user = _flow_user(flow_user)
    settings = _settings(root)
    store = _open_log(settings)
    try:
        event = getattr(review, action)(settings, store, submission_id, user, **kwargs)
    except review.ReviewError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    context = getattr(event, "new_context", "")
    click.echo(f"submission {submission_id}: {type(event).__name__.removeprefix('Submission')}"
               f" by {user}" + (f"; edit context is now {context}" if context else ""))


@submission.command("confirm")
@click.argument("submission_id")
@_flow_user_option
@_root_option
@_rpc_server_option
@_rpc_token_option
def submission_confirm(submission_id, flow_user, root, server_url, api_token) -> None:
    """Confirm your READY submission: files cataloged, new pmap becomes the edit context."""
    if server_url:
        return _rpc_remote_decide("confirm", server_url, api_token, submission_id)
    _flow_decide("confirm", submission_id, flow_user, root)


@submission.command("force")
@click.argument("submission_id")
@_flow_user_option
@_root_option
@_rpc_server_option
@_rpc_token_option
def submission_force(submission_id, flow_user, root, server_url, api_token) -> None:
    """Confirm another member's READY submission once their lock is gone."""
    if server_url:
        return _rpc_remote_decide("force", server_url, api_token, submission_id)
    _flow_decide("force", submission_id, flow_user, root)


@submission.command("cancel")
@click.argument("submission_id")
@click.option("--reason", default="", help="Why (goes in the e-mail).")
@_flow_user_option
@_root_option
@_rpc_server_option
@_rpc_token_option
def submission_cancel(submission_id, reason, flow_user, root, server_url, api_token) -> None:
    """Cancel your READY submission: temporary copies discarded, uploads kept."""
    if server_url:
        return _rpc_remote_decide("cancel", server_url, api_token, submission_id, reason=reason)
    _flow_decide("cancel", submission_id, flow_user, root, reason=reason)

# (accounts: user, lock, import-cache)

_accounts_user_option = click.option(
    "--user", "acting_user", envvar="CRDS_EVENTS_USER", default=None,
    help="Act as this user (default $CRDS_EVENTS_USER).")


def _accounts_read_password(password_file: Path | None) -> str:
    if password_file is None:
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        text = password_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"--password-file {password_file}: cannot read: {exc}") from None
    return text.splitlines()[0] if text.splitlines() else ""


def _accounts_known_user(store, name: str | None):
    from crds_events.accounts.users import get_user

    if not name:
        raise click.ClickException("--user: who is acting? (or set CRDS_EVENTS_USER)")
    user = get_user(store, name)
    if user is None:
        raise click.ClickException(f"--user {name!r}: no such user (crds-events user add)")
    if user.disabled:
        raise click.ClickException(f"--user {name!r}: this account is disabled")
    return user


@cli.group("user")
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
@_accounts_user_option
@_root_option
def user_add(name, email, role, full_name, password_file, acting_user, root) -> None:
    """Add user NAME with a password (stored only as an scrypt hash)."""
    from crds_events.accounts.users import UserError, add_user, validate_email, validate_name

    try:  # check the cheap things before asking for a password
        validate_name(name)
        validate_email(email)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    password = _accounts_read_password(password_file)
    store = _open_log(_settings(root))
    try:
        user = add_user(store, name, email, role, password, full_name=full_name,
                        actor=acting_user)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"added {user.role} {user.name} <{user.email}>")


@user_group.command("list")
@_root_option
def user_list(root) -> None:
    """List users: name, role, e-mail, state."""
    from crds_events.accounts.users import list_users

    store = _open_log(_settings(root))
    try:
        users = list_users(store)
    finally:
        store.close()
    for user in users:
        state = "disabled" if user.disabled else "active"
        click.echo(f"{user.name:<20} {user.role:<10} {state:<9} {user.email}")


@user_group.command("disable")
@click.argument("name")
@click.option("--reason", default="", help="Why (recorded in the log).")
@_accounts_user_option
@_root_option
def user_disable(name, reason, acting_user, root) -> None:
    """Disable user NAME (the history is kept; the account can no longer act)."""
    from crds_events.accounts.users import UserError, disable_user

    store = _open_log(_settings(root))
    try:
        changed = disable_user(store, name, reason, actor=acting_user)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"disabled {name}" if changed else f"{name} was already disabled")


@user_group.command("token")
@click.argument("name")
@_accounts_user_option
@_root_option
def user_token(name, acting_user, root) -> None:
    """Issue a new API token for NAME and print it (it is shown only once)."""
    from crds_events.accounts.users import UserError, issue_token

    store = _open_log(_settings(root))
    try:
        token = issue_token(store, name, actor=acting_user)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(token)


@cli.group("lock")
def lock_group() -> None:
    """Instrument locks: acquire, release, list."""


@lock_group.command("acquire")
@click.argument("instrument")
@_accounts_user_option
@_root_option
def lock_acquire(instrument, acting_user, root) -> None:
    """Lock INSTRUMENT for --user (renews it if already theirs)."""
    from crds_events.accounts.locks import LockError, acquire_lock, format_time
    from crds_events.accounts.users import can

    settings = _settings(root)
    store = _open_log(settings)
    try:
        user = _accounts_known_user(store, acting_user)
        if not can(user, "acquire_lock"):
            raise click.ClickException(f"{user.name}: not allowed to lock instruments")
        lock = acquire_lock(store, instrument, user.name, timeout=settings.lock_timeout)
    except LockError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"{lock.instrument} locked by {lock.owner} until {format_time(lock.expires_at)}")


@lock_group.command("release")
@click.argument("instrument")
@_accounts_user_option
@_root_option
def lock_release(instrument, acting_user, root) -> None:
    """Release --user's lock on INSTRUMENT (an admin may release anyone's)."""
    from crds_events.accounts.locks import LockError, current_lock, release_lock
    from crds_events.accounts.users import can

    store = _open_log(_settings(root))
    try:
        user = _accounts_known_user(store, acting_user)
        holder = current_lock(store, instrument)
        force = holder is not None and can(user, "release_lock", owner=holder.owner)
        released = release_lock(store, instrument, user.name, force=force)
    except LockError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    if released is None:
        click.echo(f"{instrument.lower()} was not locked")
    else:
        click.echo(f"{released.instrument} released (was held by {released.owner})")


@lock_group.command("list")
@_root_option
def lock_list(root) -> None:
    """Locks in force: instrument, holder, expiry."""
    from crds_events.accounts.locks import format_time, list_locks

    store = _open_log(_settings(root))
    try:
        locks = list_locks(store)
    finally:
        store.close()
    if not locks:
        click.echo("no instrument is locked")
    for lock in locks:
        click.echo(f"{lock.instrument:<12} {lock.owner:<20} until {format_time(lock.expires_at)}")


@cli.command("import-cache")
@click.option("--mappings", "mappings_dir", required=True,
              type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Directory holding the context's mappings.")
@click.option("--references", "references_dir", default=None,
              type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Directory holding (some of) its references.")
@click.option("--context", required=True, help="The pipeline context (.pmap name) to import.")
@click.option("--set", "pointers", default="latest,edit", show_default=True,
              help="Context pointers to set to it (comma-separated; '' for none).")
@_accounts_user_option
@_root_option
def import_cache_command(mappings_dir, references_dir, context, pointers, acting_user,
                         root) -> None:
    """Adopt an existing CRDS cache: catalog CONTEXT's files as archived history."""
    from rich.console import Console
    from rich.progress import Progress

    from crds_events.contexts.importcache import ImportCacheError, import_cache

    settings = _settings(root)
    store = _open_log(settings)
    try:
        with Progress(console=Console(stderr=True), transient=True) as progress:
            tasks: dict[str, object] = {}

            def report(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = progress.add_task(stage, total=total)
                progress.update(tasks[stage], completed=done, total=total)

            result = import_cache(settings, store, mappings_dir, references_dir,
                                  context=Path(context).name,
                                  set_pointers=pointers.split(","), actor=acting_user,
                                  progress=report)
    except ImportCacheError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(result.summary())

# --- tools commands (certify, refactor, newcontext, diff, uniqname, list) ---


def _print_styled(lines, colour: bool | None = None) -> None:
    """(text, style) lines: rich colours on a terminal, plain text when piped."""
    from rich.console import Console
    from rich.text import Text

    from crds_events.certify.report import STYLES

    console = Console(file=sys.stdout, highlight=False, soft_wrap=True,
                      force_terminal=colour, no_color=colour is False)
    for text, style in lines:
        console.print(Text(text, style=STYLES.get(style, "")))


@cli.command("certify")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--context", "context", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Pipeline context (.pmap): children of new mappings and the rmap governing "
                   "each reference are found through it.")
@click.option("--comparison-context", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Context whose mappings the new ones replace: report their differences.")
@click.option("--run-fitsverify", is_flag=True, help="Also run cfitsio's fitsverify on FITS files.")
@click.option("--verbose", is_flag=True, help="Show info messages and every constraint applied.")
@click.option("--tpn-dir", type=click.Path(file_okay=False, exists=True), default=None,
              envvar="CRDS_EVENTS_TPN_DIR",
              help="A site's .tpn directory (default: the built-in constraint specs).")
@click.option("--mappings-dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Where child mappings are looked for first.")
@click.option("--substitutions", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Site substitutions.dat for reference wildcard values.")
@click.option("--color/--no-color", "colour", default=None,
              help="Colour the output (default: only on a terminal).")
def certify_command(files, context, comparison_context, run_fitsverify, verbose, tpn_dir,
                    mappings_dir, substitutions, colour) -> None:
    """Check reference and rules files; OK / WARNINGS / ERRORS per file.

    Exit status 0 when no file has errors (warnings allowed), 1 otherwise.
    """
    from crds_events.certify import certify_files, exit_code
    from crds_events.certify.report import report_lines

    results = certify_files(files, context=context, comparison_context=comparison_context,
                            run_fitsverify=run_fitsverify, verbose=verbose, tpn_dir=tpn_dir,
                            mappings_dir=mappings_dir, substitutions=substitutions)
    _print_styled(report_lines(results, verbose), colour)
    code = exit_code(results)
    if code:
        raise click.exceptions.Exit(code)


@cli.command("uniqname")
@click.option("--files", "files", multiple=True, required=True,
              type=click.Path(dir_okay=False, exists=True),
              help="Reference file to rename (repeatable; several names after one --files too).")
@click.argument("more_files", nargs=-1, type=click.Path(dir_okay=False, exists=True))
@click.option("--standard", is_flag=True,
              help="CRDS's standard options: add FILENAME/ROOTNAME/HISTORY and checksums, "
                   "remove the original.")
@click.option("--add-checksum", is_flag=True, help="Add CHECKSUM/DATASUM to the renamed file.")
@click.option("--add-keywords", is_flag=True, help="Set FILENAME, ROOTNAME and add HISTORY.")
@click.option("--remove-original", is_flag=True, help="Delete the file under its old name.")
@click.option("--output-path", type=click.Path(file_okay=False, exists=True), default=None,
              help="Directory for the renamed files (default: beside the originals).")
@click.option("--dry-run", is_flag=True, help="Print the new names; change nothing.")
def uniqname_command(files, more_files, standard, add_checksum, add_keywords, remove_original,
                     output_path, dry_run) -> None:
    """Rename HST/SYNPHOT references by CRDS's time-based unique-name scheme."""
    from crds_events.files.errors import ReferenceFileError
    from crds_events.files.uniqname import rename_reference

    failures = 0
    for path in list(files) + list(more_files):
        try:
            renamed = rename_reference(
                path, output_dir=output_path, add_keywords=standard or add_keywords,
                add_checksum=True if (standard or add_checksum) else None,
                remove_original=(standard or remove_original) and not dry_run, dry_run=dry_run)
        except ReferenceFileError as exc:
            click.echo(f"ERROR: {exc}", err=True)
            failures += 1
            continue
        verb = "would rename" if renamed.dry_run else "renamed"
        click.echo(f"{renamed.old_path} {verb} to {renamed.new_path}")
    if failures:
        raise click.exceptions.Exit(1)


@cli.command("list")
@click.option("--mappings", "what", flag_value="mappings", help="List mapping files.")
@click.option("--references", "what", flag_value="references", help="List reference files.")
@click.option("--contexts", "what", flag_value="contexts", help="List pipeline contexts (.pmap).")
@click.option("--status", "what", flag_value="status", help="Summarise the catalog.")
@click.option("--mappings-dir", type=click.Path(file_okay=False), default=".",
              show_default=True, help="Directory holding the mappings.")
@click.option("--references-dir", type=click.Path(file_okay=False), default=None,
              help="Directory holding the references.")
@click.option("--context", "context", default=None,
              help="Only what this context (a .pmap in --mappings-dir) names.")
@click.option("--server", "server_url", default=None,
              help="List what this crds-events/CRDS server has instead of directories.")
def list_command(what, mappings_dir, references_dir, context, server_url) -> None:
    """List mappings, references or contexts, or show a status summary."""
    from crds_events.contexts.listing import CatalogError, DirectoryCatalog, format_status

    if what is None:
        raise click.UsageError("choose one of --mappings, --references, --contexts, --status")
    if server_url:
        return _rpc_remote_list(server_url, what)
    try:
        catalog = DirectoryCatalog(mappings_dir, references_dir, context)
        if what == "status":
            lines = list(format_status(catalog.status()))
        else:
            lines = getattr(catalog, what)()
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from None
    for line in lines:
        click.echo(line)
# (imports kept in this section: cli.py is shared between helpers)
import io  # noqa: E402
import os  # noqa: E402


def _crds_style_path(name: str) -> str:
    """A bare file name is shown as ./name, as the crds tools show it."""
    return name if os.path.dirname(name) else "./" + name


def _site_substitutions(path: str | None, observatory: str):
    """--substitutions, else $CRDS_EVENTS_SUBSTITUTIONS, else the server settings' file."""
    from crds_events.rules.substitutions import (
        SubstitutionsError,
        find_substitutions,
        load_substitutions,
    )

    try:
        if path:
            return load_substitutions(path)
        found = find_substitutions(observatory)
        if found is None and os.environ.get("CRDS_EVENTS_ROOT"):
            settings = _settings(None)
            if settings.substitutions:
                found = find_substitutions(observatory, {"substitutions": settings.substitutions})
        return found
    except SubstitutionsError as exc:
        raise click.ClickException(str(exc)) from None


def _rmap_observatory(path: str) -> str:
    from crds_events.rules.checksum import read_mapping_text
    from crds_events.rules.parse import MappingError, parse_mapping

    try:
        header = parse_mapping(read_mapping_text(path), path).header
    except (OSError, MappingError) as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    return str(header.get("observatory", "hst")).lower()


@cli.command("refactor")
@click.argument("command", type=click.Choice(["insert", "delete", "set_header", "del_header"]))
@click.argument("old_rmap", type=click.Path(dir_okay=False))
@click.argument("new_rmap", type=click.Path(dir_okay=False))
@click.argument("args", nargs=-1, required=True)
@click.option("--substitutions", type=click.Path(dir_okay=False), default=None,
              help="Site substitutions.dat (default $CRDS_EVENTS_SUBSTITUTIONS or settings).")
@click.option("--tpn-dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Site .tpn directory: inserted match values must be valid per its _ld.tpn.")
@click.pass_context
def refactor_command(ctx: click.Context, command: str, old_rmap: str, new_rmap: str,
                     args: tuple[str, ...], substitutions: str | None,
                     tpn_dir: str | None) -> None:
    """Insert or delete references, or set/delete a header key, writing NEW_RMAP.

    \b
    refactor insert OLD.rmap NEW.rmap REFERENCE...
    refactor delete OLD.rmap NEW.rmap REFERENCE...
    refactor set_header OLD.rmap NEW.rmap KEY VALUE...
    refactor del_header OLD.rmap NEW.rmap KEY
    """
    from crds_events.refactoring import refactor

    old_rmap, new_rmap = _crds_style_path(old_rmap), _crds_style_path(new_rmap)
    if command == "insert":
        table = _site_substitutions(substitutions, _rmap_observatory(old_rmap))
        valid = None
        if tpn_dir:
            try:
                valid = refactor.valid_values_from_tpns(old_rmap, tpn_dir)
            except (ValueError, OSError) as exc:
                raise click.ClickException(f"{tpn_dir}: {exc}") from None
        result = refactor.insert_references(old_rmap, new_rmap, args, substitutions=table,
                                            valid_values=valid)
    elif command == "delete":
        result = refactor.delete_references(old_rmap, new_rmap, args)
    elif command == "set_header":
        result = refactor.set_header(old_rmap, new_rmap, args[0], " ".join(args[1:]))
    else:
        if len(args) != 1:
            raise click.UsageError("del_header takes exactly one KEY")
        result = refactor.del_header(old_rmap, new_rmap, args[0])
    colour = sys.stderr.isatty()
    styles = {"ERROR": "red", "WARNING": "yellow"}
    for line in result.log.lines():
        level = line.split(" - ")[1] if " - " in line else "INFO"
        click.echo(click.style(line, fg=styles.get(level)) if colour else line, err=True)
    ctx.exit(result.exit_code)


@cli.command("newcontext")
@click.argument("old_pmap", type=click.Path(dir_okay=False, exists=True))
@click.argument("new_rmaps", nargs=-1, required=True)
@click.option("--output-dir", type=click.Path(file_okay=False), default=None,
              help="Where the new imaps and pmap are written (default: OLD_PMAP's directory).")
@click.option("--mappings-dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Where OLD_PMAP's children are (default: OLD_PMAP's directory).")
def newcontext_command(old_pmap: str, new_rmaps: tuple[str, ...], output_dir: str | None,
                       mappings_dir: str | None) -> None:
    """Write new imaps and a new pmap using NEW_RMAPS (or <instrument>_<type>_n/a)."""
    from crds_events.refactoring.newcontext import new_context
    from crds_events.rules.parse import MappingError

    try:
        result = new_context(old_pmap, new_rmaps, output_dir=output_dir,
                             mappings_dir=mappings_dir)
    except (MappingError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    for message in result.messages:
        click.echo(f"CRDS-EVENTS - INFO - {message}", err=True)
    for path in result.paths.values():
        click.echo(str(path))


class _DiffError(click.ClickException):
    exit_code = 2  # crds diff: 0 same, 1 different, 2 error


@cli.command("diff")
@click.argument("old_file", type=click.Path(dir_okay=False))
@click.argument("new_file", type=click.Path(dir_okay=False))
@click.option("-T", "--mapping-text-diffs", is_flag=True,
              help="Also print context diffs of the mapping texts.")
@click.option("-i", "--include-header-diffs", is_flag=True,
              help="Include mapping header differences.")
@click.option("-B", "--hide-boring-diffs", is_flag=True,
              help="Hide boiler-plate header differences (name, sha1sum, derived_from).")
@click.option("-U", "--recurse-added-deleted", is_flag=True,
              help="List every file of an added or deleted mapping too.")
@click.option("-L", "--lowest-mapping-only", is_flag=True,
              help="Name only the lowest mapping of each difference.")
@click.option("-E", "--remove-paths", is_flag=True, help="Remove paths from mapping names.")
@click.option("-Q", "--squash-tuples", is_flag=True, help="Print differences without tuples.")
@click.option("-F", "--brief", is_flag=True,
              help="Same as -L -E -B -i.")
@click.option("--mappings-dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Where child mappings are found (default: each mapping's directory).")
@click.option("--color/--no-color", "colour", default=None,
              help="Colourise (default: when stdout is a terminal).")
def diff_command(old_file: str, new_file: str, mapping_text_diffs: bool,
                 include_header_diffs: bool, hide_boring_diffs: bool,
                 recurse_added_deleted: bool, lowest_mapping_only: bool, remove_paths: bool,
                 squash_tuples: bool, brief: bool, mappings_dir: str | None,
                 colour: bool | None) -> None:
    """Print the differences of two mappings or two references (exit 0 same, 1 different,
    2 error), as `crds diff` does."""
    from crds_events.rules.diff import DiffOptions, difference, is_mapping_name
    from crds_events.rules.parse import MappingError

    colour = sys.stdout.isatty() if colour is None else colour
    old_file, new_file = _crds_style_path(old_file), _crds_style_path(new_file)
    for path in (old_file, new_file):
        if not os.path.isfile(path):
            raise _DiffError(f"{path}: no such file")
    if is_mapping_name(old_file) or is_mapping_name(new_file):
        if os.path.splitext(old_file)[1] != os.path.splitext(new_file)[1]:
            raise _DiffError(f"{old_file!r} and {new_file!r} are not the same kind of CRDS "
                             "mapping: .pmap, .imap, .rmap")
        options = DiffOptions(
            include_header_diffs=include_header_diffs or brief,
            hide_boring_diffs=hide_boring_diffs or brief,
            recurse_added_deleted=recurse_added_deleted,
            lowest_mapping_only=lowest_mapping_only or brief,
            remove_paths=remove_paths or brief,
            squash_tuples=squash_tuples,
            mapping_text_diffs=mapping_text_diffs,
        )
        out = io.StringIO()
        try:
            status = difference(old_file, new_file, options, out, old_mappings_dir=mappings_dir,
                                new_mappings_dir=mappings_dir, colour=colour)
        except (MappingError, OSError, UnicodeDecodeError) as exc:
            raise _DiffError(str(exc)) from None
        click.echo(out.getvalue(), nl=False, color=colour)
        click.get_current_context().exit(status)
    try:
        from crds_events.files.diff import diff_references
    except ImportError:  # the reference differ is not installed in this build
        raise _DiffError("reference differences are not available") from None
    result = diff_references(old_file, new_file)
    if result.text:
        click.echo(result.text.rstrip("\n"))
    click.get_current_context().exit(result.status)


def main() -> None:
    cli(obj={}, prog_name="crds-events")


if __name__ == "__main__":
    sys.exit(main())
