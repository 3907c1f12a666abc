"""Reprocessing in a running server: a forward change of ``latest`` -> affected datasets ->
held until the pipeline runs the new context -> released (the DPAS e-mail).

The flow::

    ContextSet(kind=latest, previous=hst_0001, context=hst_0002)
        --ReprocessingHandler (runner's write transaction)-->
        forward (serial 2 > 1): hand (old, new) to the worker
        regression / same / no previous: ReprocessingSkipped (why), nothing else
    ReprocessingService worker (own thread, OUTSIDE any write transaction):
        affected_datasets over the catalog -> artifacts + repro_results rows +
        AffectedDatasetsComputed + ReprocessingHeld, one transaction, idempotency keys
    ReprocessingHeld      --handler--> released at once if the pipeline already pushed
                                       the new context, else remembered in ``repro_held``
    RemoteContextPushed(pipeline=settings.release_pipeline, context=new)
                          --handler--> ReprocessingReleased -> the e-mail composer mails
                                       DPAS the summary and ids
    check_held(now) (the scheduler's job): held longer than settings.repro_hold_timeout
                          -> ReprocessingOverdue (once) -> the composer mails devs

This is the fix for CRDS's race: the ids never go out before the pipeline can use the rules
that make reprocessing worthwhile.

History is not replayed into work: when the handler first runs on a log that already has
events, it remembers the head and ignores context changes up to it (as the e-mail composer
does), so enabling reprocessing on an old server does not recompute years of contexts.

The server's ``reprocessing`` part (`crds_events.server.parts`) runs the handler and the
worker, and schedules `ReprocessingService.check_held`.
"""

from __future__ import annotations

import datetime
import logging
import queue
import threading

from crds_events import events as ev
from crds_events.config import Settings
from crds_events.handlers.worker import STOP, QueueWorker
from crds_events.reprocessing.affected import pmap_serial
from crds_events.store import log_target
from crds_events.store.dialect import dialect_of
from crds_events.store.handler import Handler
from crds_events.store.interface import EventStore, RecordedEvent, Transaction, caused_by

__all__ = [
    "HELD_TABLE",
    "LATEST_KINDS",
    "ReprocessingHandler",
    "ReprocessingService",
    "held",
]

log = logging.getLogger(__name__)

HELD_TABLE = "repro_held"
PUSHED_TABLE = "repro_pushed"
META_TABLE = "repro_meta"
LATEST_KINDS = frozenset({"latest", "operational"})


def _parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def held(store: EventStore | Transaction) -> list[dict]:
    """Reprocessing results waiting for their pipeline, oldest first."""
    if not dialect_of(store).table_exists(store, HELD_TABLE):
        return []
    rows = store.execute(
        f"SELECT observatory, new_context, pipeline, held_at, overdue_at, position "
        f"FROM {HELD_TABLE} ORDER BY held_at").fetchall()
    keys = ("observatory", "new_context", "pipeline", "held_at", "overdue_at", "position")
    return [dict(zip(keys, row, strict=True)) for row in rows]


