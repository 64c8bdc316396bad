"""The task database on a real SQLite file: append-only logs, written off the event loop,
events shown only once written, recovery after a restart, retention and the old format."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import AsyncIterator

import pytest

from blast_grpc._proto.blast.coordinator.v1 import state_pb2 as spb
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.coordinator.persist import REQUEUED, RESTARTED, TaskDatabase, TaskDatabaseError
from blast_grpc.coordinator.tasks import TaskRecord, TaskStore
from blast_grpc.supervise import TaskSet

pytestmark = pytest.mark.asyncio

YEAR = 365 * 24 * 3600.0


def _spec(text: str) -> pb.TaskSpec:
    return pb.TaskSpec(description=text)


async def _open(path: Path, retention_s: float = YEAR, max_records: int = 1000
                ) -> tuple[TaskDatabase, TaskStore, list[TaskRecord]]:
    db = TaskDatabase(path, TaskSet())
    store = TaskStore()
    interrupted = await db.load(store, retention_s, max_records)
    store.on_new.append(db.track)
    return db, store, interrupted


async def _drained(rec: TaskRecord) -> list[pb.TaskEvent]:
    return [ev async for ev in rec.watch()]


async def test_events_reach_watchers_only_once_written_by_the_writer_thread(tmp_path: Path) -> None:
    db, store, _ = await _open(tmp_path / "t.sqlite")
    threads: set[str] = set()
    write = db._write

    def spy(*args: object) -> None:
        threads.add(threading.current_thread().name)
        write(*args)  # type: ignore[arg-type]

    db._write = spy  # type: ignore[method-assign]
    rec = store.new(_spec("a"))
    rec.emit(scheduled=pb.TaskScheduled())
    assert rec.visible == 0  # not written yet: a watcher would not see it
    seen = await asyncio.wait_for(anext(rec.watch()), 30)
    assert seen.seq == 1 and rec.visible == 1
    assert threads and threading.current_thread().name not in threads
    assert all(name.startswith("task-db") for name in threads)
    await db.close()


async def test_a_restart_appends_to_the_logs_and_requeues_what_never_started(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    db, store, _ = await _open(path)
    running = store.new(_spec("running"))
    running.emit(scheduled=pb.TaskScheduled())
    running.started_at = running.created_at
    running.emit(started=pb.TaskStarted(worker_id="w1", attempt=1))
    queued = store.new(_spec("queued"))
    queued.emit(scheduled=pb.TaskScheduled(queue_position=1))
    done = store.new(_spec("done"))
    done.emit(scheduled=pb.TaskScheduled())
    store.finish(done, pb.TASK_STATE_COMPLETED, result="ok", success=True)
    assert len(await _drained(done)) == 2
    await db.close()  # (a crash loses only what no watcher was shown)

    db, store, interrupted = await _open(path)
    assert {r.task_id for r in interrupted} == {running.task_id, queued.task_id}
    requeued: list[TaskRecord] = []
    assert db.recover(store, interrupted, requeued.append) == (1, 1)
    assert [r.task_id for r in requeued] == [queued.task_id]
    again = store.get(running.task_id)
    assert again is not None
    log = await _drained(again)
    assert [e.seq for e in log] == [1, 2, 3] and log[2].failed.error == RESTARTED
    q = store.get(queued.task_id)
    assert q is not None and not q.done
    q_log = [ev async for ev in _first(q, 2)]
    assert q_log[1].seq == 2 and q_log[1].waiting.reason == REQUEUED
    kept = store.get(done.task_id)
    # A finished task's log is not loaded at start, only when it is watched.
    assert kept is not None and kept.result == "ok" and kept.lazy is not None and not kept.events
    assert kept.to_proto().last_seq == 2
    assert [e.seq for e in await _drained(kept)] == [1, 2] and kept.lazy is None
    await db.close()

    # What was appended is on disk: a third start sees the same logs.
    db, store, interrupted = await _open(path)
    assert [r.task_id for r in interrupted] == [queued.task_id]
    again = store.get(running.task_id)
    assert again is not None and [e.seq for e in await _drained(again)] == [1, 2, 3]
    await db.close()


async def _first(rec: TaskRecord, n: int) -> AsyncIterator[pb.TaskEvent]:
    async for ev in rec.watch():
        yield ev
        n -= 1
        if n == 0:
            return


async def test_retention_forgets_finished_trees_in_memory_and_at_load(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    db, store, _ = await _open(path)
    recs = []
    for i in range(4):
        root = store.new(_spec(f"root {i}"))
        child = store.new(_spec(f"child {i}"), root)
        store.finish(child, pb.TASK_STATE_COMPLETED, result="c", success=True)
        store.finish(root, pb.TASK_STATE_COMPLETED, result="r", success=True)
        recs.append(root)
    open_root = store.new(_spec("still queued"))
    await _drained(recs[-1])
    # In memory: at most 6 records: the two oldest finished trees go, the queued task stays.
    gone = store.evict(time.time(), YEAR, 6)
    assert {r.task_id for r in gone if r.parent is None} == {recs[0].task_id, recs[1].task_id}
    assert store.get(open_root.task_id) is not None and store.get(recs[2].task_id) is not None
    db.forget(gone)
    await db.close()
    db, store, _ = await _open(path)
    assert store.get(recs[0].task_id) is None and store.get(recs[2].task_id) is not None
    await db.close()
    # At load: past the retention age every finished tree is deleted before anything is read.
    await asyncio.sleep(0.01)
    db, store, interrupted = await _open(path, retention_s=0.001)
    assert [r.task_id for r in store.all()] == [open_root.task_id] == [r.task_id for r in interrupted]
    await db.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM task_events WHERE task_id != ?",
                            (open_root.task_id,)).fetchone() == (0,)


async def test_the_old_one_row_per_task_format_is_moved_over(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    events = [pb.TaskEvent(task_id="task_old", seq=1, scheduled=pb.TaskScheduled()),
              pb.TaskEvent(task_id="task_old", seq=2, completed=pb.TaskCompleted(result="kept", success=True))]
    task = pb.Task(task_id="task_old", spec=_spec("old"), state=pb.TASK_STATE_COMPLETED, result="kept")
    task.finished_at.GetCurrentTime()
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE tasks (task_id TEXT PRIMARY KEY, ord INTEGER NOT NULL, archive BLOB NOT NULL)")
        conn.execute("INSERT INTO tasks VALUES (?, ?, ?)",
                     ("task_old", 0, spb.TaskArchive(task=task, events=events).SerializeToString()))
    db, store, interrupted = await _open(path)
    rec = store.get("task_old")
    assert rec is not None and not interrupted and rec.result == "kept"
    assert [e.SerializeToString() for e in await _drained(rec)] == [e.SerializeToString() for e in events]
    await db.close()


async def test_a_database_of_another_schema_version_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 7")
    with pytest.raises(TaskDatabaseError, match=r"future\.sqlite .*task_db_path.* schema version 7"):
        TaskDatabase(path, TaskSet())


async def test_a_stopped_watch_still_gets_the_end_of_a_task_that_ended(tmp_path: Path) -> None:
    # The engine stops its watches while the terminal event of a task is still being written:
    # the watch of that (ended) task waits for it; the watch of an unfinished task ends.
    db, store, _ = await _open(tmp_path / "t.sqlite")
    ended, waiting = store.new(_spec("ended")), store.new(_spec("waiting"))
    for rec in (ended, waiting):
        rec.emit(scheduled=pb.TaskScheduled())
    stopping = False
    seen: dict[str, list[str]] = {}

    async def follow(rec: TaskRecord) -> None:
        seen[rec.task_id] = [ev.WhichOneof("kind") or "" async for ev in rec.watch(stop=lambda: stopping)]

    watches = [asyncio.ensure_future(follow(r)) for r in (ended, waiting)]
    await asyncio.sleep(0)
    store.finish(ended, pb.TASK_STATE_COMPLETED, result="ok", success=True)  # not written yet
    stopping = True
    for rec in (ended, waiting):
        rec.interrupt()
    await asyncio.wait_for(asyncio.gather(*watches), 30)
    assert seen[ended.task_id] == ["scheduled", "completed"]
    assert not waiting.done and seen[waiting.task_id] in ([], ["scheduled"])
    await db.close()
