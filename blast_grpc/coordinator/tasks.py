"""Task records and their event logs: the coordinator's one copy of task state.

Each ``TaskRecord`` keeps every event it emitted, numbered from 1. Watchers read
the log from any ``seq`` and then wait for more, so a client that reconnects with
``from_seq = last + 1`` gets each remaining event exactly once. The log is closed
when the task reaches a terminal state.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from google.protobuf.timestamp_pb2 import Timestamp

from .._proto.blast.v1 import blast_pb2 as pb

TERMINAL = {pb.TASK_STATE_COMPLETED, pb.TASK_STATE_FAILED, pb.TASK_STATE_CANCELLED}


def now_ts() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


@dataclass
class TaskRecord:
    task_id: str
    spec: pb.TaskSpec
    parent_task_id: str = ""
    depth: int = 0
    state: int = pb.TASK_STATE_QUEUED
    result: str = ""
    success: bool = False
    error: str = ""
    worker_id: str = ""
    attempts: int = 0
    steps: int = 0
    created_at: Timestamp = field(default_factory=now_ts)
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    usage: dict[str, pb.Usage] = field(default_factory=dict)
    events: list[pb.TaskEvent] = field(default_factory=list)
    order: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    def emit(self, **kind: Any) -> pb.TaskEvent:
        """Append one event (``scheduled=pb.TaskScheduled(...)`` etc.) and wake the watchers."""
        ev = pb.TaskEvent(
            task_id=self.task_id, parent_task_id=self.parent_task_id, seq=len(self.events) + 1, time=now_ts(), **kind
        )
        self.events.append(ev)
        self._changed.set()
        self._changed = asyncio.Event()
        return ev

    def add_usage(self, u: pb.Usage) -> None:
        mine = self.usage.setdefault(u.model, pb.Usage(model=u.model))
        mine.prompt_tokens += u.prompt_tokens
        mine.completion_tokens += u.completion_tokens
        mine.requests += u.requests
        mine.cost_usd += u.cost_usd

    def finish(self, state: int, *, result: str = "", success: bool = False, error: str = "") -> bool:
        """Move to a terminal state once; emits the matching event. False if already finished."""
        if self.done:
            return False
        self.state, self.result, self.success, self.error = state, result, success, error
        self.finished_at = now_ts()
        if state == pb.TASK_STATE_COMPLETED:
            self.emit(completed=pb.TaskCompleted(result=result, success=success))
        elif state == pb.TASK_STATE_FAILED:
            self.emit(failed=pb.TaskFailed(error=error))
        else:
            self.emit(cancelled=pb.TaskCancelled(reason=error))
        return True

    async def watch(self, from_seq: int = 1) -> AsyncIterator[pb.TaskEvent]:
        """Every event from ``from_seq`` on, live, until the task has ended."""
        i = max(from_seq, 1) - 1
        while True:
            changed = self._changed
            while i < len(self.events):
                yield self.events[i]
                i += 1
            if self.done:
                return
            await changed.wait()

    def to_proto(self, queue_position: int = 0) -> pb.Task:
        t = pb.Task(
            task_id=self.task_id,
            parent_task_id=self.parent_task_id,
            spec=self.spec,
            state=self.state,  # type: ignore[arg-type]
            result=self.result,
            success=self.success,
            error=self.error,
            created_at=self.created_at,
            worker_id=self.worker_id,
            queue_position=queue_position,
            attempts=self.attempts,
            depth=self.depth,
            usage=list(self.usage.values()),
            last_seq=len(self.events),
            steps=self.steps,
        )
        if self.started_at is not None:
            t.started_at.CopyFrom(self.started_at)
        if self.finished_at is not None:
            t.finished_at.CopyFrom(self.finished_at)
        return t


class TaskStore:
    """All task records, by id, in submission order."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskRecord] = {}
        self._order = itertools.count()

    def new(self, spec: pb.TaskSpec, parent: TaskRecord | None = None) -> TaskRecord:
        rec = TaskRecord(
            task_id="task_" + uuid.uuid4().hex[:20],
            spec=spec,
            parent_task_id=parent.task_id if parent else "",
            depth=parent.depth + 1 if parent else 0,
            order=next(self._order),
        )
        self._tasks[rec.task_id] = rec
        return rec

    def get(self, task_id: str) -> TaskRecord | None:
        return self._tasks.get(task_id)

    def lineage(self, rec: TaskRecord, limit: int = 10) -> list[TaskRecord]:
        """The earlier tasks of ``rec``'s conversation (its previous_task_id chain), oldest first."""
        chain: list[TaskRecord] = []
        prev = self.get(rec.spec.previous_task_id)
        while prev is not None and len(chain) < limit and prev not in chain:
            chain.append(prev)
            prev = self.get(prev.spec.previous_task_id)
        return chain[::-1]

    def all(self) -> list[TaskRecord]:
        return list(self._tasks.values())

    def counts(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for r in self._tasks.values():
            out[r.state] = out.get(r.state, 0) + 1
        return out

