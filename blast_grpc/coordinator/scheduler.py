"""The queue and the dispatcher: which task runs next, on which worker.

A task waits in the queue until a browser slot is free (``max_concurrent_browsers``
across all workers) and a worker is ready; it then runs as one server-streaming
``RunTask`` call to that worker, owned by an asyncio task kept in ``_attempts``.
Cancelling that task cancels the call, which makes the worker close the context.

If the worker dies mid-task the task goes back to the front of the queue, to run on
another worker when one is free, up to ``settings.task_retries_on_worker_death``
times; after that it fails with a reason naming the worker and how it died.

Draining (SIGTERM): ``close_admission`` stops new top-level tasks from starting at once.
They stay queued (``stop`` leaves them alone when the task database will requeue them at
the next start; otherwise they are cancelled with the shutdown reason). Subtasks still
start, because the running tasks that wait for them are allowed to finish.

The dispatcher loop belongs to the coordinator's ``TaskSet``: if it crashes, the process
exits non-zero instead of queueing work nobody will start. An attempt that crashes (our
bug) fails its task with the reason, so no submitted task is left hanging.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Callable

import grpc

from .._proto.blast.v1 import blast_pb2 as pb
from .._proto.blast.worker.v1 import worker_pb2 as wpb
from ..config import Config
from ..supervise import TaskSet, fault_point
from ..worker.exits import EXITING_METADATA
from .budget import Budget
from .step_stats import StepStats
from .tasks import TaskRecord, add_usage, now_ts
from .workers import WorkerHandle

log = logging.getLogger("blast_grpc.scheduler")

DIED_WAIT_S = 1.0  # how long a broken stream waits for its worker's exit to name the cause
EXITING_WAIT_S = 60.0  # the same for a worker that said it is exiting (it may close its browser first)


class Scheduler:
    def __init__(self, config: Config, workers: Callable[[], list[WorkerHandle]],
                 lineage: Callable[[TaskRecord], list[wpb.PriorTask]], budget: Budget,
                 tasks: TaskSet | None = None) -> None:
        self.config = config
        self.tasks = tasks if tasks is not None else TaskSet()
        # False once the engine drains: queued top-level tasks no longer start.
        self.admitting = True
        self.budget = budget
        self._workers = workers
        self._lineage = lineage
        self.queue: list[TaskRecord] = []
        self._attempts: dict[str, asyncio.Task[None]] = {}
        self._cancel_reasons: dict[str, str] = {}
        self._avoid: dict[str, str] = {}
        self.usage: dict[str, pb.Usage] = {}
        self.step_stats = StepStats()  # GetMetrics' step latency
        # Running tasks that gave their slot back while they wait for subtasks (their
        # context is closed), and those waiting to get one back, served before the queue.
        self._parked: set[str] = set()
        self._resuming: list[tuple[TaskRecord, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._records: dict[str, TaskRecord] = {}  # the record of each attempt in _attempts
        # Memory of the workers and their browsers (bytes), sampled by the coordinator.
        self.memory_now = 0
        self._memory_waiting: set[str] = set()
        self._trim: asyncio.Task[None] | None = None

    # --- queue -----------------------------------------------------------------
    @staticmethod
    def _priority(rec: TaskRecord) -> tuple[int, int]:
        # Subtasks and racing copies unblock tasks that already hold a browser: they go first.
        return (0 if rec.parent is not None else 1, rec.order)

    def submit(self, rec: TaskRecord) -> None:
        key = self._priority(rec)
        at = next((i for i, r in enumerate(self.queue) if self._priority(r) > key), len(self.queue))
        self.queue.insert(at, rec)
        rec.emit(scheduled=pb.TaskScheduled(queue_position=at + 1))
        self.wake()

    def position(self, task_id: str) -> int:
        for i, r in enumerate(self.queue):
            if r.task_id == task_id:
                return i + 1
        return 0

    @property
    def running(self) -> int:
        return len(self._attempts)

    @property
    def slots_in_use(self) -> int:
        return len(self._attempts) - len(self._parked)

    def release(self, rec: TaskRecord) -> None:
        """A running task parks (closes its context) while it waits: its slot is free for others."""
        if rec.task_id in self._attempts:
            self._parked.add(rec.task_id)
            self.wake()

    async def reacquire(self, rec: TaskRecord) -> None:
        """Wait for a slot for a parked task; parked tasks get slots before anything queued."""
        if rec.task_id not in self._parked:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._resuming.append((rec, fut))
        self.wake()
        try:
            await fut
        except asyncio.CancelledError:
            self._resuming = [(r, f) for r, f in self._resuming if f is not fut]
            raise

    def wake(self) -> None:
        self._wake.set()

    # --- dispatch --------------------------------------------------------------
    def start(self) -> None:
        self._loop_task = self.tasks.spawn(self._loop(), name="scheduler")

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._dispatch()

    def _pick(self, rec: TaskRecord) -> WorkerHandle | None:
        ready = [w for w in self._workers() if w.state == pb.WORKER_STATE_READY and w.stub is not None]
        if not ready:
            return None
        avoid = self._avoid.get(rec.task_id)
        candidates = [w for w in ready if w.worker_id != avoid] or ready
        home = [w for w in candidates if w.worker_id == rec.prefer_worker]
        return home[0] if home else min(candidates, key=lambda w: len(w.running))

    def _dispatch(self) -> None:
        limit = self.config.constraints.max_concurrent_browsers
        while self._resuming and self.slots_in_use < limit:
            rec, fut = self._resuming.pop(0)
            self._parked.discard(rec.task_id)
            if not fut.done():
                fut.set_result(None)
        while not self._resuming and self.slots_in_use < limit:
            # Draining: top-level tasks stay queued; subtasks of running tasks still start.
            eligible = next((r for r in self.queue if self.admitting or r.parent is not None), None)
            if eligible is None:
                return
            rec = eligible
            if not self._memory_allows(rec):
                return
            worker = self._pick(rec)
            if worker is None:
                return
            fault_point("scheduler")
            self.queue.remove(rec)
            task = asyncio.create_task(self._attempt(rec, worker), name=f"attempt-{rec.task_id}")
            self._attempts[rec.task_id] = task
            self._records[rec.task_id] = rec
            task.add_done_callback(functools.partial(self._attempt_done, rec.task_id))

    def _memory_allows(self, rec: TaskRecord) -> bool:
        """A new context may start if it fits under max_memory, or if nothing else runs
        (so one task always makes progress). Otherwise idle contexts are closed first."""
        limit = self.config.constraints.max_memory
        if limit is None or self.slots_in_use == 0:
            return True
        estimate = self.config.settings.context_memory_estimate
        if self.memory_now + estimate <= limit:
            return True
        if rec.task_id not in self._memory_waiting:
            self._memory_waiting.add(rec.task_id)
            rec.emit(waiting=pb.TaskWaiting(reason=(
                f"waiting for memory: {self.memory_now / 1e9:.2f} GB in use and a new browser context needs "
                f"about {estimate / 1e9:.2f} GB; the limit is constraints.max_memory = {limit / 1e9:.2f} GB")))
            if self._trim is None or self._trim.done():
                self._trim = self.tasks.spawn(self._trim_idle(), name="trim-idle-contexts")
        return False

    async def _trim_idle(self) -> None:
        """Under memory pressure, workers close their warm and kept contexts first."""
        for w in self._workers():
            if w.stub is not None and w.state == pb.WORKER_STATE_READY:
                try:
                    await w.stub.TrimIdle(wpb.TrimIdleRequest(), timeout=5)
                except grpc.aio.AioRpcError as exc:
                    log.warning("worker %s could not trim idle contexts: %s", w.worker_id, exc.details())

    def set_memory(self, used: int) -> None:
        self.memory_now = used
        if self._memory_waiting:
            self.wake()

    def _attempt_done(self, task_id: str, task: asyncio.Task[None]) -> None:
        rec = self._records.get(task_id)
        if self._attempts.get(task_id) is task:
            del self._attempts[task_id]
            self._records.pop(task_id, None)
            self._parked.discard(task_id)
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            log.error("attempt for %s crashed", task_id, exc_info=exc)
            if rec is not None:  # our bug, but the client learns the task's end
                rec.finish(pb.TASK_STATE_FAILED, error=f"internal error in the coordinator: {type(exc).__name__}: {exc}")
        self.wake()

    async def _attempt(self, rec: TaskRecord, worker: WorkerHandle) -> None:
        rec.attempts += 1
        rec.state = pb.TASK_STATE_RUNNING
        rec.worker_id = worker.worker_id
        if rec.started_at is None:
            rec.started_at = now_ts()
        race = rec.parent if rec.copy else None
        if race is not None and race.state == pb.TASK_STATE_QUEUED:
            race.state, race.started_at = pb.TASK_STATE_RUNNING, now_ts()
        rec.emit(started=pb.TaskStarted(worker_id=worker.worker_id, attempt=rec.attempts))
        worker.running.add(rec.task_id)
        assert worker.stub is not None
        c = self.config.constraints
        call = worker.stub.RunTask(
            wpb.RunTaskRequest(task_id=rec.task_id, spec=rec.spec, depth=rec.depth, attempt=rec.attempts,
                               history=self._lineage(rec), copy=rec.copy, copies=rec.copies,
                               may_launch_subtasks=c.allow_parallelism.task
                               and rec.depth < c.max_parallelism_nesting_depth,
                               replay_plan=rec.replay_plan)
        )
        try:
            async for msg in call:
                if self._relay(rec, msg):
                    return
            await self._worker_lost(rec, worker, "the worker ended the task's stream without an answer")
        except grpc.aio.AioRpcError as exc:
            exiting = any(k == EXITING_METADATA for k, _ in (exc.trailing_metadata() or ()))
            await self._worker_lost(rec, worker, f"lost the connection to worker {worker.worker_id}: {exc.details()}",
                                    EXITING_WAIT_S if exiting else DIED_WAIT_S)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # We were cancelled: CancelTask, a lost race, a parent that ended, shutdown.
                rec.finish(pb.TASK_STATE_CANCELLED, error=self._cancel_reasons.pop(rec.task_id, "cancelled"))
                raise
            # grpc cancelled the call under us: the supervisor closed the channel of a dead worker.
            await self._worker_lost(rec, worker, f"the connection to worker {worker.worker_id} was closed")
        finally:
            call.cancel()
            worker.running.discard(rec.task_id)

    def _relay(self, rec: TaskRecord, msg: wpb.RunTaskResponse) -> bool:
        """Turn one worker update into task state and events; True when the task ended."""
        kind = msg.WhichOneof("kind")
        if kind == "usage":
            for u in msg.usage.usage:
                u.cost_usd = self.budget.price(u)
                self.budget.charge(u.cost_usd)
                rec.add_usage(u)
                add_usage(self.usage, u)
        elif kind == "step":
            rec.steps += 1
            rec.replayed_steps += msg.step.replayed
            self.step_stats.add(msg.step)
            rec.emit(step=msg.step)
        elif kind == "recording":
            rec.recording = msg.recording
        elif kind == "plan":
            rec.emit(plan=msg.plan)
        elif kind == "completed":
            rec.finish(pb.TASK_STATE_COMPLETED, result=msg.completed.result, success=msg.completed.success)
            return True
        elif kind == "failed":
            rec.finish(pb.TASK_STATE_FAILED, error=msg.failed.error)
            return True
        return False

    async def _worker_lost(self, rec: TaskRecord, worker: WorkerHandle, fallback: str,
                           wait_s: float = DIED_WAIT_S) -> None:
        # The stream usually breaks a moment before the supervisor sees the exit; give
        # it that moment so the reason can say how the worker died. A worker that said it is
        # exiting (EXITING_METADATA) gets until it has: until then it still looks ready, and
        # the retry would go to it again.
        try:
            await asyncio.wait_for(worker.died.wait(), timeout=wait_s)
            reason = f"worker {worker.worker_id} died ({worker.last_exit}) while running the task"
        except TimeoutError:
            reason = fallback
        if rec.attempts <= self.config.settings.task_retries_on_worker_death:
            rec.state = pb.TASK_STATE_QUEUED
            self._avoid[rec.task_id] = worker.worker_id
            rec.emit(waiting=pb.TaskWaiting(reason=f"{reason}; retrying on another worker"))
            self.queue.insert(0, rec)
        else:
            rec.finish(pb.TASK_STATE_FAILED, error=reason)

    # --- cancellation and shutdown --------------------------------------------
    def cancel(self, rec: TaskRecord, reason: str) -> None:
        """Cancel now: the record ends at once; a running attempt is cancelled, which
        makes its worker close the browser context a moment later."""
        if rec in self.queue:
            self.queue.remove(rec)
        attempt = self._attempts.get(rec.task_id)
        if attempt is not None:
            self._cancel_reasons[rec.task_id] = reason
            attempt.cancel()
        rec.finish(pb.TASK_STATE_CANCELLED, error=reason)

    async def wait_idle(self, timeout: float) -> None:
        """Wait until nothing runs or ``timeout`` passes."""
        pending = list(self._attempts.values())
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    def close_admission(self) -> None:
        """Draining: queued top-level tasks no longer start (running ones and their subtasks go on)."""
        self.admitting = False

    async def stop(self, reason: str, keep_queued: bool = False) -> None:
        """Cancel running tasks, the queued ones too unless ``keep_queued`` (the task database
        requeues them at the next start), and stop the dispatcher; idempotent."""
        self.admitting = False
        for rec in list(self.queue):
            if keep_queued and rec.parent is None:
                continue
            self.cancel(rec, reason)
        for tid, t in list(self._attempts.items()):
            self._cancel_reasons[tid] = reason
            t.cancel()
        await asyncio.gather(*self._attempts.values(), return_exceptions=True)
        for owned in (self._loop_task, self._trim):
            if owned is not None:
                owned.cancel()
                await asyncio.gather(owned, return_exceptions=True)
