"""The rules and reference-file tools: bestrefs, checksum, certify, refactor, newcontext, diff,
uniqname, list.

They work on files and directories (no server root needed) and follow the `crds` tools'
names, flags, output and exit statuses.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterable
from pathlib import PurePath

import click

from crds_events.certify import certify_files, exit_code
from crds_events.certify.report import STYLES, report_lines
from crds_events.cli.options import settings_for
from crds_events.client.rpc import RpcClientError
from crds_events.client.status import remote_list, remote_status
from crds_events.client.submission_fields import SubmissionFieldsError, expand_file_lists
from crds_events.contexts.listing import CatalogError, DirectoryCatalog, format_status
from crds_events.errors import CrdsEventsError
from crds_events.files.checksums import checksum_reference
from crds_events.files.diff import diff_references
from crds_events.files.errors import ReferenceFileError
from crds_events.files.uniqname import rename_reference
from crds_events.files.unique import make_unique
from crds_events.refactoring import refactor
from crds_events.refactoring.diff import DiffOptions, difference
from crds_events.refactoring.newcontext import new_context
from crds_events.rules.bestrefs import load_context
from crds_events.rules.bestrefs_io import BestrefsInputError, annotate_lines
from crds_events.rules.checksum import read_mapping_text
from crds_events.rules.diff import is_mapping_name
from crds_events.rules.naming import MAPPING_KINDS
from crds_events.rules.parse import MappingError, parse_mapping
from crds_events.rules.rewrite import rewrite_mapping_checksum, verify_mapping_checksum
from crds_events.rules.substitutions import (
    Substitutions,
    SubstitutionsError,
    find_substitutions,
    load_substitutions,
)


@click.command("bestrefs")
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
def bestrefs_command(context_path: str, headers_path: str, output_path: str | None,
                     types: str | None) -> None:
    """Best references for each dataset header of a JSON-lines file."""
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


@click.command("checksum")
@click.option("--verify", is_flag=True, help="Only verify: print each file's status.")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def checksum_command(verify: bool, files: tuple[str, ...]) -> None:
    """Rewrite mappings in canonical form with a fresh sha1sum, or --verify them.

    With --verify, prints `FILE: OK`, `FILE: mismatch (...)` or `FILE: error (...)` per
    file and exits 1 if any is not OK. Without it, rewrites each file as `crds checksum`
    does; a file that cannot be rewritten is reported and the others still are. Files that
    are not mappings are FITS references: their CHECKSUM/DATASUM are added or verified.
    """
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


def _print_styled(lines: Iterable[tuple[str, str]], colour: bool | None = None) -> None:
    """(text, style) lines: rich colours on a terminal, plain text when piped."""
    # lazy: rich costs ~45 ms at every start-up; only certify's report needs it
    from rich.console import Console
    from rich.text import Text

    console = Console(file=sys.stdout, highlight=False, soft_wrap=True,
                      force_terminal=colour, no_color=colour is False)
    for text, style in lines:
        console.print(Text(text, style=STYLES.get(style, "")))


@click.command("certify")
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
def certify_command(files: tuple[str, ...], context: str | None,
                    comparison_context: str | None, run_fitsverify: bool, verbose: bool,
                    tpn_dir: str | None, mappings_dir: str | None, substitutions: str | None,
                    colour: bool | None) -> None:
    """Check reference and rules files; OK / WARNINGS / ERRORS per file.

    Exit status 0 when no file has errors (warnings allowed), 1 otherwise.
    """
    results = certify_files(files, context=context, comparison_context=comparison_context,
                            run_fitsverify=run_fitsverify, verbose=verbose, tpn_dir=tpn_dir,
                            mappings_dir=mappings_dir, substitutions=substitutions)
    _print_styled(report_lines(results, verbose), colour)
    code = exit_code(results)
    if code:
        raise click.exceptions.Exit(code)


@click.command("uniqname")
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
def uniqname_command(files: tuple[str, ...], more_files: tuple[str, ...], standard: bool,
                     add_checksum: bool, add_keywords: bool, remove_original: bool,
                     output_path: str | None, dry_run: bool) -> None:
    """Rename HST/SYNPHOT references by CRDS's time-based unique-name scheme."""
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


