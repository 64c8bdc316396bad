"""API keys for the gRPC API: ``authorization: Bearer <key>`` metadata on every call.

Keys come from ``settings.api_keys`` and the ``BLAST_API_KEYS`` environment variable
(comma-separated). With no key configured the API is open (and then it should be
bound to loopback: the coordinator warns otherwise). Health checks stay open so
probes need no secret. Keys are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any, AsyncIterator, Awaitable, Callable

import grpc

OPEN_METHODS = ("/grpc.health.v1.Health/",)
log = logging.getLogger("blast_grpc.auth")


def _key_from(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value.lower().startswith("bearer "):
            return value[7:].strip()
        if key == "x-api-key" and isinstance(value, str):
            return value.strip()
    return ""


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    # What the key is called and where it is set, for the refusal's message.
    what = "API key"
    where = "settings.api_keys / BLAST_API_KEYS"

    def __init__(self, keys: list[str]) -> None:
        self._keys = [k.encode() for k in keys]

    def _allowed(self, given: str) -> bool:
        raw = given.encode()
        return any(hmac.compare_digest(raw, k) for k in self._keys)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        given = _key_from(details.invocation_metadata)
        if handler is None or (details.method or "").startswith(OPEN_METHODS) or self._allowed(given):
            return handler
        why = f"wrong {self.what}" if given else f"no {self.what}"
        self.refused(details.method or "", why)
        return _refusing(handler, f"{why}: send metadata 'authorization: Bearer <key>' ({self.where})")

    def refused(self, method: str, why: str) -> None:
        """Called for each refused call (API callers are not logged: the client sees the error)."""


class WorkerTokenInterceptor(ApiKeyInterceptor):
    """The worker token (``settings.worker_token``) between the coordinator and remote workers:
    on the coordinator's worker port and on each remote worker's WorkerService. A refused
    worker is logged, since nobody else would see why a host never joins."""

    what = "worker token"
    where = "settings.worker_token / BLAST_WORKER_TOKEN"

    def refused(self, method: str, why: str) -> None:
        log.warning("refused a worker call to %s: %s", method, why)


def _refusing(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that answers UNAUTHENTICATED."""

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield None  # never reached: abort raises; this makes the function a generator

    kw = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(unary, **kw)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(stream, **kw)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(unary, **kw)
    return grpc.stream_stream_rpc_method_handler(stream, **kw)
