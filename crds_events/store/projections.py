"""Read-model tables kept by folding events (`crds_events.store.folds`) into the log's
database (SQLite or PostgreSQL: the SQL is the subset both accept, the rest asks the
transaction's `crds_events.store.dialect`).

`TableProjection` is the handler that persists one `Fold` as one table: for a batch of
events it loads each touched row once (on PostgreSQL, where each query is a round trip, the
batch's rows in a few queries), folds every event into them in memory, then writes the
final rows back, all inside the runner's transaction (so together with its checkpoint).

`rebuild` drops every projection table and replays the whole log into it in ONE
transaction: readers keep seeing the old tables until the new ones are complete, and a crash
mid-rebuild leaves the old ones in place.

`current_rows` is a fold's state as of the head for a reader that must see its own writes:
the table (which may lag) plus the events after its checkpoint; `current_row` is one row of
it, read by primary key, at a cost that does not grow with the table.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from crds_events.store.dialect import SQLITE, Dialect, dialect_of
from crds_events.store.folds import Fold, Key, Row, all_folds, replay
from crds_events.store.handler import Handler, get_checkpoint, set_checkpoint
from crds_events.store.interface import EventStore, RecordedEvent, Transaction

__all__ = ["PROJECTION_PREFIX", "TableProjection", "default_projections", "rebuild", "read_table",
           "current_rows", "current_row"]

_SQL_TYPES = {str: str, int: int, bool: int, tuple: str, float: float}


def _encode(columns: dict[str, type]) -> Callable[[Row], tuple]:
    converters = []
    for name, kind in columns.items():
        if kind is tuple:
            converters.append((name, lambda v: json.dumps(list(v)) if v is not None else None))
        elif kind is bool:
            converters.append((name, int))
        else:
            converters.append((name, None))

    def encode(row: Row) -> tuple:
        return tuple(row[n] if conv is None else conv(row[n]) for n, conv in converters)

    return encode


def _decoder(columns: dict[str, type]) -> Callable[[Sequence[Any]], Row]:
    names = list(columns)
    tuples = [i for i, kind in enumerate(columns.values()) if kind is tuple]
    bools = [i for i, kind in enumerate(columns.values()) if kind is bool]

    def decode(values: Sequence[Any]) -> Row:
        values = list(values)
        for i in tuples:
            if values[i] is not None:
                values[i] = tuple(json.loads(values[i]))
        for i in bools:
            values[i] = bool(values[i])
        return dict(zip(names, values, strict=True))

    return decode


PROJECTION_PREFIX = "projection:"  # of every projection's checkpoint name
LOAD_CHUNK = 500  # keys per query loading a batch's rows (well under SQLite's 32,766 "?")


class TableProjection(Handler):
    """Persists one `Fold` as the table ``fold.table`` (checkpoint ``projection:<table>``)."""

    rebuildable = True

    def __init__(self, fold: Fold):
        self.fold = fold
        self.name = f"{PROJECTION_PREFIX}{fold.table}"
        self.consumes = fold.consumes
        columns = dict(fold.columns)
        self._encode = _encode(columns)
        self.decode_row = _decoder(columns)
        q = SQLITE.quote  # standard double quotes: the same on both databases
        cols = ", ".join(q(c) for c in columns)
        where = " AND ".join(f"{q(c)} = ?" for c in fold.pk)
        self._select = f"SELECT {cols} FROM {q(fold.table)} WHERE {where}"
        self._select_many = f"SELECT {', '.join(q(c) for c in fold.pk)}, {cols} FROM " \
                            f"{q(fold.table)} WHERE "
        self._sql_types = {c: _SQL_TYPES[k] for c, k in columns.items()}
        # key values as the table holds them (SQLite's column affinity would convert a
        # key given as another type in a comparison; a lookup by value must not miss it)
        self._key_kinds = tuple(str if columns[c] is str else int for c in fold.pk)
        self._delete = f"DELETE FROM {q(fold.table)} WHERE {where}"

    def setup(self, tx: Transaction) -> None:
        dialect: Dialect = dialect_of(tx)
        table = self.fold.table
        exists = dialect.table_exists(tx, table)
        if exists and set(dialect.columns_of(tx, table)) != set(self.fold.columns):
            # The fold's shape changed in a new release (a column added or removed): the
            # table is derived data, so drop it and replay the log into the new shape.
            dialect.drop_table(tx, table)
            set_checkpoint(tx, self.name, 0)
            exists = False
        if not exists:
            dialect.create_table(tx, table, {c: _SQL_TYPES[k] for c, k in
                                             self.fold.columns.items()}, self.fold.pk)

    def drop(self, tx: Transaction) -> None:
        dialect_of(tx).drop_table(tx, self.fold.table)

    def _load(self, tx: Transaction, key: Key) -> Row | None:
        values = tx.execute(self._select, key).fetchone()
        return self.decode_row(values) if values is not None else None

    def _key(self, key: Key) -> Key:
        return tuple(value if value is None else kind(value)
                     for kind, value in zip(self._key_kinds, key, strict=True))

    def _load_many(self, tx: Transaction, keys: Iterable[Key]) -> dict[Key, Row]:
        """The stored rows of ``keys`` (normalised by `_key`), LOAD_CHUNK keys a query."""
        wanted = list(dict.fromkeys(self._key(key) for key in keys))
        width = len(self.fold.pk)
        dialect = dialect_of(tx)
        found: dict[Key, Row] = {}
        for start in range(0, len(wanted), LOAD_CHUNK):
            where, params = dialect.keys_in(self.fold.pk, self._key_kinds,
                                            wanted[start:start + LOAD_CHUNK])
            for values in tx.execute(self._select_many + where, params):
                found[tuple(values[:width])] = self.decode_row(values[width:])
        return found

    def handle_batch(self, tx: Transaction, records: Sequence[RecordedEvent]) -> None:
        fold = self.fold
        dialect = dialect_of(tx)
        touched = [(record, tuple(fold.keys(record))) for record in records]
        if dialect.round_trips:  # PostgreSQL: the batch's rows in a few queries
            stored = self._load_many(tx, (key for _, keys in touched for key in keys))

            def load(key: Key) -> Row | None:
                return stored.get(self._key(key))
        else:  # SQLite, in-process: a lookup by primary key is cheaper than a set query
            def load(key: Key) -> Row | None:
                return self._load(tx, key)
        rows: dict[Key, Row | None] = {}
        for record, keys in touched:
            for key in keys:
                row = rows[key] if key in rows else load(key)
                rows[key] = fold.apply(key, row, record)
        upserts = [self._encode(row) for row in rows.values() if row is not None]
        deletes = [key for key, row in rows.items() if row is None]
        if upserts:  # distinct keys: one row per key of the batch
            dialect.upsert_many(tx, fold.table, self._sql_types, fold.pk, upserts)
        if deletes:
            tx.executemany(self._delete, deletes)

    def handle(self, tx: Transaction, record: RecordedEvent) -> None:
        self.handle_batch(tx, [record])


def default_projections() -> list[TableProjection]:
    """One `TableProjection` per registered fold (files, submissions, deliveries, ...)."""
    return [TableProjection(fold) for fold in all_folds()]


def read_table(store: EventStore | Transaction, projection: TableProjection) -> dict[Key, Row]:
    """Every row of a projection table, decoded, by key (for tests and the web)."""
    fold = projection.fold
    cols = ", ".join(SQLITE.quote(c) for c in fold.columns)
    result = {}
    for values in store.execute(f"SELECT {cols} FROM {SQLITE.quote(fold.table)}"):
        row = projection.decode_row(values)
        result[fold.key_of(row)] = row
    return result


def _table_exists(tx: Transaction, table: str) -> bool:
    if not hasattr(tx, "execute"):  # a bare EventReader (the web's LogReader): fold the log
        return False
    return dialect_of(tx).table_exists(tx, table)


def current_rows(store: EventStore | Transaction, fold: Fold) -> dict[Key, Row]:
    """The rows of ``fold`` as of the log's head (a store or an open transaction).

    Starts from the fold's projection table where there is one and folds the events after
    its checkpoint (none while the server keeps up; the whole log when no table exists), so
    a caller sees its own writes at once. The table and its checkpoint are read in one
    transaction, where they are consistent with each other.
    """
    if hasattr(store, "transaction"):
        with store.transaction() as tx:
            return _current_rows(tx, fold)
    return _current_rows(store, fold)


def _current_rows(tx: Transaction, fold: Fold) -> dict[Key, Row]:
    projection = TableProjection(fold)
    state: dict[Key, Row] = {}
    after = 0
    if _table_exists(tx, fold.table):
        after = get_checkpoint(tx, projection.name)
        if after:
            state = read_table(tx, projection)
    return replay(fold, tx.read_all(after, types=fold.consumes), state)


def current_row(store: EventStore | Transaction, fold: Fold, key: Key) -> Row | None:
    """The row ``key`` of ``fold`` as of the log's head (None: absent), like `current_rows`
    but loading only that row from the table, so a lookup (a pipeline's key, one file)
    costs the same however many rows the table holds."""
    if hasattr(store, "transaction"):
        with store.transaction() as tx:
            return _current_row(tx, fold, key)
    return _current_row(store, fold, key)


def _current_row(tx: Transaction, fold: Fold, key: Key) -> Row | None:
    projection = TableProjection(fold)
    row: Row | None = None
    after = 0
    if _table_exists(tx, fold.table):
        after = get_checkpoint(tx, projection.name)
        if after:
            values = tx.execute(projection._select, tuple(key)).fetchone()
            row = projection.decode_row(values) if values is not None else None
    for record in tx.read_all(after, types=fold.consumes):
        if key in fold.keys(record):
            row = fold.apply(key, row, record)
    return row


def rebuild(
    store: EventStore,
    projections: Iterable[TableProjection] | None = None,
    *,
    batch: int = 20_000,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Drop and replay ``projections`` (default: all) from the whole log, atomically.

    ``progress(done_position, head)`` is called after each batch. Returns the head position
    replayed to. Writers wait (busy timeout) while the rebuild holds the write lock.
    """
    projections = list(projections) if projections is not None else default_projections()
    consumed = set().union(*(p.consumes for p in projections)) if projections else set()
    takers: dict[str, list[int]] = {}  # event type -> the projections consuming it
    for index, projection in enumerate(projections):
        for type_name in projection.consumes:
            takers.setdefault(type_name, []).append(index)
    with store.transaction() as tx:
        for projection in projections:
            projection.drop(tx)
            projection.setup(tx)
        head = tx.head()
        after = 0
        while after < head:
            records = tx.read_all(after, types=consumed, limit=batch)
            if not records:
                break
            # one pass over the batch (not one per projection), order kept per projection
            mine: list[list[RecordedEvent]] = [[] for _ in projections]
            for record in records:
                for index in takers.get(record.type, ()):
                    mine[index].append(record)
            for projection, its in zip(projections, mine, strict=True):
                if its:
                    projection.handle_batch(tx, its)
            after = records[-1].position
            if progress is not None:
                progress(after, head)
        for projection in projections:
            set_checkpoint(tx, projection.name, head)
    return head