@click.command("uniq")
@click.argument("files", nargs=-1, required=True)
@click.option("--keyword", default="CRDSUNIQ", show_default=True,
              help="The header keyword that gets the unique value (ASDF: meta.<keyword>).")
def uniq_command(files: tuple[str, ...], keyword: str) -> None:
    """Make test references unique: set a header keyword of each FITS/ASDF file to a fresh
    timestamp (in place), so the server does not refuse them as already known.

    A FILES word @LIST names a file listing more files (# comments)."""
    try:
        paths = expand_file_lists(files)
    except SubmissionFieldsError as exc:
        raise click.BadParameter(str(exc), param_hint="FILES") from None
    failures = 0
    for path in paths:
        try:
            value = make_unique(path, keyword)
        except (ReferenceFileError, OSError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            click.echo(f"ERROR: {path}: {reason}" if isinstance(exc, OSError)
                       else f"ERROR: {reason}", err=True)
            failures += 1
            continue
        click.echo(f"{path}: {keyword.strip().upper()} = {value}")
    if failures:
        raise click.exceptions.Exit(1)


@click.command("list")
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
def list_command(what: str | None, mappings_dir: str, references_dir: str | None,
                 context: str | None, server_url: str | None) -> None:
    """List mappings, references or contexts, or show a status summary."""
    if what is None:
        raise click.UsageError("choose one of --mappings, --references, --contexts, --status")
    if server_url:
        return _remote_list(server_url, what)
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


def _remote_list(server_url: str, what: str) -> None:
    """`crds-events list --server`: the server's status or file lists."""
    try:
        if what == "status":
            lines = list(format_status(remote_status(server_url)))
        else:
            lines = remote_list(server_url, what)
    except (RpcClientError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    for line in lines:
        click.echo(line)


def _crds_style_path(name: str) -> str:
    """A bare file name is shown as ./name, as the crds tools show it."""
    return name if os.path.dirname(name) else "./" + name


def _site_substitutions(path: str | None, observatory: str) -> Substitutions | None:
    """--substitutions, else $CRDS_EVENTS_SUBSTITUTIONS, else the server settings' file."""
    try:
        if path:
            return load_substitutions(path)
        found = find_substitutions(observatory)
        if found is None and os.environ.get("CRDS_EVENTS_ROOT"):
            settings = settings_for(None)
            if settings.substitutions:
                found = find_substitutions(observatory, {"substitutions": settings.substitutions})
        return found
    except SubstitutionsError as exc:
        raise click.ClickException(str(exc)) from None


def _rmap_observatory(path: str) -> str:
    try:
        header = parse_mapping(read_mapping_text(path), path).header
    except (OSError, MappingError) as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    return str(header.get("observatory", "hst")).lower()


@click.command("refactor")
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


@click.command("newcontext")
@click.argument("old_pmap", type=click.Path(dir_okay=False, exists=True))
@click.argument("new_rmaps", nargs=-1, required=True)
@click.option("--output-dir", type=click.Path(file_okay=False), default=None,
              help="Where the new imaps and pmap are written (default: OLD_PMAP's directory).")
@click.option("--mappings-dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Where OLD_PMAP's children are (default: OLD_PMAP's directory).")
def newcontext_command(old_pmap: str, new_rmaps: tuple[str, ...], output_dir: str | None,
                       mappings_dir: str | None) -> None:
    """Write new imaps and a new pmap using NEW_RMAPS (or <instrument>_<type>_n/a)."""
    try:
        result = new_context(old_pmap, new_rmaps, output_dir=output_dir,
                             mappings_dir=mappings_dir)
    except (MappingError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    for message in result.messages:
        click.echo(f"CRDS-EVENTS - INFO - {message}", err=True)
    for path in result.paths.values():
        click.echo(str(path))


class _DiffError(CrdsEventsError, click.ClickException):
    exit_code = 2  # crds diff: 0 same, 1 different, 2 error


@click.command("diff")
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
    result = diff_references(old_file, new_file)
    if result.text:
        click.echo(result.text.rstrip("\n"))
    click.get_current_context().exit(result.status)
