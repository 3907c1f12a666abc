"""Rows of the ``events`` table and `RecordedEvent`: the column list, decoding, filters.

Shared by the writer (`crds_events.store.eventlog`), the read-only reader
(`crds_events.store.reader`) and the as-of queries (`crds_events.store.asof`), so the row
format is written down once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from crds_events.store.interface import RecordedEvent

__all__ = ["COLUMNS", "dumps", "loads", "row_to_record", "where"]

COLUMNS = ("position, stream, version, type, schema_version, data, meta, recorded_at, "
           "idempotency_key")
_RECORD_FIELDS = ("position", "stream", "version", "type", "schema_version", "data", "meta",
                  "recorded_at", "idempotency_key")

dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
# Stored JSON never has leading whitespace: raw_decode skips json.loads' wrapper and regex.
_raw_decode = json.JSONDecoder().raw_decode
_META_CACHE: dict[str, dict] = {}


def loads(text: str) -> Any:
    return _raw_decode(text)[0]


def _load_meta(text: str) -> dict:
    # Metadata repeats a lot (same actor, no causation): decode each distinct text once and
    # hand out copies, so a caller mutating one record's meta cannot affect another's.
    cached = _META_CACHE.get(text)
    if cached is None:
        cached = loads(text)
        if len(_META_CACHE) > 4096:
            _META_CACHE.clear()
        _META_CACHE[text] = cached
    return dict(cached)


def row_to_record(row: tuple) -> RecordedEvent:
    """The `RecordedEvent` of a row selected as `COLUMNS`."""
    # Equivalent to RecordedEvent(*row) with the JSON columns decoded; filling __dict__
    # directly skips the frozen dataclass __init__, which matters when replaying millions.
    record = object.__new__(RecordedEvent)
    values = dict(zip(_RECORD_FIELDS, row, strict=True))
    values["data"] = loads(row[5])
    values["meta"] = _load_meta(row[6])
    record.__dict__.update(values)
    return record


def where(
    after: int, streams: Iterable[str] | None, types: Iterable[str] | None
) -> tuple[str, list[Any]]:
    """The WHERE clause (and its parameters) of "after position, of these streams/types"."""
    clauses, params = ["position > ?"], [after]
    if streams is not None:
        streams = list(streams)
        clauses.append(f"stream IN ({','.join('?' * len(streams))})")
        params.extend(streams)
    if types is not None:
        types = list(types)
        clauses.append(f"type IN ({','.join('?' * len(types))})")
        params.extend(types)
    return " AND ".join(clauses), params
