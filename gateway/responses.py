"""``/v1/responses``: create (streamed or not, in the background or not), retrieve, cancel, delete.

A response is a task: its id is ``resp_`` + the task id, and everything shown
about it is rebuilt from the coordinator's record and event log. See ``events.py``
for how a task's progress appears in a response.

A foreground create (streamed or not) runs its task with ``RunTask`` (``Backend.start``):
when the client goes away the gateway closes that stream, and the engine cancels the task;
if the gateway itself dies, its gRPC connection closes and the task goes with it. A
``background`` create uses ``SubmitTask``: the task outlives the connection.

Deleting: the engine keeps every task and has no delete, so ``DELETE`` cancels the
task if it is still queued or running and answers ``{"id", "object":
"response.deleted", "deleted": true}``; the record stays retrievable.
"""

from __future__ import annotations

import contextlib
import re
from typing import AsyncGenerator

import grpc
from openai.types.responses import Response, ResponseErrorEvent, ResponseStreamEvent
from starlette.requests import Request
from starlette.responses import Response as HttpResponse
from starlette.routing import Route

from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.client import ENGINE_SHUTDOWN_REASON
from blast_grpc.states import TERMINAL_STATES

from .backend import Backend
from .convert import STATUS, response_id, seconds, tree_tokens
from .errors import ApiError, engine_stopped, from_grpc, invalid
from .events import ResponseBase, ResponseEvents
from .human import TurnEvents, answer_turn, split_turn, turn_base
from .sse import ClientGone, EventStream, frame, run_unless_disconnected
from .state import json_response, read_json, state
from .submission import RESPONSES_PARAMS, responses_submission

TERMINAL_EVENT_TYPES = ("response.completed", "response.failed", "response.incomplete")


async def stream_events(backend: Backend, tr: ResponseEvents,
                        source: AsyncGenerator[pb.TaskEvent, None] | None = None
                        ) -> AsyncGenerator[ResponseStreamEvent, None]:
    """Every stream event of the response ``tr`` builds, from ``response.created`` to its end.

    ``source``: the task's events (a ``RunTask`` stream, closed here); default: watch the
    task (``WatchTask``). Engine errors after the stream started can only be reported
    in-band, as an ``error`` event that ends the stream."""
    root_id = tr.tree.root_id
    for e in tr.start():
        yield e
    try:
        async with contextlib.aclosing(source or backend.watch(root_id)) as task_events:
            async for ev in task_events:
                for e in tr.feed(ev):
                    yield e
                if tr.end is not None:
                    break
        if tr.end is None:
            raise ApiError(503, "the engine ended the task's event stream before the task ended",
                           type="server_error", code="engine_unavailable")
        root = await backend.get(root_id)
        for e in tr.finish(root, tree_tokens(root)):
            yield e
    except (grpc.aio.AioRpcError, ApiError) as exc:
        err = from_grpc(exc) if isinstance(exc, grpc.aio.AioRpcError) else exc
        yield ResponseErrorEvent(type="error", sequence_number=tr.next_seq(), code=err.code, message=err.message)


async def _frames(events: AsyncGenerator[ResponseStreamEvent, None], starting_after: int = -1
                  ) -> AsyncGenerator[bytes, None]:
    async with contextlib.aclosing(events):
        async for e in events:
            if e.sequence_number > starting_after:
                yield frame(e, e.type)


async def _final(backend: Backend, tr: ResponseEvents,
                 source: AsyncGenerator[pb.TaskEvent, None] | None = None) -> Response:
    """Run the response to its end and return it (the non-streaming create)."""
    last: ResponseStreamEvent | None = None
    async with contextlib.aclosing(stream_events(backend, tr, source)) as events:
        async for e in events:
            last = e
    if isinstance(last, ResponseErrorEvent):
        raise ApiError(503, last.message, type="server_error", code=last.code)
    if tr.end is not None and tr.end.HasField("cancelled") and tr.end.cancelled.reason == ENGINE_SHUTDOWN_REASON:
        raise engine_stopped()  # not the client's doing: a 503 to retry, as for a refused submit
    assert last is not None and last.type in TERMINAL_EVENT_TYPES
    return last.response  # type: ignore[union-attr]


def _response_id(request: Request) -> str:
    """The ``{response_id}`` of the path. Ids are opaque and may hold a slash (the routes take
    the rest of the path), but ``GET``/``DELETE`` on ``.../{id}/cancel`` is the cancel URL with
    the wrong method, not a response named ``{id}/cancel``."""
    rid: str = request.path_params["response_id"]
    if rid.endswith("/cancel") and request.method != "POST":
        raise ApiError(405, f"Method not allowed ({request.method} {request.url.path}): cancel a response "
                       "with POST.", code="method_not_allowed")
    return rid


def _not_found(rid: str) -> ApiError:
    return ApiError(404, f"No response found with id {rid[:200]!r}.", param="response_id", code="not_found")


async def _get_task(backend: Backend, rid: str) -> pb.Task:
    try:
        return await backend.get(split_turn(rid)[0])  # resp_T or a later turn of T, resp_T~SEQ (human.py)
    except grpc.aio.AioRpcError as exc:
        if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            raise _not_found(rid) from None
        raise


