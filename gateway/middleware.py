"""ASGI middleware: bearer API keys, the request body limit, and answers cut off by shutdown.

All are plain ASGI (not ``BaseHTTPMiddleware``) so streamed responses and the
disconnect signal pass through untouched. Keys are compared in constant time and
never logged or echoed.
"""

from __future__ import annotations

import asyncio
from typing import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from blast_grpc.access import bearer_allowed

from .errors import ApiError

# Probes stay open so an orchestrator can check the gateway without a key; so does the
# OpenAPI document (it says what a key is needed for, and holds nothing secret).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/ping", "/health", "/openapi.json", "/v1/openapi.json"})

# A client that sent a too-large body is still writing it when the 413 goes out; reading
# (and discarding) the rest up to this much lets it see the 413 instead of a reset.
DRAIN_LIMIT = 64 * 1024 * 1024


class ApiKeyMiddleware:
    """Answers 401 unless ``Authorization: Bearer <key>`` names one of ``keys``.

    With no keys configured every request passes (the gateway binds to loopback by
    default)."""

    def __init__(self, app: ASGIApp, keys: Iterable[str], drain_limit: int = 0) -> None:
        self.app = app
        self.keys = [k.encode() for k in keys if k]
        self.drain_limit = drain_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"")
        if bearer_allowed(header, self.keys):
            await self.app(scope, receive, send)
            return
        message = ("Missing bearer authentication in header: send 'Authorization: Bearer <API key>'."
                   if not header else "Incorrect API key provided.")
        err = ApiError(401, message, code="invalid_api_key")
        response = err.response()
        response.headers["www-authenticate"] = "Bearer"
        await _drain(receive, self.drain_limit)
        await response(scope, receive, send)


class RequestTooLarge(ApiError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(413, f"The request body is {size} bytes; the limit is {limit} bytes "
                         "(settings.max_request_bytes).", code="request_too_large")


class BodyLimitMiddleware:
    """Answers 413 to a body larger than ``limit`` bytes: at once when Content-Length says
    so, otherwise when the streamed body crosses the limit (raised from ``receive``)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _drain(receive, DRAIN_LIMIT)
            await RequestTooLarge(int(declared), self.limit).response()(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise RequestTooLarge(seen, self.limit)
            return message

        await self.app(scope, counted, send)


class ShutdownMiddleware:
    """When the server gives up waiting for a request at shutdown (uvicorn cancels it after its
    graceful timeout), answer 503 in OpenAI's shape instead of uvicorn's plain-text 500.

    The task behind the request is not cancelled: it runs on in the engine, and a client can
    read its outcome later (``GET /v1/responses/resp_<task id>``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            if not started:
                err = ApiError(503, "The gateway is shutting down and stopped waiting for this request before its "
                               "task ended; the task goes on in the engine. Retry shortly.", type="server_error",
                               code="gateway_shutting_down")
                response = err.response()
                response.headers["connection"] = "close"
                await response(scope, receive, send)
            raise


async def _drain(receive: Receive, limit: int) -> None:
    """Read and drop the request body (up to ``limit`` bytes)."""
    total = 0
    while total <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        total += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
