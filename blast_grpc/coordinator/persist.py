"""The task database: task records and event logs survive a coordinator restart.

A task is written when it is accepted and again when it ends (its ``Task`` record
and its whole event log, as a ``TaskArchive``). At start-up every stored task is
loaded back, so ``GetTask``, ``WatchTask`` and ``ListTasks`` answer for tasks of an
earlier run; a task that was still queued or running when the coordinator went
away is ended as failed, "coordinator restarted", and written back.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .._proto.blast.coordinator.v1 import state_pb2 as spb
from .._proto.blast.v1 import blast_pb2 as pb
from .tasks import TaskRecord, TaskStore

RESTARTED = "coordinator restarted while the task was queued or running"


class TaskDatabase:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS tasks (task_id TEXT PRIMARY KEY, ord INTEGER NOT NULL,"
                         " archive BLOB NOT NULL)")

    def save(self, rec: TaskRecord) -> None:
        archive = spb.TaskArchive(task=rec.to_proto(), events=rec.events)
        self._db.execute("INSERT OR REPLACE INTO tasks VALUES (?, ?, ?)",
                         (rec.task_id, rec.order, archive.SerializeToString()))

    def load_into(self, store: TaskStore) -> int:
        """Restore every stored task into ``store``; returns how many were ended as restarted."""
        rows = self._db.execute("SELECT archive FROM tasks ORDER BY ord").fetchall()
        loaded: list[tuple[TaskRecord, str]] = []
        for (blob,) in rows:
            archive = spb.TaskArchive.FromString(blob)
            loaded.append((store.restore(archive.task, list(archive.events)), archive.task.parent_task_id))
        for rec, parent_id in loaded:  # link the tree once every record exists
            parent = store.get(parent_id) if parent_id else None
            if parent is not None:
                rec.parent = parent
                parent.children.append(rec)
        interrupted = [rec for rec, _ in loaded if not rec.done]
        for rec in interrupted:
            rec.finish(pb.TASK_STATE_FAILED, error=RESTARTED)
            self.save(rec)
        return len(interrupted)

    def close(self) -> None:
        self._db.close()
