"""``Client``: the Python async client of ``blast.v1.BlastService``.

::

    async with Client("127.0.0.1:50051") as client:
        task = await client.run("Find the largest gorilla in Asia on http://...")
        print(task.result)
        async for event in client.run("...", stream=True):
            print(event)

Deadlines: every unary call (``submit``, ``get_task``, ``cancel``, ``list_tasks``,
``metrics``) takes ``timeout`` seconds, defaulting to the client's ``unary_timeout``
(``None``: no deadline), so a wedged coordinator becomes ``DEADLINE_EXCEEDED`` instead of
a hung caller. Streams (``run``, ``watch``) have no default deadline: a browsing task may
take as long as its budget allows; pass ``timeout`` to bound one.
"""

from __future__ import annotations

import os
from typing import Any, AsyncGenerator, AsyncIterator, Literal, overload

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ._proto.blast.v1 import blast_pb2 as pb
from ._proto.blast.v1 import blast_pb2_grpc as bgrpc
from .blast_metrics import blast_metrics
from .states import TERMINAL_EVENTS

# The reason of a task the engine cancelled because it is stopping (a RunTask's queued task,
# or what was left after the drain): nothing is wrong with the task; submit it again.
ENGINE_SHUTDOWN_REASON = "the engine is shutting down"


def make_spec(task: str, initial_url: str = "", previous_task_id: str = "",
              cache_control: list[str] | None = None, metadata: dict[str, str] | None = None,
              model: str = "", client_state: str = "") -> pb.TaskSpec:
    """A ``TaskSpec`` from keyword arguments (see the fields' comments in blast.proto)."""
    return pb.TaskSpec(description=task, initial_url=initial_url, previous_task_id=previous_task_id,
                       cache_control=cache_control or [], metadata=metadata or {}, model=model,
                       client_state=client_state)


