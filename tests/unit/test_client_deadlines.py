"""``Client``'s deadlines, against a coordinator stand-in that accepts calls and never answers
(a real gRPC server on loopback; its servicer is the fake)."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from blast_grpc import Client
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc._proto.blast.v1 import blast_pb2_grpc as bgrpc

pytestmark = pytest.mark.asyncio


class Wedged(bgrpc.BlastServiceServicer):
    """Holds every call until the client gives up; records the deadline each call came with."""

    def __init__(self) -> None:
        self.deadlines: list[float | None] = []
        self.specs: list[pb.TaskSpec] = []

    async def _hold(self, context: grpc.aio.ServicerContext) -> None:
        self.deadlines.append(context.time_remaining())
        await asyncio.Event().wait()

    async def GetTask(self, request: pb.GetTaskRequest, context: grpc.aio.ServicerContext) -> pb.GetTaskResponse:
        await self._hold(context)
        raise AssertionError("unreachable")

    async def SubmitTask(self, request: pb.SubmitTaskRequest,
                         context: grpc.aio.ServicerContext) -> pb.SubmitTaskResponse:
        self.specs.append(request.spec)
        await self._hold(context)
        raise AssertionError("unreachable")

    async def RunTask(self, request: pb.RunTaskRequest,
                      context: grpc.aio.ServicerContext) -> AsyncIterator[pb.RunTaskResponse]:
        self.specs.append(request.spec)
        yield pb.RunTaskResponse(event=pb.TaskEvent(task_id="t1", seq=1, scheduled=pb.TaskScheduled()))
        await self._hold(context)


@pytest_asyncio.fixture
async def wedged() -> AsyncIterator[tuple[Wedged, str]]:
    servicer = Wedged()
    server = grpc.aio.server()
    bgrpc.add_BlastServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


async def test_unary_calls_carry_the_default_deadline(wedged: tuple[Wedged, str]) -> None:
    servicer, address = wedged
    async with Client(address, unary_timeout=0.5) as client:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await client.get_task("t1")
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await client.submit("find it", model="gpt-4.1-mini", client_state='{"api":"chat"}')
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # time_remaining() may read a hair above the deadline it was given; a missing deadline is None
    assert all(d is not None and d < 1 for d in servicer.deadlines), servicer.deadlines
    assert (servicer.specs[0].model, servicer.specs[0].client_state) == ("gpt-4.1-mini", '{"api":"chat"}')


async def test_a_per_call_timeout_overrides_the_default(wedged: tuple[Wedged, str]) -> None:
    servicer, address = wedged
    async with Client(address) as client:  # no default deadline
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await client.get_task("t1", timeout=0.5)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert servicer.deadlines and servicer.deadlines[0] is not None and servicer.deadlines[0] < 1


async def test_streams_have_no_default_deadline(wedged: tuple[Wedged, str]) -> None:
    # A browsing task may run as long as its budget allows: unary_timeout does not bound RunTask.
    servicer, address = wedged
    async with Client(address, unary_timeout=0.5) as client:
        stream = client.run("find it", stream=True)
        first = await anext(stream)
        assert first.task_id == "t1" and servicer.deadlines == [None]
        await stream.aclose()
        with pytest.raises(grpc.aio.AioRpcError) as e:
            async for _ in client.run("find it", stream=True, timeout=0.5):
                pass
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
