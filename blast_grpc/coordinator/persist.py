"""The task database: task records and event logs survive a coordinator restart.

Two tables: ``task_records`` (one ``pb.Task`` per task, rewritten as it changes, with its
``TaskSpec``, up to ``max_task_chars`` of text, in a column of its own written once) and
``task_events`` (each task's log, one row per event, append-only). Every SQLite call
runs on one writer thread, never on the event loop::

    event loop                                  writer thread (the only connection)
    emit ─▶ sink: queue the event, mark the
            record dirty ─▶ call_soon(flush) ─▶ one transaction: the queued events,
                                                 a fresh snapshot of each dirty record
            publish(seq) to watchers ◀──────── committed

While a batch is being written the next one collects, so a burst of events costs one
transaction. Watchers see an event only after its batch committed (``TaskRecord.sink``),
so a coordinator killed with SIGKILL never forgets an event a client has seen, and
``WatchTask(from_seq = last + 1)`` continues the same log after a restart.

At start-up (``load``) finished task trees past the retention limits are deleted first
(``settings.task_retention_s``, ``settings.max_task_records``), then the records that are
left are loaded, with the logs of unfinished tasks only: a finished task's log is read
(on the writer thread) when it is first watched (``TaskRecord.lazy``). Tasks that had not ended when the coordinator went away (``recover``):

* a top-level task that never started is **requeued**: its log gets a ``waiting`` event
  saying so, then ``scheduled``, and it runs as if just submitted (nothing submitted is
  lost; a watcher continues with ``from_seq = last + 1``);
* anything else (it had started, so its browser state is gone; or it is a subtask or
  race copy whose parent had started) ends as failed, ``RESTARTED``, appended to its log.

A writer failure (disk full, ...) is a crash of the coordinator (``TaskSet.crashed``):
events could no longer be kept, so the process exits non-zero.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from .._proto.blast.coordinator.v1 import state_pb2 as spb
from .._proto.blast.v1 import blast_pb2 as pb
from ..supervise import TaskSet
from .tasks import TaskRecord, TaskStore

log = logging.getLogger("blast_grpc.persist")

RESTARTED = "coordinator restarted while the task was running"
REQUEUED = "the coordinator restarted before the task started; it is queued again"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS task_records (task_id TEXT PRIMARY KEY, ord INTEGER NOT NULL, root_id TEXT NOT NULL,
                                         ended REAL, record BLOB NOT NULL, spec BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS task_records_root ON task_records (root_id);
CREATE TABLE IF NOT EXISTS task_events (task_id TEXT NOT NULL, seq INTEGER NOT NULL, event BLOB NOT NULL,
                                        PRIMARY KEY (task_id, seq)) WITHOUT ROWID;
"""

SCHEMA_VERSION = 2  # PRAGMA user_version; 0 is a new file or the one-row-per-task format (migrated)


class TaskDatabaseError(RuntimeError):
    """The task database file cannot be used by this engine (the message names the file)."""


_Record = tuple[str, int, str, float | None, bytes, bytes]
# The spec never changes: written with the first row, left alone by every later update.
_UPSERT = """INSERT INTO task_records VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (task_id) DO UPDATE
             SET ord = excluded.ord, ended = excluded.ended, record = excluded.record"""
_Event = tuple[str, int, bytes]


def _root(rec: TaskRecord) -> TaskRecord:
    while rec.parent is not None:
        rec = rec.parent
    return rec


@dataclass
class Loaded:
    """What ``load`` found: every kept task, and how many old ones it deleted."""

    records: list[tuple[pb.Task, list[pb.TaskEvent] | None]]  # None: a finished task's log, read later
    expired: int