class ReprocessingHandler(Handler):
    """Decides, inside the runner's transaction, what a context change or a push means."""

    name = "reprocessing"
    consumes = frozenset({ev.ContextSet.type, ev.ReprocessingHeld.type,
                          ev.RemoteContextPushed.type, ev.ReprocessingReleased.type})

    def __init__(self, service: ReprocessingService):
        self.service = service

    def setup(self, tx: Transaction) -> None:
        exists = dialect_of(tx).table_exists(tx, META_TABLE)
        tx.execute(f"CREATE TABLE IF NOT EXISTS {HELD_TABLE} (observatory TEXT NOT NULL,"
                   " new_context TEXT NOT NULL, pipeline TEXT NOT NULL, held_at TEXT NOT NULL,"
                   " overdue_at TEXT NOT NULL DEFAULT '', position INTEGER NOT NULL DEFAULT 0,"
                   " PRIMARY KEY (observatory, new_context))")
        tx.execute(f"CREATE TABLE IF NOT EXISTS {PUSHED_TABLE} (observatory TEXT NOT NULL,"
                   " pipeline TEXT NOT NULL, context TEXT NOT NULL,"
                   " PRIMARY KEY (observatory, pipeline))")
        if not exists:
            tx.execute(f"CREATE TABLE {META_TABLE} (key TEXT PRIMARY KEY, value INTEGER)")
            tx.execute(f"INSERT INTO {META_TABLE} VALUES ('since', ?)", (tx.head(),))

    def _since(self, tx: Transaction) -> int:
        row = tx.execute(f"SELECT value FROM {META_TABLE} WHERE key = 'since'").fetchone()
        return row[0] if row else 0

    def handle(self, tx: Transaction, record: RecordedEvent) -> None:
        event = record.event
        if isinstance(event, ev.ContextSet):
            if event.kind in LATEST_KINDS and record.position > self._since(tx):
                self._context_set(tx, record, event)
        elif isinstance(event, ev.RemoteContextPushed):
            self._pushed(tx, record, event)
        elif isinstance(event, ev.ReprocessingHeld):
            self._held(tx, record, event)
        elif isinstance(event, ev.ReprocessingReleased):
            tx.execute(f"DELETE FROM {HELD_TABLE} WHERE observatory = ? AND new_context = ?",
                       (event.observatory, event.new_context))

    def _context_set(self, tx: Transaction, record: RecordedEvent,
                     event: ev.ContextSet) -> None:
        old, new = event.previous or "", event.context
        old_serial, new_serial = pmap_serial(old), pmap_serial(new)
        if not old:
            reason = "no previous latest context: nothing to compare with"
        elif old == new:
            reason = "latest set to the context it already was"
        elif old_serial is None or new_serial is None:
            reason = f"cannot order {old!r} and {new!r} by serial number"
        elif new_serial < old_serial:
            reason = f"regression: {new} is older than {old}; no reprocessing"
        else:
            self.service.enqueue(old, new, record.position)
            return
        log.info("reprocessing skipped for %s -> %s: %s", old, new, reason)
        tx.record(ev.ReprocessingSkipped(observatory=event.observatory, old_context=old,
                                         new_context=new, reason=reason),
                  meta=caused_by(record),
                  idempotency_key=f"repro-skipped:{record.position}")

    def _pushed(self, tx: Transaction, record: RecordedEvent,
                event: ev.RemoteContextPushed) -> None:
        tx.execute(f"INSERT INTO {PUSHED_TABLE} (observatory, pipeline, context) VALUES (?, ?, ?)"
                   " ON CONFLICT(observatory, pipeline) DO UPDATE SET context = excluded.context",
                   (event.observatory, event.pipeline, event.context))
        rows = tx.execute(f"SELECT new_context, pipeline, position FROM {HELD_TABLE} WHERE "
                          "observatory = ? AND new_context = ? AND pipeline = ?",
                          (event.observatory, event.context, event.pipeline)).fetchall()
        for new_context, pipeline, held_position in rows:
            self._release(tx, record, event.observatory, new_context, pipeline, event.context,
                          held_position)

    def _held(self, tx: Transaction, record: RecordedEvent,
              event: ev.ReprocessingHeld) -> None:
        row = tx.execute(f"SELECT context FROM {PUSHED_TABLE} WHERE observatory = ? AND "
                         "pipeline = ?", (event.observatory, event.pipeline)).fetchone()
        if row is not None and row[0] == event.new_context:  # the pipeline was quicker
            self._release(tx, record, event.observatory, event.new_context, event.pipeline,
                          row[0], record.position)
            return
        # a new hold of the same change replaces the old one whole (overdue_at reset)
        tx.execute(f"INSERT INTO {HELD_TABLE} (observatory, new_context, pipeline,"
                   " held_at, position) VALUES (?, ?, ?, ?, ?)"
                   " ON CONFLICT (observatory, new_context) DO UPDATE SET"
                   " pipeline = excluded.pipeline, held_at = excluded.held_at,"
                   " overdue_at = '', position = excluded.position",
                   (event.observatory, event.new_context, event.pipeline, record.recorded_at,
                    record.position))

    def _release(self, tx: Transaction, record: RecordedEvent, observatory: str,
                 new_context: str, pipeline: str, pushed: str, held_position: int) -> None:
        tx.record(ev.ReprocessingReleased(observatory=observatory, new_context=new_context,
                                          pipeline=pipeline, pushed_context=pushed),
                  meta=caused_by(record),
                  idempotency_key=f"repro-released:{observatory}:{new_context}:{held_position}")
        tx.execute(f"DELETE FROM {HELD_TABLE} WHERE observatory = ? AND new_context = ?",
                   (observatory, new_context))