async def create(request: Request) -> HttpResponse | EventStream:
    """``POST /v1/responses``; one whose input answers an ``ask_human`` call continues that task (human.py)."""
    st = state(request)
    body = await read_json(request)
    turn = await answer_turn(st.backend, body, st.models)
    if turn is not None:  # the answer to an ask_human call: the task runs on; watch its next turn
        req, task, tr = turn

        async def cancel() -> None:
            await st.backend.cancel_quietly(task.task_id, "the client closed the connection")

        on_disconnect = None if req.background else cancel
        if req.stream:
            return EventStream(_frames(stream_events(st.backend, tr)), on_disconnect=on_disconnect)
        if req.background:
            return json_response(tr.snapshot(STATUS[task.state]))
        try:
            return json_response(await run_unless_disconnected(request, _final(st.backend, tr), on_disconnect))
        except ClientGone:
            return HttpResponse(status_code=499)
    sub = responses_submission(body, st.models)
    req, model, spec, prev = sub.request, sub.model, sub.spec, sub.request.previous_response_id

    def base(task_id: str, created_at: int) -> ResponseBase:
        return ResponseBase(id=response_id(task_id), created_at=created_at, model=model,
                            instructions=req.instructions, metadata=req.metadata, previous_response_id=prev,
                            background=req.background)

    try:
        if req.background:  # it outlives its connection: SubmitTask, then watch it
            task = await st.backend.submit(spec)
        else:  # the task lives as long as this request's RunTask stream
            run = await st.backend.start(spec)
    except grpc.aio.AioRpcError as exc:
        raise from_grpc(exc, RESPONSES_PARAMS) from None
    if req.background:
        tr = TurnEvents(base(task.task_id, seconds(task.created_at)), task.task_id)
        if req.stream:
            return EventStream(_frames(stream_events(st.backend, tr)))
        return json_response(tr.snapshot(STATUS[task.state]))
    tr = TurnEvents(base(run.task_id, seconds(run.first.time)), run.task_id)
    # Leaving closes the RunTask stream (EventStream closes its frames; run_unless_disconnected
    # cancels _final), which cancels the task: nothing more to do on disconnect. A turn that ends
    # with an ask_human call closes it too, and the task waits on: the coordinator does not
    # cancel a RunTask's task that waits for a person (service.py).
    if req.stream:
        return EventStream(_frames(stream_events(st.backend, tr, run.events)), on_disconnect=run.aclose)
    try:
        return json_response(await run_unless_disconnected(request, _final(st.backend, tr, run.events), run.aclose))
    except ClientGone:
        return HttpResponse(status_code=499)  # nobody is listening; the status only shows in logs


async def _current(backend: Backend, task: pb.Task, base: ResponseBase, after: int = 0) -> Response:
    """The response of ``task`` as it stands (final when the task has ended); ``after``: a later turn's."""
    tr = TurnEvents(base, task.task_id, after)
    for ev in await backend.events_so_far(task):
        tr.feed(ev)
    if task.state not in TERMINAL_STATES and tr.end is None:  # tr.end: a question ended the turn
        return tr.snapshot(STATUS[task.state])
    return tr.final(task, tree_tokens(task))


_INTEGER = re.compile(r"-?[0-9]{1,18}")


def _starting_after(request: Request) -> int:
    raw = request.query_params.get("starting_after")
    if raw is None:
        return -1
    if not _INTEGER.fullmatch(raw):
        raise invalid("starting_after", f"Invalid value for 'starting_after': {raw[:50]!r} is not an integer "
                      "(a sequence number, at most 18 digits).")
    return int(raw)


async def retrieve(request: Request) -> HttpResponse | EventStream:
    """``GET /v1/responses/{id}``; with ``?stream=true`` the response's events are replayed
    (after ``starting_after``) and then followed live. Leaving such a stream cancels nothing."""
    st = state(request)
    rid = _response_id(request)
    stream = request.query_params.get("stream", "false").lower()
    if stream not in ("true", "false"):
        raise invalid("stream", f"Invalid value for 'stream': {stream[:20]!r}; expected true or false.")
    after = _starting_after(request)
    task = await _get_task(st.backend, rid)
    base, turn = await turn_base(st.backend, task, ResponseBase.of_task(task, st.default_model), rid)
    if stream == "true":
        return EventStream(_frames(stream_events(st.backend, TurnEvents(base, task.task_id, turn)), after))
    return json_response(await _current(st.backend, task, base, turn))


async def cancel(request: Request) -> HttpResponse:
    """``POST /v1/responses/{id}/cancel``: cancels a queued or running response. Cancelling a
    cancelled response returns it again; a completed or failed one is a 409."""
    st = state(request)
    rid = request.path_params["response_id"]
    task = await _get_task(st.backend, rid)
    if task.state not in TERMINAL_STATES:
        try:
            task = await st.backend.cancel(task.task_id, "cancelled through the gateway")
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            task = await st.backend.get(task.task_id)  # it ended meanwhile
    if task.state != pb.TASK_STATE_CANCELLED:
        raise ApiError(409, f"Response {rid[:200]!r} already ended ({STATUS[task.state]}); only queued or "
                       "in-progress responses can be cancelled.", code="response_already_ended")
    return json_response(await _current(st.backend, task, ResponseBase.of_task(task, st.default_model)))


async def delete(request: Request) -> HttpResponse:
    """``DELETE /v1/responses/{id}``: cancels the task if it still runs (the engine keeps its record)."""
    st = state(request)
    rid = _response_id(request)
    task = await _get_task(st.backend, rid)
    if task.state not in TERMINAL_STATES:
        await st.backend.cancel_quietly(task.task_id, "deleted through the gateway")
    return json_response({"id": rid, "object": "response.deleted", "deleted": True})


def routes() -> list[Route]:
    """The Responses routes, relative to the API root."""
    return [
        Route("/responses", create, methods=["POST"]),
        # Ids are opaque: one with a slash (".../a/b") is an unknown id (404), not an unknown URL
        # (see _response_id).
        Route("/responses/{response_id:path}/cancel", cancel, methods=["POST"]),
        Route("/responses/{response_id:path}", retrieve, methods=["GET"]),
        Route("/responses/{response_id:path}", delete, methods=["DELETE"]),
    ]