class TaskDatabase:
    """The coordinator's task database; the loop side is not thread-safe (one event loop)."""

    def __init__(self, path: str | Path, tasks: TaskSet | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tasks = tasks if tasks is not None else TaskSet()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="task-db")
        self._db: sqlite3.Connection | None = None
        try:
            self._pool.submit(self._open).result()
        except BaseException:
            self._pool.shutdown(wait=True)
            raise
        self._dirty: dict[str, TaskRecord] = {}
        self._known: set[str] = set()  # tasks that have a row (their spec is written)
        self._events: list[tuple[TaskRecord, pb.TaskEvent]] = []
        self._deletes: list[str] = []
        self._scheduled = False
        self._inflight: asyncio.Future[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._shut = False

    # --- writer thread ---------------------------------------------------------
    def _open(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives the process dying (not a power cut), without an fsync each.
        db.execute("PRAGMA synchronous=NORMAL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            db.close()
            raise TaskDatabaseError(f"{self.path} (settings.task_db_path) has schema version {version}; this engine "
                                    f"reads version {SCHEMA_VERSION}: move the file away or use a matching engine")
        db.executescript(_SCHEMA)
        self._db = db
        self._migrate()
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _migrate(self) -> None:
        """Move the tasks of the earlier one-row-per-task format (``tasks``) into the two tables."""
        assert self._db is not None
        db = self._db
        if db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='tasks'").fetchone() is None:
            return
        db.execute("BEGIN")
        for task_id, order, blob in db.execute("SELECT task_id, ord, archive FROM tasks").fetchall():
            archive = spb.TaskArchive.FromString(blob)
            t = archive.task
            ended = t.finished_at.ToNanoseconds() / 1e9 if t.HasField("finished_at") else None
            spec = t.spec.SerializeToString()
            t.ClearField("spec")
            t.last_seq = len(archive.events)
            db.execute(_UPSERT, (task_id, order, t.parent_task_id or task_id, ended, t.SerializeToString(), spec))
            db.executemany("INSERT OR REPLACE INTO task_events VALUES (?, ?, ?)",
                           [(task_id, e.seq, e.SerializeToString()) for e in archive.events])
        db.execute("DROP TABLE tasks")
        db.execute("COMMIT")
        log.info("moved the task database %s to the append-only format", self.path)

    def _write(self, records: list[_Record], events: list[_Event], deletes: list[str]) -> None:
        assert self._db is not None
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany("INSERT OR IGNORE INTO task_events VALUES (?, ?, ?)", events)
            db.executemany(_UPSERT, records)
            db.executemany("DELETE FROM task_events WHERE task_id = ?", [(t,) for t in deletes])
            db.executemany("DELETE FROM task_records WHERE task_id = ?", [(t,) for t in deletes])
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _load(self, retention_s: float, max_records: int) -> Loaded:
        assert self._db is not None
        db = self._db
        expired = self._expire(time.time() - retention_s, max_records)
        records: dict[str, tuple[pb.Task, list[pb.TaskEvent] | None]] = {}
        for blob, spec, ended in db.execute("SELECT record, spec, ended FROM task_records ORDER BY ord"):
            t = pb.Task.FromString(blob)
            t.spec.ParseFromString(spec)
            records[t.task_id] = (t, [] if ended is None else None)
        unfinished = """SELECT task_id, event FROM task_events WHERE task_id IN
                        (SELECT task_id FROM task_records WHERE ended IS NULL) ORDER BY task_id, seq"""
        for task_id, blob in db.execute(unfinished):
            log_ = records[task_id][1] if task_id in records else None
            if log_ is not None:
                log_.append(pb.TaskEvent.FromString(blob))
        return Loaded(list(records.values()), expired)

    def _events_of(self, task_id: str) -> list[pb.TaskEvent]:
        assert self._db is not None
        rows = self._db.execute("SELECT event FROM task_events WHERE task_id = ? ORDER BY seq", (task_id,))
        return [pb.TaskEvent.FromString(blob) for (blob,) in rows]

    def _expire(self, cutoff: float, max_records: int) -> int:
        """Delete finished trees that ended before ``cutoff``, then the oldest until ``max_records`` remain."""
        assert self._db is not None
        db = self._db
        # A tree is finished when none of its records lacks an end time.
        finished = """SELECT root_id, MAX(ended) AS ended, COUNT(*) AS n, MIN(ord) AS ord FROM task_records
                      GROUP BY root_id HAVING COUNT(ended) = COUNT(*) ORDER BY ord"""
        total = db.execute("SELECT COUNT(*) FROM task_records").fetchone()[0]
        doomed: list[str] = []
        for root_id, ended, n, _ in db.execute(finished).fetchall():
            if ended < cutoff or total > max_records:
                doomed.append(root_id)
                total -= n
        if doomed:
            db.execute("BEGIN")
            for root_id in doomed:
                ids = [(r,) for (r,) in db.execute("SELECT task_id FROM task_records WHERE root_id = ?", (root_id,))]
                db.executemany("DELETE FROM task_events WHERE task_id = ?", ids)
                db.execute("DELETE FROM task_records WHERE root_id = ?", (root_id,))
            db.execute("COMMIT")
        return len(doomed)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # --- event loop ------------------------------------------------------------
    async def load(self, store: TaskStore, retention_s: float, max_records: int) -> list[TaskRecord]:
        """Restore the kept tasks into ``store`` and start tracking them; returns those that had not ended."""
        loaded = await asyncio.wrap_future(self._pool.submit(self._load, retention_s, max_records))
        if loaded.expired:
            log.info("deleted %d finished task tree(s) past the retention limits", loaded.expired)
        recs = [(store.restore(task, events if events is not None else self._reader(task.task_id)),
                 task.parent_task_id) for task, events in loaded.records]
        for rec, parent_id in recs:  # link the tree once every record exists
            parent = store.get(parent_id) if parent_id else None
            if parent is not None:
                rec.parent = parent
                parent.children.append(rec)
        for rec, _ in recs:  # on disk as they are: written again only when they change
            self._known.add(rec.task_id)
            rec.sink = self._on_event
        return [rec for rec, _ in recs if not rec.done]

    def _reader(self, task_id: str) -> Callable[[], Awaitable[list[pb.TaskEvent]]]:
        """How a lazily restored record reads its log: on the writer thread, behind pending writes."""

        def read() -> Awaitable[list[pb.TaskEvent]]:
            return asyncio.wrap_future(self._pool.submit(self._events_of, task_id))

        return read

    def recover(self, store: TaskStore, interrupted: list[TaskRecord],
                requeue: Callable[[TaskRecord], None]) -> tuple[int, int]:
        """Requeue or fail the tasks that had not ended (see the module docstring); returns (requeued, failed)."""
        requeued = failed = 0
        # Children were created after their parents: ending the newest first lets each
        # failure reach the logs of its ancestors before they end too.
        for rec in sorted(interrupted, key=lambda r: r.order, reverse=True):
            if rec.parent is None and not rec.children and rec.copies <= 1 and rec.started_at is None:
                continue
            store.finish(rec, pb.TASK_STATE_FAILED, error=RESTARTED)
            failed += 1
        for rec in sorted(interrupted, key=lambda r: r.order):
            if not rec.done:
                rec.emit(waiting=pb.TaskWaiting(reason=REQUEUED))
                requeue(rec)
                requeued += 1
        return requeued, failed

    def track(self, rec: TaskRecord) -> None:
        """Write ``rec`` down now and with every event it gets from now on."""
        rec.sink = self._on_event
        self._dirty[rec.task_id] = rec
        self._schedule()

    def forget(self, recs: list[TaskRecord]) -> None:
        """Delete these records and their logs (retention)."""
        for rec in recs:
            rec.sink = None
            self._dirty.pop(rec.task_id, None)
            self._known.discard(rec.task_id)
            self._deletes.append(rec.task_id)
        self._schedule()

    def _on_event(self, rec: TaskRecord, ev: pb.TaskEvent) -> None:
        if self._shut:  # after close (nothing should emit then): show it, it cannot be kept
            log.warning("task %s emitted an event after the task database was closed", rec.task_id)
            rec.publish(ev.seq)
            return
        self._events.append((rec, ev))
        self._dirty[rec.task_id] = rec
        self._schedule()

    def _schedule(self) -> None:
        if self._shut:
            return
        if not self._scheduled and self._inflight is None:
            self._scheduled = True
            self._idle.clear()
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self._inflight is not None:
            return  # _written flushes again
        if not (self._dirty or self._events or self._deletes):
            self._idle.set()
            return
        records: list[_Record] = []
        for rec in self._dirty.values():
            ended = rec.finished_at.ToNanoseconds() / 1e9 if rec.finished_at is not None else None
            task = rec.to_proto()
            task.ClearField("spec")
            # Every event of the log is committed already or goes in this batch: the stored count is exact.
            task.last_seq = rec.last_seq
            # The spec bytes go along only for the first write; the update leaves the column alone.
            spec = b"" if rec.task_id in self._known else rec.spec.SerializeToString()
            self._known.add(rec.task_id)
            records.append((rec.task_id, rec.order, _root(rec).task_id, ended, task.SerializeToString(), spec))
        events = [(rec.task_id, ev.seq, ev.SerializeToString()) for rec, ev in self._events]
        published = [(rec, ev.seq) for rec, ev in self._events]
        deletes = self._deletes
        self._dirty, self._events, self._deletes = {}, [], []
        fut = asyncio.wrap_future(self._pool.submit(self._write, records, events, deletes))
        self._inflight = fut
        fut.add_done_callback(lambda f: self._written(f, published))

    def _written(self, fut: asyncio.Future[None], published: list[tuple[TaskRecord, int]]) -> None:
        self._inflight = None
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            self._idle.set()  # nothing more will be written; let close() finish
            self.tasks.crashed(f"the task database writer ({self.path})", exc)
            return
        for rec, seq in published:
            rec.publish(seq)
        self._schedule()

    async def close(self) -> None:
        """Write what is pending, then close the database; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._schedule()
        await self._idle.wait()
        self._shut = True
        await asyncio.wrap_future(self._pool.submit(self._close))
        self._pool.shutdown(wait=True)
