"""``blast.v1.BlastService``: validates requests and maps them onto the task store and scheduler.

Errors leave through ``abort`` with a status that fits: a bad field is
INVALID_ARGUMENT naming the field, an unknown id NOT_FOUND, a draining engine
UNAVAILABLE. Nothing a client sent is dropped silently: a task either gets a
record and an id, or the call fails with a reason.

When the engine stops (``close_watches``), a watch of a task that has not ended ends
with UNAVAILABLE saying the task stays queued for the next start (the task database
keeps it), so a client (the gateway's waiting requests) is told rather than cut off.
A ``RunTask`` owns its task, so there the task is cancelled and its end streamed.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Callable, NoReturn
from urllib.parse import urlparse

import grpc

from .._proto.blast.v1 import blast_pb2 as pb
from .._proto.blast.v1 import blast_pb2_grpc as bgrpc
from ..client import ENGINE_SHUTDOWN_REASON
from ..config import Config, model_name
from .human import HumanDesk
from .human_rpcs import HumanRpcs
from .launch import Launcher
from .metrics import collect_metrics
from .scheduler import Scheduler
from .tasks import TaskRecord, TaskStore
from .workers import WorkerHandle

RETRY_AFTER_S = 5
CACHE_DIRECTIVES = {"no-cache", "no-store", "no-cache-plan", "no-store-plan"}
MAX_METADATA_PAIRS, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512
MAX_CLIENT_STATE = 1024


async def abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    """End the call with ``code`` and ``message``; typed ``NoReturn`` so callers need no ``return``
    after it (the coordinator's services, ``BlastService`` and the ``TaskBroker``, all use it)."""
    await context.abort(code, message)
    raise AssertionError("unreachable")  # abort raises


def initial_url_problem(url: str, field: str = "spec.initial_url") -> str | None:
    """Why ``url`` cannot be a task's first page (None: it can, or it is empty)."""
    if not url:
        return None
    try:
        u = urlparse(url)
        u.port  # noqa: B018 -- parses the port, raising ValueError for one out of range or not a number
    except ValueError as exc:  # "http://[::1" (unclosed bracket), "http://h:99999"
        return f"{field} is not a valid URL ({exc}): {url[:200]!r}"
    if u.scheme not in ("http", "https") or not u.netloc:
        return f"{field} must be an http(s) URL, got {url[:200]!r}"
    return None


class BlastService(HumanRpcs, bgrpc.BlastServiceServicer):
    def __init__(self, config: Config, store: TaskStore, scheduler: Scheduler, launcher: Launcher,
                 workers: Callable[[], list[WorkerHandle]], human: HumanDesk) -> None:
        self.config = config
        self.human = human  # RespondToTask, PauseTask, GetTaskScreenshot (human_rpcs.py)
        self.store = store
        self.scheduler = scheduler
        self.launcher = launcher
        self.workers = workers  # local and remote, as they are now
        self.draining = False
        self.closing = False  # the engine is stopping: open watches end (close_watches)
        self.llm_problem = config.llm_problem()

    # --- helpers ---------------------------------------------------------------
    def _spec_problem(self, spec: pb.TaskSpec) -> str | None:
        limit = self.config.settings.max_task_chars
        if not spec.description.strip():
            return "spec.description is required: say what the task is"
        if len(spec.description) > limit:
            return (f"spec.description is {len(spec.description)} characters; the limit is {limit} "
                    "(settings.max_task_chars)")
        problem = initial_url_problem(spec.initial_url)
        if problem:
            return problem
        if spec.previous_task_id and self.store.get(spec.previous_task_id) is None:
            return f"spec.previous_task_id {spec.previous_task_id[:100]!r} is not a known task"
        bad = [d for d in spec.cache_control if d not in CACHE_DIRECTIVES]
        if bad:
            return f"spec.cache_control has unknown directive {bad[0][:50]!r}; use {sorted(CACHE_DIRECTIVES)}"
        if self.config.task_model(spec.model) is None:
            c = self.config.constraints
            allowed = sorted({model_name(c.llm_model), model_name(c.llm_model_mini)})
            return f"spec.model {spec.model[:100]!r} is not a configured model; use one of {allowed}"
        if len(spec.client_state) > MAX_CLIENT_STATE:
            return f"spec.client_state is {len(spec.client_state)} characters; at most {MAX_CLIENT_STATE}"
        copies = self.launcher.num_copies_problem(spec.num_copies)
        if copies:
            return copies
        if len(spec.metadata) > MAX_METADATA_PAIRS:
            return f"spec.metadata has {len(spec.metadata)} pairs; at most {MAX_METADATA_PAIRS}"
        for k, v in spec.metadata.items():
            if len(k) > MAX_METADATA_KEY or len(v) > MAX_METADATA_VALUE:
                return (f"spec.metadata key {k[:40]!r}: keys are at most {MAX_METADATA_KEY} and values "
                        f"at most {MAX_METADATA_VALUE} characters")
        return None

    async def _find(self, task_id: str, context: grpc.aio.ServicerContext) -> TaskRecord:
        if not task_id:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "task_id is required")
        rec = self.store.get(task_id)
        if rec is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, f"no task with id {task_id[:100]!r}")
        return rec

    def _proto(self, rec: TaskRecord) -> pb.Task:
        return rec.to_proto(self.scheduler.position(rec.task_id))

    async def _submit(self, spec: pb.TaskSpec, context: grpc.aio.ServicerContext) -> TaskRecord:
        if self.draining:
            await abort(context, grpc.StatusCode.UNAVAILABLE, "the engine is shutting down; submit elsewhere")
        problem = self._spec_problem(spec)
        if problem:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, problem)
        limit = self.config.settings.max_queued_tasks
        waiting = sum(1 for r in self.scheduler.queue if r.parent is None)
        if waiting >= limit:
            # Admission control: refuse rather than pile up; the hint is a guess a client may honour.
            context.set_trailing_metadata((("retry-after", str(RETRY_AFTER_S)),))
            await abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"the queue is full: {waiting} tasks are waiting (settings.max_queued_tasks={limit}); "
                         f"retry in about {RETRY_AFTER_S} s")
        if self.llm_problem:
            rec = self.store.new(spec)
            rec.queue()
            self.store.finish(rec, pb.TASK_STATE_FAILED, error=self.llm_problem)
            return rec
        return await self.launcher.launch(spec, None, self.launcher.copies_for_top_level(spec.num_copies))

    # --- RPCs ------------------------------------------------------------------
    async def SubmitTask(self, request: pb.SubmitTaskRequest, context: grpc.aio.ServicerContext) -> pb.SubmitTaskResponse:
        rec = await self._submit(request.spec, context)
        return pb.SubmitTaskResponse(task=self._proto(rec))

    def close_watches(self) -> None:
        """End the watches of tasks that have not ended (the engine is stopping)."""
        self.closing = True
        for rec in self.store.all():
            if not rec.done:
                rec.interrupt()

    def _closing(self) -> bool:
        return self.closing

    async def _closed_on(self, rec: TaskRecord, context: grpc.aio.ServicerContext) -> NoReturn:
        await abort(context, grpc.StatusCode.UNAVAILABLE,
                     f"the engine is shutting down; task {rec.task_id} has not ended and stays "
                     f"{'queued' if rec.state == pb.TASK_STATE_QUEUED else pb.TaskState.Name(rec.state)}"  # type: ignore[arg-type]
                     f" for the next start: watch it again from seq {rec.visible + 1} then")

    async def RunTask(self, request: pb.RunTaskRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.RunTaskResponse]:
        rec = await self._submit(request.spec, context)
        try:
            seq = 0
            async for ev in rec.watch(stop=self._closing):
                seq = ev.seq
                yield pb.RunTaskResponse(event=ev)
            if not rec.done:  # the engine is stopping: the task ends with this stream
                self.scheduler.cancel(rec, ENGINE_SHUTDOWN_REASON)
                async for ev in rec.watch(seq + 1):
                    yield pb.RunTaskResponse(event=ev)
        except asyncio.CancelledError:
            # The caller owns a RunTask: when it goes away, so does the task; except while the
            # task (or a subtask) waits for a person: the caller has the question and answers
            # later (RespondToTask; the gateway's function_call_output), and
            # settings.human_response_timeout_s bounds the wait.
            if not rec.done and not any(r.state == pb.TASK_STATE_WAITING_FOR_HUMAN for r in rec.tree()):
                self.scheduler.cancel(rec, "the client closed the RunTask stream")
            raise

    async def WatchTask(self, request: pb.WatchTaskRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[pb.WatchTaskResponse]:
        rec = await self._find(request.task_id, context)
        if request.from_seq < 0:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"from_seq must be >= 0, got {request.from_seq}")
        if rec.done and request.from_seq > rec.last_seq + 1:
            await abort(context, grpc.StatusCode.OUT_OF_RANGE,
                         f"from_seq {request.from_seq} is past the task's last event ({rec.last_seq})")
        async for ev in rec.watch(request.from_seq, stop=self._closing):
            yield pb.WatchTaskResponse(event=ev)
        if not rec.done:
            await self._closed_on(rec, context)

    async def GetTask(self, request: pb.GetTaskRequest, context: grpc.aio.ServicerContext) -> pb.GetTaskResponse:
        return pb.GetTaskResponse(task=self._proto(await self._find(request.task_id, context)))

    async def CancelTask(self, request: pb.CancelTaskRequest, context: grpc.aio.ServicerContext) -> pb.CancelTaskResponse:
        rec = await self._find(request.task_id, context)
        if rec.done:
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                         f"task {rec.task_id} already ended ({pb.TaskState.Name(rec.state)})")  # type: ignore[arg-type]
        self.scheduler.cancel(rec, request.reason or "cancelled by the client")
        # The record ended at once (the worker closes the context a moment later, on its own):
        # wait only until the task database has written the log's end, so the reply matches
        # what a watcher sees.
        async for _ in rec.watch(rec.last_seq + 1):
            pass
        return pb.CancelTaskResponse(task=self._proto(rec))

    async def ListTasks(self, request: pb.ListTasksRequest, context: grpc.aio.ServicerContext) -> pb.ListTasksResponse:
        if request.limit < 0 or request.limit > 1000:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"limit must be 0..1000, got {request.limit}")
        if request.state not in pb.TaskState.values():
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"state {request.state} is not a TaskState")
        recs = [r for r in reversed(self.store.all()) if request.state in (0, r.state)]
        return pb.ListTasksResponse(tasks=[self._proto(r) for r in recs[: request.limit or 100]])

    async def GetMetrics(self, request: pb.GetMetricsRequest, context: grpc.aio.ServicerContext) -> pb.GetMetricsResponse:
        return await collect_metrics(self.store, self.scheduler, self.workers())
