"""``/v1/chat/completions``: the last user message is the task; the answer is the reply.

The chat format has no place for progress, so a streamed reply sends the assistant
role at once, SSE comments as heartbeats while the browser works, then the answer
in pieces, ``finish_reason: "stop"``, the usage chunk (with
``stream_options.include_usage``) and ``[DONE]``.

A task the engine cancelled because it is stopping (``RunTask`` ties a queued task to
its request) is a 503 ``engine_unavailable``, retryable: nothing is wrong with the task.
Any other task that fails or is cancelled has no answer: without streaming that is a 500
(``code`` ``task_failed`` / ``task_cancelled``, marked not retryable, since a retry
would rerun the whole browsing task); in a stream it is an ``{"error": ...}`` chunk,
which the SDKs raise as ``APIError``. An agent that gives up (``done(success=False)``)
is reported the same way, with ``code`` ``task_unsuccessful`` and the agent's
explanation in the message: the chat format's ``finish_reason`` (``stop``, ``length``,
``content_filter``, ``tool_calls``) has no value for "the task cannot be done", and a
``stop`` would read as an answer.

The task runs with ``RunTask`` (``Backend.start``): closing the connection closes that
stream, and the engine cancels the task.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import AsyncGenerator

import grpc
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta
from starlette.requests import Request
from starlette.responses import Response as HttpResponse
from starlette.routing import Route

from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.client import ENGINE_SHUTDOWN_REASON

from .backend import Backend, Run, is_root_end
from .convert import Tokens, chat_id, chunk_text, completion_usage, seconds, tree_tokens
from .errors import ApiError, engine_stopped, from_grpc
from .sse import ClientGone, EventStream, frame, raw_frame, run_unless_disconnected
from .state import json_response, read_json, state
from .submission import CHAT_PARAMS, chat_submission, include_usage


@dataclass
class Outcome:
    """How the task ended (its terminal event) and the tokens its tree used (``Task.tree_usage``)."""

    end: pb.TaskEvent
    tokens: Tokens


async def run_to_end(backend: Backend, run: Run) -> Outcome:
    """Follow the task until it ends."""
    root_id = run.task_id
    async with contextlib.aclosing(run.events) as events:
        async for ev in events:
            if is_root_end(ev, root_id):
                return Outcome(ev, tree_tokens(await backend.get(root_id)))
    raise ApiError(503, "the engine ended the task's event stream before the task ended",
                   type="server_error", code="engine_unavailable")


def task_error(end: pb.TaskEvent) -> ApiError | None:
    """The error for a task that ended without an answer (or whose agent gave up); ``None``
    for an answer."""
    if end.HasField("completed"):
        if end.completed.success:
            return None
        return ApiError(500, f"The agent could not do the task: {end.completed.result or 'it gave no reason'}",
                        type="server_error", code="task_unsuccessful", retry=False)
    if end.HasField("cancelled") and end.cancelled.reason == ENGINE_SHUTDOWN_REASON:
        return engine_stopped()
    if end.HasField("failed"):
        return ApiError(500, f"The task failed: {end.failed.error}", type="server_error", code="task_failed",
                        retry=False)
    return ApiError(500, f"The task was cancelled: {end.cancelled.reason}", type="server_error",
                    code="task_cancelled", retry=False)


@dataclass
class _Reply:
    id: str
    created: int
    model: str

    def chunk(self, delta: ChoiceDelta | None = None, finish: bool = False, tokens: Tokens | None = None
              ) -> ChatCompletionChunk:
        choices = [] if delta is None else [ChunkChoice(index=0, delta=delta, finish_reason="stop" if finish else None)]
        return ChatCompletionChunk(id=self.id, object="chat.completion.chunk", created=self.created, model=self.model,
                                   choices=choices, usage=completion_usage(tokens) if tokens is not None else None)

    def completion(self, answer: str, tokens: Tokens) -> ChatCompletion:
        message = ChatCompletionMessage(role="assistant", content=answer)
        return ChatCompletion(id=self.id, object="chat.completion", created=self.created, model=self.model,
                              choices=[Choice(index=0, finish_reason="stop", message=message)],
                              usage=completion_usage(tokens))


async def _chunks(backend: Backend, run: Run, reply: _Reply, with_usage: bool) -> AsyncGenerator[bytes, None]:
    yield frame(reply.chunk(ChoiceDelta(role="assistant", content="")))
    try:
        outcome = await run_to_end(backend, run)
    except (grpc.aio.AioRpcError, ApiError) as exc:
        err = from_grpc(exc) if isinstance(exc, grpc.aio.AioRpcError) else exc
        yield raw_frame(json.dumps(err.body()))
        yield raw_frame("[DONE]")
        return
    error = task_error(outcome.end)
    if error is None:
        for piece in chunk_text(outcome.end.completed.result):
            yield frame(reply.chunk(ChoiceDelta(content=piece)))
        yield frame(reply.chunk(ChoiceDelta(), finish=True))
        if with_usage:
            yield frame(reply.chunk(tokens=outcome.tokens))
    else:
        yield raw_frame(json.dumps(error.body()))
    yield raw_frame("[DONE]")


async def create(request: Request) -> HttpResponse | EventStream:
    """``POST /v1/chat/completions``."""
    st = state(request)
    sub = chat_submission(await read_json(request), st.models)
    req, model, spec = sub.request, sub.model, sub.spec
    with_usage = include_usage(req)
    try:
        run = await st.backend.start(spec)
    except grpc.aio.AioRpcError as exc:
        raise from_grpc(exc, CHAT_PARAMS) from None
    reply = _Reply(chat_id(run.task_id), seconds(run.first.time), model)
    # Leaving closes the RunTask stream, which cancels the task (run.aclose: also when the
    # client left before the stream read any event).
    if req.stream:
        return EventStream(_chunks(st.backend, run, reply, with_usage), on_disconnect=run.aclose)
    try:
        outcome = await run_unless_disconnected(request, run_to_end(st.backend, run), run.aclose)
    except ClientGone:
        return HttpResponse(status_code=499)
    error = task_error(outcome.end)
    if error is not None:
        raise error
    return json_response(reply.completion(outcome.end.completed.result, outcome.tokens))


def routes() -> list[Route]:
    """The chat routes, relative to the API root."""
    return [Route("/chat/completions", create, methods=["POST"])]
