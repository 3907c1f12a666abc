"""The archive's dataset parameters: a bulk catalog imported from JSON lines.

    import_datasets(settings, store, "acs_datasets.jsonl")

Each line is ``{"id": "<product>:<exposure>", "header": {"INSTRUME": "ACS", ...}}`` (what
the archive's dataset parameter service returns for one exposure). The catalog can have
millions of lines, so the file is streamed (read once for its sha1, once to check every
line, once for its rows) and never held in memory. Every line is parsed and checked (a JSON
object, an ``id``, a ``header`` of plain values naming an instrument) before anything is
written; broken lines are reported by number and reason (`DatasetImportError`, the first
few of them) and nothing is imported. The rows then go into the ``datasets`` table in
chunks of 10,000 lines, each chunk in its own write transaction together with the import's
progress (``dataset_imports``: byte offset, line, counts), so other writers (a submission
confirm, an RPC push) wait at most one chunk. An interrupted import (a crash, SIGKILL) is
resumed by running it again, or by its import id (``--resume ID``): it goes on from the
first line not committed, so no dataset is imported twice or skipped. Two importers of
the same file cooperate: each chunk commits only where the recorded progress stands. The
last step records `DatasetsImported` (source path, sha1, counts) once.

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
from crds_events.store.dialect import dialect_of
from crds_events.store.interface import EventStore, Transaction

__all__ = [
    "DATE_KEYS",
    "DatasetImportError",
    "ImportResult",
    "ImportState",
    "Progress",
    "dataset_count",
    "ensure_tables",
    "exposure_date",
    "import_datasets",
    "import_state",
    "param_key",
]

TABLE = "datasets"
MAX_REPORTED_ERRORS = 20

# Where an observatory's datasets keep the exposure start (what their rmaps' UseAfter
# selectors read), in the order tried: data model paths first, then FITS keywords.
DATE_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "hst": (("DATE-OBS", "TIME-OBS"),),
    "jwst": (("META.OBSERVATION.DATE", "META.OBSERVATION.TIME"), ("DATE-OBS", "TIME-OBS")),
    "roman": (),
}

Progress = Callable[[str, int, int], None]
"""``progress(phase, bytes_done, bytes_total)``; phase is "check" (every line is read
before anything is written) or "import"."""


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
    import_id: str = ""  # resumes an interrupted import (`import_datasets(resume=...)`)


def ensure_tables(tx: Transaction) -> None:
    """Create the ``datasets`` table and its indexes if missing."""
    # SQLite's implicit rowid (reprocessing groups rows by it) is a column on PostgreSQL
    rowid = ("rowid bigint GENERATED BY DEFAULT AS IDENTITY UNIQUE, "
             if dialect_of(tx).name == "postgresql" else "")
    tx.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} ({rowid}"
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


def _table_exists(store: EventStore | Transaction, table: str = TABLE) -> bool:
    return dialect_of(store).table_exists(store, table)


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


IMPORTS = "dataset_imports"
CHUNK = 10_000  # rows per write transaction: the longest any other writer waits for an import


def ensure_import_table(tx: Transaction) -> None:
    """The imports' progress: one row per import id, moved on in each chunk's transaction."""
    tx.execute(
        f"CREATE TABLE IF NOT EXISTS {IMPORTS} ("
        " import_id TEXT PRIMARY KEY, observatory TEXT NOT NULL, source TEXT NOT NULL,"
        " sha1 TEXT NOT NULL, size INTEGER NOT NULL, next_offset INTEGER NOT NULL,"
        " next_line INTEGER NOT NULL, count INTEGER NOT NULL, by_instrument TEXT NOT NULL,"
        " finished INTEGER NOT NULL DEFAULT 0)"
    )


def import_id_for(observatory: str, sha1: str) -> str:
    """The id of the import of a file: the same file resumes the same import."""
    return f"{observatory}-{sha1[:16]}"


@dataclasses.dataclass(frozen=True)
class ImportState:
    """Where an import stands (a row of ``dataset_imports``)."""

    import_id: str
    observatory: str
    source: str
    sha1: str
    size: int
    next_offset: int  # the file's byte offset of the first line not imported yet
    next_line: int  # its line number (1-based)
    count: int  # datasets imported so far
    by_instrument: dict[str, int]
    finished: bool


def import_state(store: EventStore | Transaction, import_id: str) -> ImportState | None:
    """The progress of import `import_id` (None: no such import)."""
    if not _table_exists(store, IMPORTS):
        return None
    row = store.execute(
        f"SELECT import_id, observatory, source, sha1, size, next_offset, next_line, count,"
        f" by_instrument, finished FROM {IMPORTS} WHERE import_id = ?", (import_id,)
    ).fetchone()
    if row is None:
        return None
    return ImportState(*row[:8], json.loads(row[8]), bool(row[9]))


def previous_import(store: EventStore, observatory: str, sha1: str) -> ev.DatasetsImported | None:
    for record in store.read_stream(ev.datasets_stream(observatory)):
        if record.type == ev.DatasetsImported.type and record.data.get("digest") == sha1:
            return record.event  # type: ignore[return-value]
    return None


def _validate(path: Path, total: int, progress: Progress | None) -> tuple[int, dict[str, int]]:
    """Read every line once before anything is written: a broken line anywhere imports
    nothing. (dataset lines, datasets per instrument); `DatasetImportError`."""
    errors: list[tuple[int, str]] = []
    broken = count = done = 0
    by_instrument: dict[str, int] = {}
    with open(path, "rb") as stream:
        for number, raw in enumerate(stream, 1):
            done += len(raw)
            if not raw.strip():
                continue
            try:
                _, _, instrument = parse_line(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                broken += 1
                if len(errors) < MAX_REPORTED_ERRORS:
                    reason = (f"not UTF-8 text ({exc.reason})"
                              if isinstance(exc, UnicodeDecodeError) else str(exc))
                    errors.append((number, reason))
                continue
            count += 1
            by_instrument[instrument] = by_instrument.get(instrument, 0) + 1
            if progress is not None and number % CHUNK == 0:
                progress("check", done, total)
    if broken:
        raise DatasetImportError(path, errors, broken)
    if count == 0:
        raise DatasetImportError(path, [(0, "no dataset lines")], 1)
    return count, by_instrument


class _Overtaken(CrdsEventsError):
    """Another importer of the same file committed this chunk first."""


def import_datasets(
    settings: Settings,
    store: EventStore,
    path: str | os.PathLike | None = None,
    *,
    progress: Progress | None = None,
    actor: str | None = None,
    resume: str | None = None,
    chunk: int = CHUNK,
    started: Callable[[str], None] | None = None,
) -> ImportResult:
    """Import a JSON-lines dataset catalog (see the module docstring); `ImportResult`.

    The rows are committed `chunk` lines at a time, each chunk with the import's progress
    (``dataset_imports``), so other writers wait at most one chunk, and an interrupted
    import (a crash, SIGKILL) goes on where it stopped: run it again, or pass its id as
    `resume` (then `path` may be left out: the recorded source is read). No dataset is
    imported twice or skipped: a chunk's rows and its progress commit together.
    `started(import_id)` is called once the id is known (before any line is read).

    Raises `DatasetImportError` (nothing written) for a missing or broken file, an unknown
    `resume` id, or a file that is not the one `resume` started with.
    """
    observatory = settings.observatory
    state = None
    if resume is not None:
        state = import_state(store, resume)
        if state is None or state.observatory != observatory:
            raise DatasetImportError(path or resume, [(0, f"no import with id {resume!r}")], 1)
        path = path if path is not None else state.source
    if path is None:
        raise DatasetImportError("<none>", [(0, "no file given")], 1)
    path = Path(path)
    if not path.is_file():
        raise DatasetImportError(path, [(0, "no such file")], 1)
    before = path.stat()
    total = before.st_size
    sha1, _ = sha1_file(path)
    if state is not None and state.sha1 != sha1:
        raise DatasetImportError(path, [(0, f"not the file import {resume!r} started with "
                                            f"(sha1 {sha1}, expected {state.sha1})")], 1)
    earlier = previous_import(store, observatory, sha1)
    if earlier is not None:
        return ImportResult(str(path), sha1, earlier.count, dict(earlier.by_instrument),
                            already=True, import_id=import_id_for(observatory, sha1))
    import_id = import_id_for(observatory, sha1)
    if started is not None:
        started(import_id)
    state = import_state(store, import_id)
    if state is None:
        _validate(path, total, progress)  # before the first row is written
        with store.transaction() as tx:
            ensure_tables(tx)
            ensure_import_table(tx)
            tx.execute(
                f"INSERT INTO {IMPORTS} (import_id, observatory, source, sha1, size,"
                " next_offset, next_line, count, by_instrument) VALUES (?, ?, ?, ?, ?, 0, 1, 0,"
                " '{}') ON CONFLICT DO NOTHING", (import_id, observatory, str(path.resolve()), sha1, total))
        state = import_state(store, import_id)
        assert state is not None
    if not state.finished:
        _import_rows(store, path, state, chunk, progress)
        state = import_state(store, import_id)  # as committed (by us or a fellow importer)
        assert state is not None
    if path.stat().st_mtime_ns != before.st_mtime_ns or path.stat().st_size != total:
        raise DatasetImportError(path, [(0, "the file changed while it was imported; "
                                            f"{state.count} of its datasets were imported")], 1)
    result = _finish(store, state, actor)
    if progress is not None:
        progress("import", total, total)
    return ImportResult(str(path), sha1, state.count, dict(sorted(state.by_instrument.items())),
                        position=result, import_id=import_id)


def _import_rows(store: EventStore, path: Path, state: ImportState, chunk: int,
                 progress: Progress | None) -> None:
    """Write the rows from where `state` stands, one transaction per `chunk` lines."""
    observatory = state.observatory
    insert = (f"INSERT INTO {TABLE} (id, instrument, header, param_key, exposure_date) "
              "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
              "instrument = excluded.instrument, header = excluded.header, "
              "param_key = excluded.param_key, exposure_date = excluded.exposure_date")
    with open(path, "rb") as stream:
        stream.seek(state.next_offset)
        offset, number = state.next_offset, state.next_line
        while True:
            rows: list[tuple[str, str, str, str, str]] = []
            counts: dict[str, int] = {}
            start = offset
            for raw in stream:  # the rows of one chunk, read before the lock is taken
                offset += len(raw)
                number += 1
                if not raw.strip():
                    continue
                try:
                    dataset_id, header, instrument = parse_line(raw.decode("utf-8"))
                except (UnicodeDecodeError, ValueError) as exc:
                    raise DatasetImportError(path, [(number - 1, f"changed since it was "
                                                     f"checked: {exc}")], 1) from None
                counts[instrument] = counts.get(instrument, 0) + 1
                text, key = header_json(header, observatory)
                rows.append((dataset_id, instrument, text, key,
                             exposure_date(header, observatory)))
                if len(rows) >= chunk:
                    break
            if offset == start:
                return  # the end of the file
            try:
                state = _commit_chunk(store, state, start, offset, number, rows, counts, insert)
            except _Overtaken:
                now = import_state(store, state.import_id)
                if now is None or now.finished:
                    return
                state = now
                stream.seek(state.next_offset)
                offset, number = state.next_offset, state.next_line
                continue
            if progress is not None:
                progress("import", offset, state.size)


def _commit_chunk(store: EventStore, state: ImportState, start: int, offset: int,
                  number: int, rows: list, counts: dict[str, int], insert: str) -> ImportState:
    """One chunk's rows and the import's progress, in one transaction (or `_Overtaken`)."""
    with store.transaction() as tx:
        now = import_state(tx, state.import_id)
        if now is None or now.finished or now.next_offset != start:
            raise _Overtaken()
        by_instrument = dict(now.by_instrument)
        for instrument, n in counts.items():
            by_instrument[instrument] = by_instrument.get(instrument, 0) + n
        count = now.count + len(rows)
        tx.executemany(insert, rows)
        tx.execute(
            f"UPDATE {IMPORTS} SET next_offset = ?, next_line = ?, count = ?, by_instrument = ?"
            " WHERE import_id = ?",
            (offset, number, count, json.dumps(by_instrument, sort_keys=True), state.import_id))
    return dataclasses.replace(now, next_offset=offset, next_line=number, count=count,
                               by_instrument=by_instrument)


def _finish(store: EventStore, state: ImportState, actor: str | None) -> int:
    """Record `DatasetsImported` once (whichever importer gets here first); its position."""
    with store.transaction() as tx:
        instruments = sorted(state.by_instrument)
        result = tx.record(
            ev.DatasetsImported(
                observatory=state.observatory,
                instrument=instruments[0] if len(instruments) == 1 else "",
                count=state.count, digest=state.sha1, source=state.source,
                by_instrument=dict(sorted(state.by_instrument.items())),
            ),
            meta={"actor": actor} if actor else None,
            idempotency_key=f"datasets-imported:{state.observatory}:{state.sha1}",
        )
        tx.execute(f"UPDATE {IMPORTS} SET finished = 1 WHERE import_id = ?", (state.import_id,))
    return result.position
