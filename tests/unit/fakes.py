"""In-process stand-ins for browser workers, shaped like the real gRPC stub.

The scheduler talks to a worker through ``WorkerHandle.stub``: ``RunTask(request)`` returns a
call it iterates (``RunTaskResponse`` messages) and cancels, and ``TrimIdle``. A ``FakeStub``
records every ``RunTask`` as a ``FakeCall`` that the test drives: ``complete``, ``fail``,
``step`` put messages on the stream; ``die`` breaks it the way a dead worker's channel does
(``grpc.aio.AioRpcError``). Nothing here starts a process, a socket or Chromium.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import grpc

from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc._proto.blast.worker.v1 import worker_pb2 as wpb
from blast_grpc.coordinator.workers import WorkerHandle

_END = object()


class FakeCall:
    """One ``RunTask`` stream: what the worker would send, as the test decides."""

    def __init__(self, request: wpb.RunTaskRequest, worker_id: str) -> None:
        self.request = request
        self.worker_id = worker_id
        self.cancelled = asyncio.Event()
        self._out: asyncio.Queue[object] = asyncio.Queue()

    @property
    def task_id(self) -> str:
        return self.request.task_id

    def send(self, msg: wpb.RunTaskResponse) -> None:
        self._out.put_nowait(msg)

    def step(self, number: int, action: str = "click") -> None:
        self.send(wpb.RunTaskResponse(step=pb.TaskStep(number=number, action=action)))

    def usage(self, model: str, prompt: int, completion: int) -> None:
        u = pb.Usage(model=model, prompt_tokens=prompt, completion_tokens=completion, requests=1)
        self.send(wpb.RunTaskResponse(usage=wpb.UsageDelta(usage=[u])))

    def complete(self, result: str, success: bool = True) -> None:
        self.send(wpb.RunTaskResponse(completed=pb.TaskCompleted(result=result, success=success)))

    def fail(self, error: str) -> None:
        self.send(wpb.RunTaskResponse(failed=pb.TaskFailed(error=error)))

    def die(self, details: str = "Socket closed") -> None:
        """Break the stream as a worker that died does (UNAVAILABLE)."""
        self._out.put_nowait(grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(),
                                                  grpc.aio.Metadata(), details=details))

    def cancel(self) -> bool:
        self.cancelled.set()
        self._out.put_nowait(_END)
        return True

    def __aiter__(self) -> AsyncIterator[wpb.RunTaskResponse]:
        return self._stream()

    async def _stream(self) -> AsyncIterator[wpb.RunTaskResponse]:
        while True:
            item = await self._out.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, wpb.RunTaskResponse)
            yield item


class FakeStub:
    """A worker's ``WorkerServiceStub`` as far as the scheduler uses it."""

    def __init__(self, worker_id: str, calls: asyncio.Queue[FakeCall]) -> None:
        self.worker_id = worker_id
        self._calls = calls
        self.trims = 0

    def RunTask(self, request: wpb.RunTaskRequest) -> FakeCall:  # noqa: N802 -- the gRPC method's name
        call = FakeCall(request, self.worker_id)
        self._calls.put_nowait(call)
        return call

    async def TrimIdle(self, request: wpb.TrimIdleRequest, timeout: float = 0) -> wpb.TrimIdleResponse:  # noqa: N802
        self.trims += 1
        return wpb.TrimIdleResponse()


class FakeWorkers:
    """A pool of ready fake workers; every ``RunTask`` on any of them lands in ``calls``."""

    def __init__(self, n: int) -> None:
        self.calls: asyncio.Queue[FakeCall] = asyncio.Queue()
        self.handles = [WorkerHandle(worker_id=f"w{i}", address=f"fake:{i}", state=pb.WORKER_STATE_READY)
                        for i in range(1, n + 1)]
        for h in self.handles:
            h.stub = FakeStub(h.worker_id, self.calls)  # type: ignore[assignment]

    def __call__(self) -> list[WorkerHandle]:
        return self.handles

    async def next_call(self, timeout: float = 30.0) -> FakeCall:
        """The next ``RunTask`` the scheduler makes (generous deadline: it comes at once)."""
        return await asyncio.wait_for(self.calls.get(), timeout)

    def pending(self) -> int:
        """Calls made and not yet taken with ``next_call``."""
        return self.calls.qsize()
