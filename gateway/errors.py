"""Errors as OpenAI shapes them: ``{"error": {"message", "type", "param", "code"}}``.

Everything that goes wrong in the gateway ends up as an ``ApiError``; this module
holds the one mapping from gRPC status codes to HTTP statuses, and the formatting
of request validation errors. The official SDKs read ``error.message`` etc. from the
body and pick the exception class (``BadRequestError``, ``NotFoundError``, ...) from
the HTTP status.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any, Mapping

import grpc
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import Response

log = logging.getLogger("gateway")

# gRPC status -> (HTTP status, OpenAI error type, error code).
_GRPC_TO_HTTP: dict[grpc.StatusCode, tuple[int, str, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error", "invalid_value"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "invalid_request_error", "invalid_value"),
    grpc.StatusCode.NOT_FOUND: (404, "invalid_request_error", "not_found"),
    grpc.StatusCode.FAILED_PRECONDITION: (409, "invalid_request_error", "conflict"),
    # The gateway calls the engine with its own key, never the client's: a refusal is a setup
    # problem of the gateway (which key it sends), not something the client can fix.
    grpc.StatusCode.UNAUTHENTICATED: (500, "server_error", "engine_auth_failed"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error", "rate_limit_exceeded"),
    grpc.StatusCode.UNAVAILABLE: (503, "server_error", "engine_unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "server_error", "engine_timeout"),
}

# Statuses a retry cannot fix. The SDKs retry 409 and 5xx by default; ``x-should-retry:
# false`` tells them not to (a 409 here is a state conflict, not a lock timeout).
_NO_RETRY = {409}


class ErrorDetail(BaseModel):
    """What went wrong (the ``error`` member of every error body)."""

    model_config = ConfigDict(extra="forbid", title="ErrorDetail")

    message: str = Field(min_length=1, description="What is wrong, for a person to read.")
    type: str = Field(description="`invalid_request_error`, `rate_limit_error` or `server_error`.")
    param: str | None = Field(description="The request parameter at fault (`input[0].content`), if one is.")
    code: str | None = Field(description="A stable, machine-readable reason (`unknown_parameter`, `not_found`, ...).")


class ErrorResponse(BaseModel):
    """The body of every non-2xx answer: ``{"error": {"message", "type", "param", "code"}}``."""

    model_config = ConfigDict(extra="forbid", title="Error")

    error: ErrorDetail


class ApiError(Exception):
    """An error answered with ``status`` and an OpenAI-shaped body."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, retry: bool | None = None,
                 retry_after: str | None = None) -> None:
        if not message:
            message = _reason(status)
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.retry = retry if retry is not None else (None if status not in _NO_RETRY else False)
        self.retry_after = retry_after  # seconds, sent as the Retry-After header (429, 503)

    def body(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {...}}`` (an ``ErrorResponse``)."""
        detail = ErrorDetail(message=self.message, type=self.type, param=self.param, code=self.code)
        return ErrorResponse(error=detail).model_dump()

    def headers(self) -> dict[str, str]:
        out = {} if self.retry is None else {"x-should-retry": "true" if self.retry else "false"}
        if self.retry_after is not None:
            out["retry-after"] = self.retry_after
        return out

    def response(self) -> Response:
        """The HTTP response for this error."""
        # Messages quote client input; "replace" keeps a stray surrogate from turning an error into a crash.
        content = json.dumps(self.body(), ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")
        return Response(content, status_code=self.status, headers=self.headers(), media_type="application/json")


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def from_grpc(exc: grpc.aio.AioRpcError, params: Mapping[str, str] | None = None) -> ApiError:
    """Translate a coordinator error. ``params`` maps the TaskSpec field a message starts
    with (``spec.description``) to the request parameter it came from (``input``)."""
    code = exc.code()
    details = exc.details() or ""
    mapped = _GRPC_TO_HTTP.get(code)
    if mapped is None:
        # Unknown to this mapping: the details may be internal; log them, answer generically.
        log.error("coordinator error %s: %s", code.name, details)
        return ApiError(500, "internal error", type="server_error", code="internal_error")
    status, err_type, err_code = mapped
    details = details or f"the engine answered {code.name}"
    param = None
    for field, name in (params or {}).items():
        if details.startswith(field):
            param = name
            details = f"{name}: {details}"
            break
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return ApiError(status, f"the engine refused the gateway's own API key ({details}); give the gateway a key "
                        "the coordinator accepts (BLAST_API_KEY, or settings.api_keys / BLAST_API_KEYS shared "
                        "with it)", type=err_type, code=err_code, retry=False)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        # The coordinator's hint travels as gRPC trailing metadata; HTTP clients (and the SDKs'
        # retry logic) read it from the Retry-After header.
        return ApiError(status, details, type=err_type, param=param, code=err_code,
                        retry_after=_retry_after(exc))
    if code == grpc.StatusCode.UNAVAILABLE:
        details = f"the engine is unavailable: {details}"
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        details = f"the engine did not answer in time: {details}"
    return ApiError(status, details, type=err_type, param=param, code=err_code)


def _retry_after(exc: grpc.aio.AioRpcError) -> str | None:
    """The ``retry-after`` trailer of a coordinator error (whole seconds), if it sent one."""
    for key, value in exc.trailing_metadata() or ():
        if key == "retry-after" and isinstance(value, str) and value.strip().isdigit():
            return value.strip()
    return None


def _param(loc: tuple[int | str, ...]) -> str:
    """``('input', '~list', 0, '~message', 'content')`` → ``input[0].content``: union tags
    (``~...``, see protocol.py) are dropped."""
    out = ""
    for part in loc:
        if isinstance(part, str) and (part.startswith("~") or part == "[key]"):
            continue  # a union's tag; "[key]": the error is about the key just named
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def from_validation(exc: ValidationError) -> ApiError:
    """The first problem pydantic found in a request body, as a 400 naming the parameter."""
    err = exc.errors()[0]
    param = _param(tuple(err["loc"]))
    if err["type"] == "missing":
        return ApiError(400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    if err["type"] == "extra_forbidden":
        return ApiError(400, f"Unknown parameter: '{param}'.", param=param, code="unknown_parameter")
    msg = str(err["msg"]).removeprefix("Value error, ")
    got = _json_type(err.get("input"))
    if err["loc"] and err["loc"][-1] == "[key]":
        return ApiError(400, f"Invalid key in '{param.rsplit('.', 1)[0]}': {msg}.", param=param, code="invalid_value")
    if err["type"] == "invalid_type":  # a union of JSON types that the value is none of
        return ApiError(400, f"Invalid type for '{param}': {msg} (got {got}).", param=param, code="invalid_type")
    if err["type"] == "unsupported_type":  # an item or content part whose "type" is not taken
        value = err.get("input")
        kind = value.get("type") if isinstance(value, dict) else None
        return ApiError(400, f"Unsupported type {str(kind)[:50]!r} at '{param}.type': {msg}.", param=f"{param}.type",
                        code="unsupported_value")
    if err["type"] == "unsupported_parameter":
        return ApiError(400, f"{msg}.", param=param, code="unsupported_parameter")
    return ApiError(400, f"Invalid value for '{param}': {msg} (got {got}).", param=param, code="invalid_value")


def engine_stopped() -> ApiError:
    """A foreground task the engine cancelled because it is shutting down: a 503 to retry
    (elsewhere, or once the engine is back); the task itself was fine."""
    return ApiError(503, "The engine is shutting down and cancelled the task; submit it again.",
                    type="server_error", code="engine_unavailable", retry=True)


def invalid(param: str, message: str, code: str = "invalid_value") -> ApiError:
    """A 400 about one request parameter."""
    return ApiError(400, message, param=param, code=code)
