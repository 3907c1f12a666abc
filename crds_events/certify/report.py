"""Certify results as lines an operator reads: one block per file, a summary at the end.

Each line comes with a style name (``ok``, ``warning``, ``error``, ``info``, ``dim``) that the
CLI turns into colours on a terminal and drops when output is piped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from crds_events.certify.result import FileResult

STYLES = {"ok": "bold green", "warning": "bold yellow", "error": "bold red", "info": "cyan",
          "dim": "dim", "plain": ""}
_STATUS_STYLE = {"OK": "ok", "WARNINGS": "warning", "ERRORS": "error"}


def report_lines(results: Iterable[FileResult], verbose: bool = False) -> Iterator[tuple[str, str]]:
    """(text, style) lines: per file its status and messages (info and the constraints
    applied only with `verbose`), then the totals."""
    results = list(results)
    for result in results:
        yield f"{result.path}: {result.status}", _STATUS_STYLE[result.status]
        for message in result.messages:
            if message.level == "info" and not verbose:
                continue
            where = f"{message.keyword}: " if message.keyword else ""
            yield f"    {message.level.upper()}: {where}{message.reason}", message.level
        if verbose and result.constraints:
            yield "    constraints applied:", "dim"
            for line in result.constraints:
                yield f"      {line}", "dim"
    errors = sum(len(r.errors) for r in results)
    warnings = sum(len(r.warnings) for r in results)
    failed = sum(1 for r in results if r.errors)
    summary = (f"{len(results)} file(s) certified: {len(results) - failed} without errors, "
               f"{failed} with errors; {errors} error(s), {warnings} warning(s)")
    yield summary, "error" if failed else "warning" if warnings else "ok"
