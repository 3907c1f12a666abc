"""Best references over JSON lines: `{"header": {...}, ...}` in, the same plus `bestrefs` out.

A dataset that fails as a whole gets `"error": "NOT FOUND <reason>"` instead of `bestrefs`
and the run goes on; a line that is not a JSON object with a `header` object stops the run
with an error naming the line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from crds_events.errors import CrdsEventsError
from crds_events.rules.bestrefs import Context, DatasetError


class BestrefsInputError(CrdsEventsError, ValueError):
    """A malformed input line (the message names the source and line number)."""


def annotate(context: Context, record: dict, types: Iterable[str] | None = None) -> dict:
    """`record` with `bestrefs` (or `error`) added for its `header`."""
    result = dict(record)
    try:
        result["bestrefs"] = context.best_references(record["header"], types)
    except DatasetError as exc:
        result["error"] = exc.not_found
    return result


BATCH = 1_000  # records answered together (`Context.best_references_many`)


def annotate_lines(
    context: Context,
    lines: Iterable[str],
    types: Iterable[str] | None = None,
    source: str = "<input>",
) -> Iterator[str]:
    """Yield one output JSON line per non-blank input line, in order.

    Records are answered in batches (`Context.best_references_many`); a malformed line
    stops the run after the lines before it were written.
    """
    wanted = list(types) if types is not None else None
    batch: list[dict] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield from _answered(context, batch, wanted)
            raise BestrefsInputError(f"{source}: line {number}: not valid JSON ({exc})") from exc
        if not isinstance(record, dict) or not isinstance(record.get("header"), dict):
            yield from _answered(context, batch, wanted)
            raise BestrefsInputError(
                f'{source}: line {number}: expected a JSON object with a "header" object'
            )
        batch.append(record)
        if len(batch) >= BATCH:
            yield from _answered(context, batch, wanted)
    yield from _answered(context, batch, wanted)


def _answered(context: Context, batch: list[dict], types: list[str] | None) -> Iterator[str]:
    """The output lines of `batch` (emptied)."""
    answers = context.best_references_many([record["header"] for record in batch], types)
    for record, answer in zip(batch, answers, strict=True):
        result = dict(record)
        if isinstance(answer, DatasetError):
            result["error"] = answer.not_found
        else:
            result["bestrefs"] = answer
        yield json.dumps(result)
    batch.clear()
