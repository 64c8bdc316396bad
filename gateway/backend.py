"""The gateway's only connection to the engine: ``blast_grpc.client.Client``.

The gateway keeps no state: a response id names a task, and everything a reply
needs is read back from the coordinator (``GetTask``, ``WatchTask``). Unary calls
have a deadline (the client's ``unary_timeout``) so a wedged coordinator turns into a
504, not a hung request. gRPC errors propagate as ``grpc.aio.AioRpcError``; callers
translate them with ``errors.from_grpc``.

A foreground request (one that is not ``background``) runs its task with ``RunTask``
(``start``): the task lives exactly as long as that stream, so a client that goes away,
or a gateway that dies, takes its task with it — nothing is left running that nobody
will read. A background request uses ``SubmitTask``: its task outlives the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import AsyncGenerator

import grpc

from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.client import Client
from blast_grpc.states import ends_task

from .errors import ApiError

UNARY_TIMEOUT_S = 15.0
PAUSE_TIMEOUT_S = 120.0  # PauseTask waits for the task's current step to end


def is_root_end(ev: pb.TaskEvent, root_id: str) -> bool:
    """Whether ``ev`` ends the watched (top-level) task rather than one of its subtasks."""
    return ev.task_id == root_id and ends_task(ev)


class TaskTree:
    """The ids of a task and of the subtasks that appear in its event stream, in order."""

    def __init__(self, root_id: str) -> None:
        self.root_id = root_id
        self.ids: list[str] = [root_id]

    def see(self, ev: pb.TaskEvent) -> None:
        for task_id in (ev.task_id, ev.subtask_launched.subtask_id if ev.HasField("subtask_launched") else ""):
            if task_id and task_id not in self.ids:
                self.ids.append(task_id)


@dataclass
class Run:
    """A task started with ``RunTask``: its first event (the task's id and creation time) and
    the stream of the rest. Closing ``events`` cancels the task if it has not ended."""

    first: pb.TaskEvent
    events: AsyncGenerator[pb.TaskEvent, None]
    # The RunTask stream itself: ``aclose`` ends it even when ``events`` was never read (a
    # generator closed before it started runs no clean-up, so closing ``events`` alone would
    # leave the call to be ended whenever Python collects it, and the task running meanwhile).
    rest: AsyncGenerator[pb.TaskEvent, None]

    @property
    def task_id(self) -> str:
        return self.first.task_id

    async def aclose(self) -> None:
        """End the RunTask call now (which cancels the task if it has not ended)."""
        await self.events.aclose()
        await self.rest.aclose()


class Backend:
    """Async calls on a coordinator at ``address`` (``host:port``).

    ``api_key`` is sent on every call (``authorization: Bearer``) to a coordinator that
    requires one; ``None``: the ``BLAST_API_KEY`` environment variable, if set."""

    def __init__(self, address: str, api_key: str | None = None) -> None:
        self.address = address
        self._client = Client(address, api_key=api_key, unary_timeout=UNARY_TIMEOUT_S)
        self.api_key = self._client.api_key  # also sent to the coordinator's /metrics (ops_routes)

    async def close(self) -> None:
        """Close the gRPC channel."""
        await self._client.close()

    async def submit(self, spec: pb.TaskSpec) -> pb.Task:
        """Queue a task (``SubmitTask``); its record, with the new ``task_id``."""
        return await self._client.submit_spec(spec)

    async def start(self, spec: pb.TaskSpec) -> Run:
        """Start a task with ``RunTask`` and wait for its first event, so a refused spec raises
        here (``AioRpcError``) before any reply has started. The caller must close
        ``Run.events`` (``contextlib.aclosing``); doing so before the end cancels the task."""
        # The first event comes at once (the coordinator records ``scheduled`` on accepting
        # the task); the deadline guards against a coordinator that accepts and then hangs.
        events = self._client.run_spec(spec)
        try:
            first = await asyncio.wait_for(anext(events), UNARY_TIMEOUT_S)
        except TimeoutError:
            await events.aclose()  # cancels the call, and with it the task if it was accepted
            raise ApiError(504, f"the engine did not answer in time: the coordinator at {self.address} did not "
                           f"start the task in {UNARY_TIMEOUT_S:g} s", type="server_error",
                           code="engine_timeout") from None
        except BaseException:
            await events.aclose()
            raise
        return Run(first, _chain(first, events), events)

    async def get(self, task_id: str, timeout: float = UNARY_TIMEOUT_S) -> pb.Task:
        """A task's current record (``GetTask``)."""
        return await self._client.get_task(task_id, timeout=timeout)

    async def cancel(self, task_id: str, reason: str) -> pb.Task:
        """Cancel a queued or running task (``CancelTask``); FAILED_PRECONDITION if it ended."""
        return await self._client.cancel(task_id, reason)

    async def cancel_quietly(self, task_id: str, reason: str) -> None:
        """Cancel unless the task already ended; used when a client goes away."""
        try:
            await self.cancel(task_id, reason)
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
                raise

    async def respond(self, task_id: str, answer: str) -> pb.Task:
        """Answer a task waiting for a person (``RespondToTask``); FAILED_PRECONDITION if it does not wait."""
        return await self._client.respond(task_id, answer)

    async def pause(self, task_id: str, timeout: float = PAUSE_TIMEOUT_S) -> pb.Task:
        """Pause a running task after its current step (``PauseTask``; it returns once the task waits)."""
        return await self._client.pause(task_id, timeout=timeout)

    async def screenshot(self, task_id: str) -> pb.GetTaskScreenshotResponse:
        """A JPEG of the task's live (or parked) page (``GetTaskScreenshot``)."""
        return await self._client.screenshot(task_id, timeout=UNARY_TIMEOUT_S)

    async def metrics(self, timeout: float = UNARY_TIMEOUT_S) -> pb.GetMetricsResponse:
        """The engine's counters and workers (``GetMetrics``)."""
        return await self._client.metrics(timeout=timeout)

    async def health(self, timeout: float = UNARY_TIMEOUT_S) -> int:
        """The coordinator's ``grpc.health.v1`` status for ``blast.v1.BlastService``."""
        return await self._client.health(timeout=timeout)

    async def list_tasks(self, limit: int = 100) -> list[pb.Task]:
        """The newest ``limit`` tasks, subtasks included (``ListTasks``)."""
        return await self._client.list_tasks(limit, timeout=UNARY_TIMEOUT_S)

    async def watch(self, task_id: str, from_seq: int = 1) -> AsyncGenerator[pb.TaskEvent, None]:
        """Every event of the task (and its subtasks) from ``from_seq`` on, replayed then live, until it ends."""
        async with contextlib.aclosing(self._client.watch(task_id, from_seq=from_seq)) as events:
            async for ev in events:
                yield ev

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


async def _chain(first: pb.TaskEvent, rest: AsyncGenerator[pb.TaskEvent, None]
                 ) -> AsyncGenerator[pb.TaskEvent, None]:
    """``first``, then the events of ``rest``; closing this closes ``rest`` (ending a RunTask)."""
    try:
        yield first
        async for ev in rest:
            yield ev
    finally:
        await rest.aclose()
