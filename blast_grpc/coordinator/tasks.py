"""Task records and their event logs: the coordinator's one copy of task state.

Each ``TaskRecord`` keeps every event it emitted, numbered from 1. Watchers read
the log from any ``seq`` and then wait for more, so a client that reconnects with
``from_seq = last + 1`` gets each remaining event exactly once. The log is closed
when the task reaches a terminal state.

Tasks form a tree (subtasks, racing copies). An event of a subtask is also
appended to the log of every ancestor that has not ended, renumbered in that log
but keeping its own ``task_id`` and ``parent_task_id``, so watching the root
shows the whole tree as it happens::

    root log:  1 scheduled(root) 2 started(root) 3 subtask_launched 4 scheduled(child) ...

With a task database (``persist.py``) a record has a ``sink``: each event is handed
to it and reaches watchers only once it is written down (``publish``). So a client
never sees an event a coordinator killed with SIGKILL could forget, and after a
restart ``from_seq = last + 1`` continues the same log::

    emit ─▶ events[] ─▶ sink (database writer thread) ─▶ publish(seq) ─▶ watchers

A finished task restored from the database has its log read only when someone first
watches it (``lazy``): a restart loads the records, not the history.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable

from google.protobuf.timestamp_pb2 import Timestamp

from .._proto.blast.v1 import blast_pb2 as pb

TERMINAL = {pb.TASK_STATE_COMPLETED, pb.TASK_STATE_FAILED, pb.TASK_STATE_CANCELLED}


def add_usage(book: dict[str, pb.Usage], u: pb.Usage) -> None:
    """Add one usage entry to a per-model book."""
    t = book.setdefault(u.model, pb.Usage(model=u.model))
    t.prompt_tokens += u.prompt_tokens
    t.completion_tokens += u.completion_tokens
    t.requests += u.requests
    t.cost_usd += u.cost_usd


def sum_usage(groups: Iterable[Iterable[pb.Usage]]) -> list[pb.Usage]:
    """Add up usage entries per model."""
    book: dict[str, pb.Usage] = {}
    for group in groups:
        for u in group:
            add_usage(book, u)
    return list(book.values())


def now_ts() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


@dataclass(eq=False)
class TaskRecord:
    task_id: str
    spec: pb.TaskSpec
    parent: TaskRecord | None = None
    depth: int = 0
    copy: int = 0
    copies: int = 0
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
    children: list[TaskRecord] = field(default_factory=list, repr=False)
    winner_task_id: str = ""
    # A follow-up runs best where the previous task's browser context is kept.
    prefer_worker: str = ""
    # Caching: the lineage key, a plan to replay, the run's recording, and what was reused.
    cache_key: str = ""
    replay_plan: str = ""
    recording: str = ""
    cached: bool = False
    replayed_steps: int = 0
    # Answers a person gave the task (RespondToTask): a run that depends on them is not cached.
    human_answers: int = 0
    # Called once, synchronously, right after the task reaches a terminal state.
    on_done: list[Callable[[TaskRecord], None]] = field(default_factory=list, repr=False)
    # Where each appended event goes to be written down (the task database), if anywhere;
    # watchers see events up to ``visible`` (all of them when there is no sink).
    sink: Callable[[TaskRecord, pb.TaskEvent], None] | None = field(default=None, repr=False)
    visible: int = 0
    # A finished task's log still on disk (``visible`` events): read by the first watcher.
    lazy: Callable[[], Awaitable[list[pb.TaskEvent]]] | None = field(default=None, repr=False)
    _loading: Awaitable[list[pb.TaskEvent]] | None = field(default=None, repr=False)
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    @property
    def last_seq(self) -> int:
        """The number of events in the log (read or not)."""
        return self.visible if self.lazy is not None else len(self.events)

    @property
    def parent_task_id(self) -> str:
        return self.parent.task_id if self.parent is not None else ""

    @property
    def is_race(self) -> bool:
        """A first-of-N task: its copies do the work; it only collects the winner."""
        return self.copies > 1 and self.copy == 0

    def _append(self, ev: pb.TaskEvent) -> None:
        self.events.append(ev)
        if self.sink is not None:
            self.sink(self, ev)
        else:
            self.visible = len(self.events)
        self._wake()

    def publish(self, seq: int) -> None:
        """Events up to ``seq`` are written down: watchers may see them."""
        if seq > self.visible:
            self.visible = min(seq, len(self.events))
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def emit(self, **kind: Any) -> pb.TaskEvent:
        """Append one event (``scheduled=pb.TaskScheduled(...)`` etc.) and wake the watchers."""
        ev = pb.TaskEvent(
            task_id=self.task_id, parent_task_id=self.parent_task_id, seq=len(self.events) + 1, time=now_ts(), **kind
        )
        self._append(ev)
        ancestor = self.parent
        while ancestor is not None:
            if not ancestor.done:
                copy = pb.TaskEvent()
                copy.CopyFrom(ev)
                copy.seq = len(ancestor.events) + 1
                ancestor._append(copy)
            ancestor = ancestor.parent
        return ev

    def add_usage(self, u: pb.Usage) -> None:
        add_usage(self.usage, u)

    def wait_for_human(self, question: str, kind: str, url: str = "") -> None:
        """RUNNING -> WAITING_FOR_HUMAN (ask_human or a pause; ``human.py`` owns the wait)."""
        self.state = pb.TASK_STATE_WAITING_FOR_HUMAN
        self.emit(input_required=pb.InputRequired(question=question, kind=kind, url=url))

    def human_answered(self, answer: str) -> None:
        """WAITING_FOR_HUMAN -> RUNNING: a person answered (RespondToTask)."""
        self.state = pb.TASK_STATE_RUNNING
        self.human_answers += 1
        self.emit(human_responded=pb.HumanResponded(answer=answer))

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
        for fn in self.on_done:
            fn(self)
        return True

    def tree(self) -> list[TaskRecord]:
        """This task and all its descendants."""
        out, todo = [], [self]
        while todo:
            rec = todo.pop()
            out.append(rec)
            todo.extend(rec.children)
        return out

    async def watch(self, from_seq: int = 1, stop: Callable[[], bool] = lambda: False
                    ) -> AsyncIterator[pb.TaskEvent]:
        """Every event from ``from_seq`` on, live, until the task has ended, or until ``stop()``
        is true when the watcher is woken (``interrupt``) with the task still unfinished."""
        i = max(from_seq, 1) - 1
        if self.lazy is not None and i < self.visible:
            await self._read_log()
        while True:
            changed = self._changed
            while i < self.visible:
                yield self.events[i]
                i += 1
            if self.done and i >= len(self.events):
                return
            if stop() and not self.done:  # an ended task's last events are on their way: wait for them
                return
            await changed.wait()

    async def _read_log(self) -> None:
        """Read a lazily restored log, once for all watchers (a cancelled watcher does not stop it)."""
        assert self.lazy is not None
        if self._loading is None:
            self._loading = asyncio.ensure_future(self.lazy())
        events = await asyncio.shield(self._loading)
        if self.lazy is not None:
            self.events, self.lazy, self._loading = events, None, None

    def interrupt(self) -> None:
        """Wake the watchers so that they check their ``stop`` condition."""
        self._wake()

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
            last_seq=self.visible,
            steps=self.steps,
            tree_usage=sum_usage(r.usage.values() for r in self.tree()),
            subtask_ids=[c.task_id for c in self.children],
            winner_task_id=self.winner_task_id,
            cached=self.cached,
            replayed_steps=self.replayed_steps,
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
        # Called for every new record (the task database writes it down).
        self.on_new: list[Callable[[TaskRecord], None]] = []

    def new(self, spec: pb.TaskSpec, parent: TaskRecord | None = None, *, copy: int = 0, copies: int = 0) -> TaskRecord:
        """A new record. A subtask is one level deeper than its parent; a racing copy
        (``copy`` > 0) is the same task, so it keeps its parent's depth."""
        depth = 0 if parent is None else parent.depth + (0 if copy else 1)
        rec = TaskRecord(
            task_id="task_" + uuid.uuid4().hex[:20],
            spec=spec,
            parent=parent,
            depth=depth,
            copy=copy,
            copies=copies,
            order=next(self._order),
        )
        if parent is not None:
            parent.children.append(rec)
        self._tasks[rec.task_id] = rec
        for fn in self.on_new:
            fn(rec)
        return rec

    def get(self, task_id: str) -> TaskRecord | None:
        return self._tasks.get(task_id)

    def restore(self, task: pb.Task, events: list[pb.TaskEvent] | Callable[[], Awaitable[list[pb.TaskEvent]]]
                ) -> TaskRecord:
        """Rebuild a record from storage (the coordinator's task database); parents are linked by the caller.
        ``events`` is the log, or how to read it later (``task.last_seq`` events)."""
        lazy = None if isinstance(events, list) else events
        rec = TaskRecord(task_id=task.task_id, spec=task.spec, depth=task.depth, state=task.state,
                         result=task.result, success=task.success, error=task.error, worker_id=task.worker_id,
                         attempts=task.attempts, steps=task.steps, created_at=task.created_at,
                         usage={u.model: u for u in task.usage}, events=events if isinstance(events, list) else [],
                         visible=len(events) if isinstance(events, list) else task.last_seq, lazy=lazy,
                         order=next(self._order),
                         winner_task_id=task.winner_task_id, cached=task.cached,
                         replayed_steps=task.replayed_steps)
        if task.HasField("started_at"):
            rec.started_at = task.started_at
        if task.HasField("finished_at"):
            rec.finished_at = task.finished_at
        self._tasks[rec.task_id] = rec
        return rec

    def evict(self, now: float, retention_s: float, max_records: int) -> list[TaskRecord]:
        """Forget finished task trees: those whose top-level task ended more than ``retention_s``
        ago, then the oldest until at most ``max_records`` records are left. Returns what was
        removed (every record of each tree). A tree with anything still running is kept."""
        roots = [r for r in self._tasks.values() if r.parent is None]
        finished = [r for r in roots if all(t.done for t in r.tree())]
        gone: list[TaskRecord] = []
        excess = len(self._tasks) - max_records
        for root in finished:  # submission order: oldest first
            ended = root.finished_at.ToNanoseconds() / 1e9 if root.finished_at is not None else now
            tree = root.tree()
            if now - ended > retention_s or excess > 0:
                excess -= len(tree)
                gone.extend(tree)
        for rec in gone:
            self._tasks.pop(rec.task_id, None)
        return gone

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