_DEFAULT: Any = object()  # "the client's unary_timeout", distinct from None (no deadline)


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
                 metadata: list[tuple[str, str]] | None = None, unary_timeout: float | None = None) -> None:
        """``api_key`` (default: the ``BLAST_API_KEY`` environment variable) is sent as
        ``authorization: Bearer <key>`` on every call. ``unary_timeout``: the default deadline
        of unary calls, in seconds (``None``: none)."""
        self.address = address
        self.unary_timeout = unary_timeout
        key = self.api_key = api_key if api_key is not None else os.environ.get("BLAST_API_KEY", "")
        extra = [*(metadata or []), *([("authorization", f"Bearer {key}")] if key else [])]
        # Added to every call, also those made through ``.stub`` directly.
        interceptors: list[Any] | None = [_UnaryMetadata(extra), _StreamMetadata(extra)] if extra else None
        self._channel = grpc.aio.insecure_channel(address, options=[("grpc.max_send_message_length", 8 << 20)],
                                                  interceptors=interceptors)
        self._stub = bgrpc.BlastServiceStub(self._channel)

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

    def run(self, task: str, *, stream: bool = False, timeout: float | None = None, **kw: Any) -> Any:
        """Run a task. Returns the final ``Task`` record (awaitable), or with ``stream=True``
        an async iterator of its ``TaskEvent``s. Keyword arguments: those of ``make_spec``
        (initial_url, previous_task_id, cache_control, metadata, model, client_state).
        Closing the stream cancels the task. ``timeout`` bounds the whole run."""
        if stream:
            return self.run_spec(make_spec(task, **kw), timeout=timeout)
        return self._run(make_spec(task, **kw), timeout)

    async def run_spec(self, spec: pb.TaskSpec, timeout: float | None = None) -> AsyncGenerator[pb.TaskEvent, None]:
        """``RunTask``: the events of a new task until it ends. The task lives as long as this
        stream: closing it (or its deadline passing) cancels the task. A refused spec raises
        ``grpc.aio.AioRpcError`` (``INVALID_ARGUMENT``, ...) at the first event."""
        call = self._stub.RunTask(pb.RunTaskRequest(spec=spec), timeout=timeout)
        try:
            async for resp in call:
                yield resp.event
        finally:
            call.cancel()

    async def _run(self, spec: pb.TaskSpec, timeout: float | None) -> pb.Task:
        task_id = ""
        async for ev in self.run_spec(spec, timeout):
            task_id = ev.task_id if not ev.parent_task_id else task_id
            if ev.WhichOneof("kind") in TERMINAL_EVENTS and not ev.parent_task_id:
                break
        return await self.get_task(task_id)

    def _deadline(self, timeout: float | None) -> float | None:
        return self.unary_timeout if timeout is _DEFAULT else timeout

    async def submit(self, task: str, *, timeout: float | None = _DEFAULT, **kw: Any) -> pb.Task:
        """Queue a task; returns its record (with ``task_id``) at once. Keyword arguments: those
        of ``make_spec``."""
        return await self.submit_spec(make_spec(task, **kw), timeout=timeout)

    async def submit_spec(self, spec: pb.TaskSpec, *, timeout: float | None = _DEFAULT) -> pb.Task:
        """``SubmitTask``: queue ``spec``; its record (with the new ``task_id``)."""
        resp = await self._stub.SubmitTask(pb.SubmitTaskRequest(spec=spec), timeout=self._deadline(timeout))
        return resp.task

    async def watch(self, task_id: str, from_seq: int = 1,
                    timeout: float | None = None) -> AsyncGenerator[pb.TaskEvent, None]:
        """A task's events from ``from_seq`` on, until it ends."""
        call = self._stub.WatchTask(pb.WatchTaskRequest(task_id=task_id, from_seq=from_seq), timeout=timeout)
        try:
            async for resp in call:
                yield resp.event
        finally:
            call.cancel()

    async def get_task(self, task_id: str, *, timeout: float | None = _DEFAULT) -> pb.Task:
        """``GetTask``: a task's current record."""
        return (await self._stub.GetTask(pb.GetTaskRequest(task_id=task_id), timeout=self._deadline(timeout))).task

    async def cancel(self, task_id: str, reason: str = "", *, timeout: float | None = _DEFAULT) -> pb.Task:
        """``CancelTask``: cancel a queued or running task (FAILED_PRECONDITION once it ended)."""
        resp = await self._stub.CancelTask(pb.CancelTaskRequest(task_id=task_id, reason=reason),
                                           timeout=self._deadline(timeout))
        return resp.task

    async def respond(self, task_id: str, answer: str, *, timeout: float | None = _DEFAULT) -> pb.Task:
        """``RespondToTask``: answer a task waiting for a person (its question, or the instruction
        for a paused task)."""
        req = pb.RespondToTaskRequest(task_id=task_id, answer=answer)
        return (await self._stub.RespondToTask(req, timeout=self._deadline(timeout))).task

    async def pause(self, task_id: str, *, timeout: float | None = _DEFAULT) -> pb.Task:
        """``PauseTask``: pause a running task after its current step; returns once it waits for a
        person (or ended)."""
        return (await self._stub.PauseTask(pb.PauseTaskRequest(task_id=task_id), timeout=self._deadline(timeout))).task

    async def screenshot(self, task_id: str, *, timeout: float | None = _DEFAULT) -> pb.GetTaskScreenshotResponse:
        """``GetTaskScreenshot``: a JPEG of the task's page (``.jpeg``) and its URL (``.url``)."""
        return await self._stub.GetTaskScreenshot(pb.GetTaskScreenshotRequest(task_id=task_id),
                                                  timeout=self._deadline(timeout))

    async def list_tasks(self, limit: int = 100, *, timeout: float | None = _DEFAULT) -> list[pb.Task]:
        """``ListTasks``: up to ``limit`` tasks, newest first."""
        resp = await self._stub.ListTasks(pb.ListTasksRequest(limit=limit), timeout=self._deadline(timeout))
        return list(resp.tasks)

    async def health(self, service: str = "blast.v1.BlastService", timeout: float | None = None) -> int:
        """The coordinator's ``grpc.health.v1`` status for ``service`` (``HealthCheckResponse.SERVING``
        while it takes tasks; NOT_SERVING once it drains). Cheap: no worker is asked."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        return int(reply.status)

    async def metrics(self, *, timeout: float | None = _DEFAULT) -> pb.GetMetricsResponse:
        """The raw ``GetMetrics`` reply."""
        return await self._stub.GetMetrics(pb.GetMetricsRequest(), timeout=self._deadline(timeout))

    async def get_metrics(self) -> dict[str, Any]:
        """Metrics in BLAST's dict shape and units (``blast_metrics.py``): ``m['tasks']['running']``,
        ``m['concurrent_browsers']``, ``m['memory_usage_gb']`` (GiB), ``m['total_cost']``, plus
        token, call and time totals and ``usage`` per model."""
        return blast_metrics(await self.metrics())
