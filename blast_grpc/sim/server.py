"""The simulated model's HTTP API (Starlette): chat completions, models, health and ``/sim`` controls.

Every route works with and without the ``/v1`` prefix. Bad input gets an OpenAI
error body with status 400 and the server carries on; an unexpected bug in a
handler becomes a 500 error body, never a dead server.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from . import wire
from .faults import HUGE_ANSWER_BYTES, Fault, FaultError, FaultQueue, parse_faults_body
from .latency import LatencyModel
from .protocol import AGENT, EXTRACT, PLAN, ChatRequest, parse_request
from .rules import Decision, answer_extraction, decide_agent, write_plan
from .scenarios import ScenarioSet
from .stats import RequestLog, Stats

POLL_S = 0.05  # how often long waits check for shutdown / client disconnect


@dataclass
class SimState:
    """Everything the routes share. ``closing`` is set on shutdown to end waits and stalls."""

    scenarios: ScenarioSet
    latency: LatencyModel = field(default_factory=LatencyModel)
    faults: FaultQueue = field(default_factory=FaultQueue)
    stats: Stats = field(default_factory=Stats)
    requests: RequestLog = field(default_factory=RequestLog)
    closing: threading.Event = field(default_factory=threading.Event)
    stalled: int = 0  # requests currently held by a stall fault
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def next_id(self) -> int:
        return next(self._ids)


def decide(scenarios: ScenarioSet, req: ChatRequest) -> Decision:
    """Route a parsed request to the agent, extraction or planner logic."""
    if req.kind == AGENT:
        return decide_agent(scenarios, req)
    if req.kind == EXTRACT:
        return answer_extraction(scenarios, req)
    if req.kind == PLAN:
        return write_plan(scenarios, req)
    return Decision(None, content="sim: unrecognised request: no tools, and no 'QUERY:' or "
                                  "'PLAN FOR TASK:' user message")


def _to_reply(decision: Decision, call_id: str) -> wire.Reply:
    """The wire reply; the calls of one reply get ids ``call_id``, ``call_id_1``, ``call_id_2``, ..."""
    if decision.tool is None:
        return wire.Reply(content=decision.content)
    calls = [wire.Call(tool, json.dumps(args), call_id + (f"_{i}" if i else ""))
             for i, (tool, args) in enumerate(decision.calls)]
    return wire.Reply(content=decision.content or None, calls=calls)


def _apply_fault(reply: wire.Reply, fault: Fault | None) -> wire.Reply:
    if fault is None or not reply.calls:
        return reply
    if fault.kind == "malformed_tool_json":
        # Dropping the closing brace makes any JSON object invalid.
        return wire.Reply(reply.content, [wire.Call(c.name, c.arguments[:-1], c.id) for c in reply.calls])
    if fault.kind == "no_tool_call":
        said = "; then ".join(f"{c.name} {c.arguments}" for c in reply.calls)
        return wire.Reply(content=f"I think the next step is {said}.")
    return reply


def _error(status: int, message: str, type_: str, param: str | None = None, code: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(wire.error_body(message, type_, param, code), status_code=status, headers=headers)


def create_app(state: SimState) -> Starlette:
    """The ASGI app serving ``state``."""

    async def pause(seconds: float) -> bool:
        """Sleep, but return False early if the server is shutting down."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if state.closing.is_set():
                return False
            await asyncio.sleep(min(left, POLL_S * 2))
        return not state.closing.is_set()

    async def stall(request: Request | None) -> None:
        """Hold the request until the client goes away (or shutdown). Other requests keep flowing."""
        state.stalled += 1
        try:
            while not state.closing.is_set():
                if request is not None and await request.is_disconnected():
                    return
                await asyncio.sleep(POLL_S)
        finally:
            state.stalled -= 1

    async def chat_completions(request: Request) -> Response:
        try:
            raw = (await request.body()).decode("utf-8")
            state.requests.add(raw)
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            state.stats.record_bad_request()
            return _error(400, "request body is not valid JSON", "invalid_request_error")
        try:
            wire.validate_body(body)
        except wire.RequestError as exc:
            state.stats.record_bad_request()
            return _error(400, str(exc), "invalid_request_error", exc.param)
        req = parse_request(body)
        decision = decide(state.scenarios, req)
        state.stats.record(req.model, req.kind, decision.scenario)
        fault = state.faults.take(req.model, req.kind)
        if fault is not None:
            state.stats.record_fault(fault.kind)
            if fault.kind == "http_429":
                return _error(429, "sim: rate limit reached (injected fault http_429)", "requests",
                              code="rate_limit_exceeded", headers={"retry-after": "0"})
            if fault.kind == "http_500":
                return _error(500, "sim: internal server error (injected fault http_500)", "server_error")
            if fault.kind == "non_json":
                return Response("<!DOCTYPE html><html><body><h1>Welcome to nginx!</h1></body></html>",
                                media_type="text/html")
            if fault.kind == "huge_answer":
                answer = json.dumps({"text": "x" * HUGE_ANSWER_BYTES, "success": True})
                huge = wire.Reply(content=None, calls=[wire.Call("done", answer, "call_sim_huge")])
                return JSONResponse(wire.completion(huge, req.model, "chatcmpl-sim-huge", int(time.time()),
                                                    wire.prompt_tokens(body)))
        n = state.next_id()
        reply = _apply_fault(_to_reply(decision, f"call_sim{n:06d}"), fault)
        id_, created, model = f"chatcmpl-sim{n:06d}", int(time.time()), req.model
        prompt = wire.prompt_tokens(body)
        timing = state.latency.sample(model, reply.completion_tokens(), prompt)
        stalling = fault is not None and fault.kind == "stall"

        if not body.get("stream"):
            if stalling:
                await stall(request)
                # Either the client left (nobody reads this) or the server is stopping.
                return _error(503, "sim: shutting down", "server_error")
            if not await pause(decision.delay + timing.ttft + timing.generation):
                return _error(503, "sim: shutting down", "server_error")
            return JSONResponse(wire.completion(reply, model, id_, created, prompt))

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if not stalling and not await pause(decision.delay + timing.ttft):
            return _error(503, "sim: shutting down", "server_error")

        async def events() -> AsyncIterator[str]:
            deltas = wire.stream_deltas(reply)
            gap = timing.generation / max(1, len(deltas) - 1)
            for i, delta in enumerate(deltas):
                if i and gap and not await pause(gap):
                    return
                yield wire.chunk(id_, created, model, delta, with_usage_field=include_usage)
                if stalling and i == 1:
                    # Mid-stream: the client has a partial reply and waits for the rest.
                    await stall(None)  # Starlette cancels this generator when the client leaves
                    return
            yield wire.chunk(id_, created, model, {}, reply.finish_reason, with_usage_field=include_usage)
            if include_usage:
                yield wire.chunk(id_, created, model, None, usage_=wire.usage(prompt, reply.completion_tokens()))
            yield wire.DONE

        return StreamingResponse(events(), media_type="text/event-stream", headers={"cache-control": "no-cache"})

    async def models(_: Request) -> Response:
        names = ["sim", *[m for m in state.latency.models() if m != "sim"]]
        return JSONResponse({"object": "list", "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "blast-sim"} for m in names]})

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def post_faults(request: Request) -> Response:
        try:
            faults = parse_faults_body(await request.json())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "request body is not valid JSON", "invalid_request_error")
        except FaultError as exc:
            return _error(400, str(exc), "invalid_request_error", exc.param)
        state.faults.add(faults)
        return JSONResponse({"queued": len(faults), "pending": [f.as_dict() for f in state.faults.pending()]})

    async def get_faults(_: Request) -> Response:
        return JSONResponse({"pending": [f.as_dict() for f in state.faults.pending()]})

    async def get_stats(_: Request) -> Response:
        return JSONResponse({**state.stats.snapshot(), "faults_pending": len(state.faults.pending()),
                             "stalled_now": state.stalled})

    async def get_requests(_: Request) -> Response:
        return JSONResponse({"requests": state.requests.snapshot()})

    async def reset(_: Request) -> Response:
        state.stats.reset()
        state.requests.clear()
        state.faults.clear()
        return JSONResponse({"reset": True})

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, f"sim: {exc.detail}", "invalid_request_error")

    async def internal_error(_: Request, exc: Exception) -> Response:
        return _error(500, f"sim: internal error: {type(exc).__name__}: {exc}", "server_error")

    routes = []
    for prefix in ("/v1", ""):
        routes += [
            Route(f"{prefix}/chat/completions", chat_completions, methods=["POST"]),
            Route(f"{prefix}/models", models, methods=["GET"]),
            Route(f"{prefix}/health", health, methods=["GET"]),
        ]
    routes += [
        Route("/sim/faults", post_faults, methods=["POST"]),
        Route("/sim/faults", get_faults, methods=["GET"]),
        Route("/sim/stats", get_stats, methods=["GET"]),
        Route("/sim/requests", get_requests, methods=["GET"]),
        Route("/sim/reset", reset, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: internal_error})