class ReprocessingService(QueueWorker):
    """The worker that computes affected datasets, and the held-results check."""

    thread_name = "crds-events-reprocessing"
    stop_timeout = 300.0

    def __init__(self, settings: Settings, *, store: EventStore | None = None):
        super().__init__(log_target(settings), store=store)
        self.settings = settings
        self._lock = threading.Lock()  # one computation at a time

    # --- the queue ---------------------------------------------------------------------------

    def resume(self) -> None:
        for old, new, position in self.pending():  # killed mid-computation: resume
            self.enqueue(old, new, position)

    def enqueue(self, old: str, new: str, cause: int) -> None:
        self.put((old, new, cause))

    def drain(self) -> int:
        """Process everything queued in the calling thread (tests, the CLI); how many."""
        done = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return done
            if item is not STOP:
                self.process(*item)
                done += 1

    def handle(self, item: tuple[str, str, int]) -> None:
        self.process(*item)

    def describe(self, item: tuple[str, str, int]) -> str:
        return f"affected datasets {item[0]} -> {item[1]}"

    def pending(self) -> list[tuple[str, str, int]]:
        """Forward changes of latest not yet held (or skipped) for their pipeline."""
        wanted: dict[tuple[str, str], int] = {}
        types = [ev.ContextSet.type, ev.ReprocessingHeld.type, ev.ReprocessingSkipped.type]
        for record in self.store.iter_all(types=types):
            if record.type == ev.ContextSet.type:
                event = record.event
                if event.kind in LATEST_KINDS and event.previous:
                    old_serial, new_serial = pmap_serial(event.previous), pmap_serial(event.context)
                    if old_serial is not None and new_serial is not None and new_serial > old_serial:
                        wanted[(event.previous, event.context)] = record.position
            else:
                for key in [k for k in wanted if _settles(record, *k)]:
                    del wanted[key]
        since = self._handler_since()
        return [(old, new, position) for (old, new), position in wanted.items()
                if position > since]

    def _done(self, old: str, new: str, cause: int) -> bool:
        """True when ``old`` -> ``new`` was held (or skipped) after the change at ``cause``.
        (A result computed by hand, ``crds-events repro compute``, is not: it was never held,
        so the automatic run still holds and releases it.)"""
        stream = self.store.read_stream(ev.reprocessing_stream(self.settings.observatory))
        return any(r.position > cause and _settles(r, old, new) for r in stream)

    def _handler_since(self) -> int:
        try:
            row = self.store.execute(
                f"SELECT value FROM {META_TABLE} WHERE key = 'since'").fetchone()
        except Exception:  # noqa: BLE001 - the handler never ran: nothing is pending
            return 1 << 62
        return row[0] if row else 0

    # --- one computation ---------------------------------------------------------------------

    def process(self, old: str, new: str, cause: int) -> ev.Event | None:
        """Compute and store ``old`` -> ``new`` unless done before; the event appended."""
        from crds_events.reprocessing import results as repro_results

        with self._lock:
            store = self.store
            if self._done(old, new, cause):
                return None
            cause_record = store.get(cause)
            meta = caused_by(cause_record) if cause_record is not None else None
            try:
                result = repro_results.compute(self.settings, store, old, new)
            except Exception as exc:  # noqa: BLE001 - recorded, so the log says why
                log.exception("affected datasets %s -> %s failed", old, new)
                skipped = ev.ReprocessingSkipped(
                    observatory=self.settings.observatory, old_context=old, new_context=new,
                    reason=f"computation failed: {type(exc).__name__}: {exc}")
                store.record(skipped, meta=meta, idempotency_key=f"repro-failed:{cause}")
                return skipped
            repro_results.record_result(self.settings, store, result, cause=cause,
                                        hold_for=self.settings.release_pipeline, meta=meta)
            log.info("affected datasets %s -> %s: %d of %d in %.1f s", old, new, result.count,
                     result.candidates, result.seconds)
            return store.read_stream(ev.reprocessing_stream(self.settings.observatory))[-1].event

    # --- the held check ----------------------------------------------------------------------

    def check_held(self, now: datetime.datetime | None = None) -> list[ev.Event]:
        """Held results older than ``settings.repro_hold_timeout``: `ReprocessingOverdue`
        (once each; the composer e-mails devs). What the scheduler calls."""
        now = now or datetime.datetime.now(datetime.UTC)
        timeout = self.settings.repro_hold_timeout
        appended: list[ev.Event] = []
        with self.store.transaction() as tx:
            for row in held(tx):
                if row["overdue_at"]:
                    continue
                waited = (now - _parse_time(row["held_at"])).total_seconds()
                if waited < timeout:
                    continue
                event = ev.ReprocessingOverdue(
                    observatory=row["observatory"], new_context=row["new_context"],
                    pipeline=row["pipeline"], held_since=row["held_at"],
                    waited_seconds=round(waited, 1))
                tx.record(event, idempotency_key=f"repro-overdue:{row['observatory']}:"
                                                 f"{row['new_context']}:{row['position']}")
                tx.execute(f"UPDATE {HELD_TABLE} SET overdue_at = ? WHERE observatory = ? AND "
                           "new_context = ?", (_iso(now), row["observatory"], row["new_context"]))
                appended.append(event)
        return appended


def _settles(record: RecordedEvent, old: str, new: str) -> bool:
    """Whether ``record`` ends the automatic handling of ``old`` -> ``new``."""
    data = record.data
    if record.type == ev.ReprocessingHeld.type:
        return data.get("new_context") == new
    if record.type == ev.ReprocessingSkipped.type:
        return data.get("new_context") == new and data.get("old_context") == old
    return False

