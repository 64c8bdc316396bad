"""The gateway's only connection to the engine: calls on ``blast.v1.BlastService``.

The gateway keeps no state: a response id names a task, and everything a reply
needs is read back from the coordinator (``GetTask``, ``WatchTask``). Unary calls
have a deadline so a wedged coordinator turns into a 504, not a hung request.
gRPC errors propagate as ``grpc.aio.AioRpcError``; callers translate them with
``errors.from_grpc``.
"""

from __future__ import annotations

import contextlib
from typing import AsyncGenerator

import grpc

from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.client import Client

UNARY_TIMEOUT_S = 15.0
PAUSE_TIMEOUT_S = 120.0  # PauseTask waits for the task's current step to end
TERMINAL = ("completed", "failed", "cancelled")


def is_root_end(ev: pb.TaskEvent, root_id: str) -> bool:
    """Whether ``ev`` ends the watched (top-level) task rather than one of its subtasks."""
    return ev.task_id == root_id and ev.WhichOneof("kind") in TERMINAL


class TaskTree:
    """The ids of a task and of the subtasks that appear in its event stream, in order."""

    def __init__(self, root_id: str) -> None:
        self.root_id = root_id
        self.ids: list[str] = [root_id]

    def see(self, ev: pb.TaskEvent) -> None:
        for task_id in (ev.task_id, ev.subtask_launched.subtask_id if ev.HasField("subtask_launched") else ""):
            if task_id and task_id not in self.ids:
                self.ids.append(task_id)


class Backend:
    """Async calls on a coordinator at ``address`` (``host:port``).

    ``api_key`` is sent on every call (``authorization: Bearer``) to a coordinator that
    requires one; ``None``: the ``BLAST_API_KEY`` environment variable, if set."""

    def __init__(self, address: str, api_key: str | None = None) -> None:
        self.address = address
        self._client = Client(address, api_key=api_key)
        self._stub = self._client.stub

    async def close(self) -> None:
        """Close the gRPC channel."""
        await self._client.close()

    async def submit(self, spec: pb.TaskSpec) -> pb.Task:
        """Queue a task (``SubmitTask``); its record, with the new ``task_id``."""
        resp = await self._stub.SubmitTask(pb.SubmitTaskRequest(spec=spec), timeout=UNARY_TIMEOUT_S)
        return resp.task

    async def get(self, task_id: str) -> pb.Task:
        """A task's current record (``GetTask``)."""
        resp = await self._stub.GetTask(pb.GetTaskRequest(task_id=task_id), timeout=UNARY_TIMEOUT_S)
        return resp.task

    async def cancel(self, task_id: str, reason: str) -> pb.Task:
        """Cancel a queued or running task (``CancelTask``); FAILED_PRECONDITION if it ended."""
        resp = await self._stub.CancelTask(pb.CancelTaskRequest(task_id=task_id, reason=reason),
                                           timeout=UNARY_TIMEOUT_S)
        return resp.task

    async def cancel_quietly(self, task_id: str, reason: str) -> None:
        """Cancel unless the task already ended; used when a client goes away."""
        try:
            await self.cancel(task_id, reason)
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
                raise

    async def respond(self, task_id: str, answer: str) -> pb.Task:
        """Answer a task waiting for a person (``RespondToTask``); FAILED_PRECONDITION if it does not wait."""
        resp = await self._stub.RespondToTask(pb.RespondToTaskRequest(task_id=task_id, answer=answer),
                                              timeout=UNARY_TIMEOUT_S)
        return resp.task

    async def pause(self, task_id: str, timeout: float = PAUSE_TIMEOUT_S) -> pb.Task:
        """Pause a running task after its current step (``PauseTask``; it returns once the task waits)."""
        resp = await self._stub.PauseTask(pb.PauseTaskRequest(task_id=task_id), timeout=timeout)
        return resp.task

    async def screenshot(self, task_id: str) -> pb.GetTaskScreenshotResponse:
        """A JPEG of the task's live (or parked) page (``GetTaskScreenshot``)."""
        return await self._stub.GetTaskScreenshot(pb.GetTaskScreenshotRequest(task_id=task_id),
                                                  timeout=UNARY_TIMEOUT_S)

    async def metrics(self, timeout: float = UNARY_TIMEOUT_S) -> pb.GetMetricsResponse:
        """The engine's counters and workers (``GetMetrics``)."""
        return await self._stub.GetMetrics(pb.GetMetricsRequest(), timeout=timeout)

    async def list_tasks(self, limit: int = 100) -> list[pb.Task]:
        """The newest ``limit`` tasks, subtasks included (``ListTasks``)."""
        resp = await self._stub.ListTasks(pb.ListTasksRequest(limit=limit), timeout=UNARY_TIMEOUT_S)
        return list(resp.tasks)

    async def watch(self, task_id: str, from_seq: int = 1) -> AsyncGenerator[pb.TaskEvent, None]:
        """Every event of the task (and its subtasks) from ``from_seq`` on, replayed then live, until it ends."""
        call = self._stub.WatchTask(pb.WatchTaskRequest(task_id=task_id, from_seq=from_seq))
        try:
            async for resp in call:
                yield resp.event
        finally:
            call.cancel()

    async def events_so_far(self, task: pb.Task) -> list[pb.TaskEvent]:
        """The events ``task`` had when it was read (up to ``task.last_seq``), without waiting."""
        events: list[pb.TaskEvent] = []
        if task.last_seq <= 0:
            return events
        # WatchTask replays the recorded events at once; stop at the last one the record
        # counted instead of waiting for live ones.
        async with contextlib.aclosing(self.watch(task.task_id)) as stream:
            async for ev in stream:
                events.append(ev)
                if ev.seq >= task.last_seq:
                    break
        return events
