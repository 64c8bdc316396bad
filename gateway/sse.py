"""Server-sent events, and noticing when the client goes away.

``EventStream`` is an ASGI response that sends SSE frames from an async generator
while it listens for ``http.disconnect``. When the client leaves first, it closes the
generator (closing its gRPC call: for a ``RunTask`` stream that cancels the task) and
awaits ``on_disconnect``. It listens for the disconnect itself rather than relying on
the next write failing: a browsing task can go quiet for a long time between events.

``run_unless_disconnected`` does the same for a non-streaming request that waits
for a task to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, AsyncGenerator, Awaitable, Callable, TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

log = logging.getLogger("gateway")

HEARTBEAT_S = 15.0
T = TypeVar("T")


def frame(event: BaseModel, name: str | None = None, exclude_none: bool = True) -> bytes:
    """One SSE frame: ``event: <name>`` (when given) and the event's JSON as ``data``."""
    data = event.model_dump_json(exclude_none=exclude_none)
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {data}\n\n".encode()


def raw_frame(data: str) -> bytes:
    """A frame whose data is already text (``[DONE]``, or an error body as JSON)."""
    return f"data: {data}\n\n".encode()


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class EventStream:
    """An ASGI ``text/event-stream`` response fed by ``frames``."""

    def __init__(self, frames: AsyncGenerator[bytes, None],
                 on_disconnect: Callable[[], Awaitable[None]] | None = None,
                 heartbeat_s: float = HEARTBEAT_S) -> None:
        self.frames = frames
        self.on_disconnect = on_disconnect
        self.heartbeat_s = heartbeat_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),  # tell proxies not to buffer the stream
        ]})
        pump = asyncio.ensure_future(self._pump(send))
        gone = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            await asyncio.wait({pump, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Also reached when the server cancels us on shutdown: stop both, cancel nothing.
            for t in (pump, gone):
                t.cancel()
            await _settle(pump, "the event stream")
            await _settle(gone, "the disconnect watch")
            # Close the producer now, not whenever it is collected: closing it ends its gRPC
            # call, and a foreground task ends with its RunTask call.
            await _settle(asyncio.ensure_future(self.frames.aclose()), "closing the event stream")
        finished = pump.done() and not pump.cancelled()
        if finished or not gone.done() or gone.cancelled():
            # A failed pump (the frame producers report engine errors in-band, so a bug) was
            # logged by _settle; end the body cleanly anyway: the client sees no terminal event.
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if self.on_disconnect is not None:
            await self.on_disconnect()

    async def _pump(self, send: Send) -> None:
        lock = asyncio.Lock()  # a heartbeat must not land inside a frame

        async def beat() -> None:
            while True:
                await asyncio.sleep(self.heartbeat_s)
                async with lock:
                    await send({"type": "http.response.body", "body": b": keep-alive\n\n", "more_body": True})

        beater = asyncio.ensure_future(beat())
        try:
            async for chunk in self.frames:
                async with lock:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            beater.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beater


async def _settle(task: asyncio.Future[Any], what: str) -> None:
    """Wait for a task we cancelled (or that ended). Its cancellation is expected; an error it
    ended with is a bug nobody else will see, so it is logged with its traceback."""
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception:
        log.exception("%s failed", what)


class ClientGone(Exception):
    """The client disconnected before the reply was ready."""


async def run_unless_disconnected(request: Request, work: Awaitable[T],
                                  on_disconnect: Callable[[], Awaitable[None]] | None) -> T:
    """Await ``work``; if the client disconnects first, stop it, await ``on_disconnect``
    and raise ``ClientGone``."""
    job = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_wait_disconnect(request.receive))
    try:
        await asyncio.wait({job, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (job, gone):
            if not t.done():
                t.cancel()
        await _settle(gone, "the disconnect watch")
    if job.done() and not job.cancelled():
        return job.result()
    await _settle(job, "the request's work")
    if on_disconnect is not None:
        await on_disconnect()
    raise ClientGone()
