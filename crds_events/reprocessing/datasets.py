"""The archive's dataset parameters: a bulk catalog imported from JSON lines.

    import_datasets(settings, store, "acs_datasets.jsonl")

Each line is ``{"id": "<product>:<exposure>", "header": {"INSTRUME": "ACS", ...}}`` (what
the archive's dataset parameter service returns for one exposure). The catalog can have
millions of lines, so the file is streamed (read once for its sha1, once for its rows)
and never held in memory. Every line is parsed and checked (a JSON object, an ``id``, a
``header`` of plain values naming an instrument); broken lines are reported by number and
reason (`DatasetImportError`, the first few of them) and nothing is imported. The rows go
into the ``datasets`` table as they are read (batched ``executemany``), all in one write
transaction that also records `DatasetsImported` (source path, sha1, counts); a broken
line rolls it back, as does a crash: the whole file or nothing. (That transaction holds the
log's write lock for the import's duration: about 10-30 s per million lines here.)

The ``datasets`` table is bulk data, **not a projection of events**: it is not rebuilt by
``crds-events rebuild`` and the log does not hold its rows (that would make replays as slow
as the catalog is big). `DatasetsImported` records the fact of an import; importing the same
file again (same sha1) is recognised from that event and changes nothing. A later line, or
a later file, with an id already present replaces that dataset's parameters.

Columns: ``id`` (primary key), ``instrument`` (upper case, as CRDS names it), ``header``
(the JSON object with keys upper-cased, as best references read them), ``param_key`` (a
digest of the header without its exposure date/time: datasets with equal keys have equal
parameters apart from the date, so reprocessing computes best references once per key and
date interval, see `crds_events.reprocessing.affected`) and ``exposure_date`` (the date and time as a
UseAfter lookup compares them, ``YYYY-MM-DD HH:MM:SS``; '' when missing or unparseable).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from crds_events import events as ev
from crds_events.config import Settings
from crds_events.errors import CrdsEventsError
from crds_events.files.checksums import sha1_file
from crds_events.rules import dates
from crds_events.rules.bestrefs import INSTRUMENT_ALIASES, INSTRUMENT_KEYWORDS
from crds_events.rules.conditioning import condition_value, upper_keys
from crds_events.store.interface import EventStore, Transaction

__all__ = [
    "DATE_KEYS",
    "DatasetImportError",
    "ImportResult",
    "Progress",
    "dataset_count",
    "ensure_tables",
    "exposure_date",
    "import_datasets",
    "param_key",
]

TABLE = "datasets"
MAX_REPORTED_ERRORS = 20
_BATCH = 20_000

# Where an observatory's datasets keep the exposure start (what their rmaps' UseAfter
# selectors read), in the order tried: data model paths first, then FITS keywords.
DATE_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "hst": (("DATE-OBS", "TIME-OBS"),),
    "jwst": (("META.OBSERVATION.DATE", "META.OBSERVATION.TIME"), ("DATE-OBS", "TIME-OBS")),
    "roman": (),
}

Progress = Callable[[str, int, int], None]
"""``progress(phase, bytes_done, bytes_total)``; phase is "import"."""


class DatasetImportError(CrdsEventsError, ValueError):
    """The file cannot be imported; nothing was written. ``errors``: (line, reason) pairs
    (the first few), ``total``: how many lines are broken."""

    def __init__(self, path: str | os.PathLike, errors: list[tuple[int, str]], total: int):
        self.path = str(path)
        self.errors = errors
        self.total = total
        shown = "; ".join(f"line {line}: {reason}" for line, reason in errors)
        more = f" (and {total - len(errors)} more broken lines)" if total > len(errors) else ""
        super().__init__(f"{path}: {total} broken line(s), nothing imported: {shown}{more}")


@dataclasses.dataclass(frozen=True)
class ImportResult:
    source: str
    sha1: str
    count: int  # lines imported (or imported before, when `already`)
    by_instrument: dict[str, int]
    already: bool = False  # the same file (sha1) was imported before: nothing done
    position: int = 0  # of the DatasetsImported event


def ensure_tables(tx: Transaction) -> None:
    """Create the ``datasets`` table and its indexes if missing."""
    tx.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} ("
        " id TEXT PRIMARY KEY, instrument TEXT NOT NULL, header TEXT NOT NULL,"
        " param_key TEXT NOT NULL, exposure_date TEXT NOT NULL DEFAULT '')"
    )
    # Covers reprocessing's candidates query, in its GROUP BY order (no table row read,
    # no sort): a million datasets grouped in seconds.
    tx.execute(
        f"CREATE INDEX IF NOT EXISTS {TABLE}_params "
        f"ON {TABLE} (instrument, param_key, exposure_date)"
    )


def dataset_count(store: EventStore, instrument: str | None = None) -> int:
    """How many datasets the catalog holds (of one instrument)."""
    if not _table_exists(store):
        return 0
    if instrument is None:
        return store.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
    return store.execute(
        f"SELECT count(*) FROM {TABLE} WHERE instrument = ?", (instrument.upper(),)
    ).fetchone()[0]


def _table_exists(store: EventStore) -> bool:
    return store.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
    ).fetchone() is not None


# --- one line --------------------------------------------------------------------------------


def instrument_of(header: Mapping[str, object]) -> str:
    """The instrument a (key-upper-cased) header names, upper case; '' when none."""
    for key in INSTRUMENT_KEYWORDS:
        if key in header:
            value = condition_value(header[key]).upper()
            if value != "UNDEFINED":
                return INSTRUMENT_ALIASES.get(value.lower(), value.lower()).upper()
    return ""


def _date_pair(header: Mapping[str, object], observatory: str) -> tuple[str, str] | None:
    """The date keys the header uses; None if none, or several (JWST data model and FITS
    spellings both: which one a lookup reads depends on their order, so no date is kept)."""
    present = [pair for pair in DATE_KEYS.get(observatory, ()) if pair[0] in header]
    return present[0] if len(present) == 1 else None


def exposure_date(header: Mapping[str, object], observatory: str) -> str:
    """The exposure start as a UseAfter lookup on the observatory's date keys compares it
    (`dates.reformat_date` of the conditioned date and time joined by a blank); ''."""
    pair = _date_pair(header, observatory)
    if pair is None:
        return ""
    parts = []
    for key in pair:
        if key not in header:
            return ""
        value = condition_value(header[key]).strip()
        if value == "UNDEFINED":
            return ""
        parts.append(value)
    text = " ".join(parts).strip()
    try:  # the usual spelling is already canonical: checked by a C parser, not the lenient one
        if datetime.datetime.fromisoformat(text).isoformat(" ") == text and len(text) == 19:
            return text
    except ValueError:
        pass
    try:
        return dates.reformat_date(text)
    except dates.DateError:
        return ""


def _date_names(observatory: str) -> frozenset[str]:
    return frozenset(key for pair in DATE_KEYS.get(observatory, ()) for key in pair)


def header_json(header: Mapping[str, object], observatory: str) -> tuple[str, str]:
    """``(the header as stored JSON, its param_key)``: the key is a digest of the
    parameters other than the exposure date and time (sorted keys, so spelling order does
    not matter); one encoding serves both."""
    skip = _date_names(observatory)
    rest = {key: value for key, value in header.items() if key not in skip}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    key = hashlib.sha1(text.encode()).hexdigest()[:20]
    if len(rest) < len(header):
        dated = json.dumps({k: v for k, v in header.items() if k in skip},
                           separators=(",", ":"), ensure_ascii=False)
        text = text[:-1] + ("," if rest else "") + dated[1:]
    return text, key


def param_key(header: Mapping[str, object], observatory: str) -> str:
    """A digest of the header's parameters other than the exposure date and time."""
    return header_json(header, observatory)[1]


