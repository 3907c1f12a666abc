"""JSON from a request, bounded: size and nesting depth are checked, errors are one line.

`json.loads` recurses once per nesting level: ``[[[[...]]]]`` 100,000 deep raises
RecursionError (not ValueError), which escaped every ``except ValueError`` and became a 500.
`loads_bounded` refuses text over ``max_bytes`` before parsing, turns the RecursionError into
`JsonInputError`, and refuses any document nested deeper than ``max_depth`` (measured
without recursion), so nothing later - YAML dumps, templates, ``jsonify`` - recurses on it.
"""

from __future__ import annotations

import json
from typing import Any

from crds_events.errors import CrdsEventsError

__all__ = ["JsonInputError", "loads_bounded", "depth_of", "MAX_DEPTH"]

MAX_DEPTH = 32  # far deeper than any form field or RPC parameter we accept needs


class JsonInputError(CrdsEventsError, ValueError):
    """Request JSON that is malformed, too large or too deeply nested (names the field)."""


def depth_of(value: Any, limit: int) -> int:
    """The nesting depth of ``value`` (a scalar is 0), counted up to ``limit + 1`` at most
    (iteratively: a hostile document cannot exhaust the stack here)."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        pending.extend((child, depth) for child in children)
    return deepest


def loads_bounded(text: str | bytes, what: str, *, max_bytes: int,
                  max_depth: int = MAX_DEPTH) -> Any:
    """``text`` parsed as JSON, or `JsonInputError` naming ``what`` and the reason."""
    if len(text) > max_bytes:
        raise JsonInputError(f"{what}: {len(text)} bytes, more than the limit of {max_bytes}")
    try:
        value = json.loads(text)
    except RecursionError:
        raise JsonInputError(f"{what}: nested more than {max_depth} levels deep") from None
    except (UnicodeDecodeError, ValueError) as exc:
        # the decoder's message is one line naming the position (never the input itself)
        raise JsonInputError(f"{what}: not JSON: {str(exc).splitlines()[0][:200]}") from None
    if depth_of(value, max_depth) > max_depth:
        raise JsonInputError(f"{what}: nested more than {max_depth} levels deep")
    return value
