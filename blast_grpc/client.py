"""``Client``: the Python async client of ``blast.v1.BlastService``.

::

    async with Client("127.0.0.1:50051") as client:
        task = await client.run("Find the largest gorilla in Asia on http://...")
        print(task.result)
        async for event in client.run("...", stream=True):
            print(event)
"""

from __future__ import annotations

import os
from typing import Any, AsyncIterator, Literal, overload

import grpc

from ._proto.blast.v1 import blast_pb2 as pb
from ._proto.blast.v1 import blast_pb2_grpc as bgrpc

TERMINAL_EVENTS = {"completed", "failed", "cancelled"}


def make_spec(task: str, initial_url: str = "", previous_task_id: str = "",
              cache_control: list[str] | None = None, metadata: dict[str, str] | None = None) -> pb.TaskSpec:
    return pb.TaskSpec(description=task, initial_url=initial_url, previous_task_id=previous_task_id,
                       cache_control=cache_control or [], metadata=metadata or {})


class _Metadata:
    """Adds fixed metadata (the API key) to every call; grpc wants one object per call shape."""

    def __init__(self, extra: list[tuple[str, str]]) -> None:
        self._extra = extra

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        md = grpc.aio.Metadata(*(details.metadata or ()), *self._extra)
        return grpc.aio.ClientCallDetails(details.method, details.timeout, md, details.credentials,
                                          details.wait_for_ready)


class _UnaryMetadata(_Metadata, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: grpc.aio.ClientCallDetails,
                                    request: Any) -> Any:
        return await continuation(self._details(details), request)


class _StreamMetadata(_Metadata, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: grpc.aio.ClientCallDetails,
                                     request: Any) -> Any:
        return await continuation(self._details(details), request)


class Client:
    """Talks to a coordinator at ``address`` (``host:port``)."""

    def __init__(self, address: str, api_key: str | None = None,
                 metadata: list[tuple[str, str]] | None = None) -> None:
        """``api_key`` (default: the ``BLAST_API_KEY`` environment variable) is sent as
        ``authorization: Bearer <key>`` on every call."""
        self.address = address
        key = api_key if api_key is not None else os.environ.get("BLAST_API_KEY", "")
        extra = [*(metadata or []), *([("authorization", f"Bearer {key}")] if key else [])]
        # Added to every call, also those made through ``.stub`` directly.
        interceptors: list[Any] | None = [_UnaryMetadata(extra), _StreamMetadata(extra)] if extra else None
        self._channel = grpc.aio.insecure_channel(address, options=[("grpc.max_send_message_length", 8 << 20)],
                                                  interceptors=interceptors)
        self._stub = bgrpc.BlastServiceStub(self._channel)
        self._md = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    @property
    def stub(self) -> bgrpc.BlastServiceStub:
        return self._stub

    @overload
    def run(self, task: str, *, stream: Literal[False] = False, **kw: Any) -> Any: ...
    @overload
    def run(self, task: str, *, stream: Literal[True], **kw: Any) -> AsyncIterator[pb.TaskEvent]: ...

    def run(self, task: str, *, stream: bool = False, **kw: Any) -> Any:
        """Run a task. Returns the final ``Task`` record (awaitable), or with ``stream=True``
        an async iterator of its ``TaskEvent``s. Keyword arguments: initial_url,
        previous_task_id, cache_control, metadata. Closing the stream cancels the task."""
        if stream:
            return self._run_stream(make_spec(task, **kw))
        return self._run(make_spec(task, **kw))

    async def _run_stream(self, spec: pb.TaskSpec) -> AsyncIterator[pb.TaskEvent]:
        call = self._stub.RunTask(pb.RunTaskRequest(spec=spec), metadata=self._md)
        try:
            async for resp in call:
                yield resp.event
        finally:
            call.cancel()

    async def _run(self, spec: pb.TaskSpec) -> pb.Task:
        task_id = ""
        async for ev in self._run_stream(spec):
            task_id = ev.task_id if not ev.parent_task_id else task_id
            if ev.WhichOneof("kind") in TERMINAL_EVENTS and not ev.parent_task_id:
                break
        return await self.get_task(task_id)

    async def submit(self, task: str, **kw: Any) -> pb.Task:
        """Queue a task; returns its record (with ``task_id``) at once."""
        resp = await self._stub.SubmitTask(pb.SubmitTaskRequest(spec=make_spec(task, **kw)), metadata=self._md)
        return resp.task

    async def watch(self, task_id: str, from_seq: int = 1) -> AsyncIterator[pb.TaskEvent]:
        """A task's events from ``from_seq`` on, until it ends."""
        call = self._stub.WatchTask(pb.WatchTaskRequest(task_id=task_id, from_seq=from_seq), metadata=self._md)
        try:
            async for resp in call:
                yield resp.event
        finally:
            call.cancel()

    async def get_task(self, task_id: str) -> pb.Task:
        return (await self._stub.GetTask(pb.GetTaskRequest(task_id=task_id), metadata=self._md)).task

    async def cancel(self, task_id: str, reason: str = "") -> pb.Task:
        return (await self._stub.CancelTask(pb.CancelTaskRequest(task_id=task_id, reason=reason), metadata=self._md)).task

    async def respond(self, task_id: str, answer: str) -> pb.Task:
        """Answer a task waiting for a person (its question, or the instruction for a paused task)."""
        req = pb.RespondToTaskRequest(task_id=task_id, answer=answer)
        return (await self._stub.RespondToTask(req, metadata=self._md)).task

    async def pause(self, task_id: str) -> pb.Task:
        """Pause a running task after its current step; returns once it waits for a person (or ended)."""
        return (await self._stub.PauseTask(pb.PauseTaskRequest(task_id=task_id), metadata=self._md)).task

    async def screenshot(self, task_id: str) -> pb.GetTaskScreenshotResponse:
        """A JPEG of the task's page (``.jpeg``) and its URL (``.url``)."""
        return await self._stub.GetTaskScreenshot(pb.GetTaskScreenshotRequest(task_id=task_id), metadata=self._md)

    async def list_tasks(self, limit: int = 100) -> list[pb.Task]:
        return list((await self._stub.ListTasks(pb.ListTasksRequest(limit=limit), metadata=self._md)).tasks)

    async def metrics(self) -> pb.GetMetricsResponse:
        """The raw ``GetMetrics`` reply."""
        return await self._stub.GetMetrics(pb.GetMetricsRequest(), metadata=self._md)

    async def get_metrics(self) -> dict[str, Any]:
        """Metrics in BLAST's dict shape: ``m['tasks']['running']``, ``m['concurrent_browsers']``,
        ``m['memory_usage_gb']``, plus ``open_contexts``, ``total_cost`` and ``usage`` per model."""
        m = await self.metrics()
        return {
            "tasks": {
                "scheduled": m.tasks.scheduled,
                "running": m.tasks.running,
                "completed": m.tasks.completed,
                "failed": m.tasks.failed,
                "cancelled": m.tasks.cancelled,
            },
            "concurrent_browsers": m.concurrent_browsers,
            "open_contexts": m.open_contexts,  # tasks', warm and kept contexts
            "memory_usage_gb": m.memory_usage_gb,
            "total_cost": m.total_cost_usd,
            "usage": {u.model: {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                                "requests": u.requests} for u in m.usage},
        }