_SCALAR_CLASSES = (str, int, float, bool, type(None))
_SCALARS = frozenset(_SCALAR_CLASSES)


def parse_line(text: str) -> tuple[str, dict[str, Any], str]:
    """``(id, header with upper-case keys, instrument)`` of one line; ValueError says what
    is wrong."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    dataset_id = record.get("id")
    if not isinstance(dataset_id, str) or not dataset_id.strip():
        raise ValueError("'id' must be a non-empty string like \"<product>:<exposure>\"")
    dataset_id = dataset_id.strip()
    if len(dataset_id.split()) != 1:
        raise ValueError(f"'id' {dataset_id!r} contains white space")
    header = record.get("header")
    if not isinstance(header, dict):
        raise ValueError("'header' must be a JSON object of dataset parameters")
    if not _SCALARS.issuperset(map(type, header.values())):
        for key, value in header.items():
            if not isinstance(value, _SCALAR_CLASSES):
                raise ValueError(f"header[{key!r}] must be a string, number, boolean or null,"
                                 f" not {type(value).__name__}")
    keys = "".join(header)
    if keys.upper() != keys:
        header = upper_keys(header)
    instrument = instrument_of(header)
    if not instrument:
        raise ValueError(f"dataset {dataset_id}: the header names no instrument "
                         f"({', '.join(INSTRUMENT_KEYWORDS[:2])}, ...)")
    return dataset_id, header, instrument


# --- import ------------------------------------------------------------------------------------


def previous_import(store: EventStore, observatory: str, sha1: str) -> ev.DatasetsImported | None:
    for record in store.read_stream(ev.datasets_stream(observatory)):
        if record.type == ev.DatasetsImported.type and record.data.get("digest") == sha1:
            return record.event  # type: ignore[return-value]
    return None


def import_datasets(
    settings: Settings,
    store: EventStore,
    path: str | os.PathLike,
    *,
    progress: Progress | None = None,
    actor: str | None = None,
) -> ImportResult:
    """Import a JSON-lines dataset catalog (see the module docstring); `ImportResult`.

    Raises `DatasetImportError` (nothing written) for a missing or broken file.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetImportError(path, [(0, "no such file")], 1)
    total = path.stat().st_size
    sha1, _ = sha1_file(path)
    observatory = settings.observatory
    earlier = previous_import(store, observatory, sha1)
    if earlier is not None:
        return ImportResult(str(path), sha1, earlier.count, dict(earlier.by_instrument),
                            already=True)

    by_instrument: dict[str, int] = {}
    errors: list[tuple[int, str]] = []
    broken = count = 0
    check = hashlib.sha1()
    insert = (f"INSERT OR REPLACE INTO {TABLE} (id, instrument, header, param_key, "
              "exposure_date) VALUES (?, ?, ?, ?, ?)")
    # One transaction: a broken line anywhere rolls back every row written before it.
    with store.transaction() as tx:
        ensure_tables(tx)
        rows: list[tuple[str, str, str, str, str]] = []
        done = 0
        with open(path, "rb") as stream:
            for number, raw in enumerate(stream, 1):
                check.update(raw)
                done += len(raw)
                if not raw.strip():
                    continue
                try:
                    dataset_id, header, instrument = parse_line(raw.decode("utf-8"))
                except (UnicodeDecodeError, ValueError) as exc:
                    broken += 1
                    if len(errors) < MAX_REPORTED_ERRORS:
                        reason = (f"not UTF-8 text ({exc.reason})"
                                  if isinstance(exc, UnicodeDecodeError) else str(exc))
                        errors.append((number, reason))
                    continue
                if broken:
                    continue  # only looking for more broken lines now
                count += 1
                by_instrument[instrument] = by_instrument.get(instrument, 0) + 1
                text, key = header_json(header, observatory)
                rows.append((dataset_id, instrument, text, key,
                             exposure_date(header, observatory)))
                if len(rows) >= _BATCH:
                    tx.executemany(insert, rows)
                    rows.clear()
                    if progress is not None:
                        progress("import", done, total)
        if broken:
            raise DatasetImportError(path, errors, broken)
        if count == 0:
            raise DatasetImportError(path, [(0, "no dataset lines")], 1)
        if rows:
            tx.executemany(insert, rows)
        if check.hexdigest() != sha1:
            raise DatasetImportError(path, [(0, "the file changed while it was imported")], 1)
        instruments = sorted(by_instrument)
        result = tx.record(
            ev.DatasetsImported(
                observatory=observatory,
                instrument=instruments[0] if len(instruments) == 1 else "",
                count=count, digest=sha1, source=str(path.resolve()),
                by_instrument=dict(sorted(by_instrument.items())),
            ),
            meta={"actor": actor} if actor else None,
            idempotency_key=f"datasets-imported:{observatory}:{sha1}",
        )
    if progress is not None:
        progress("import", total, total)
    return ImportResult(str(path), sha1, count, dict(sorted(by_instrument.items())),
                        position=result.position)
