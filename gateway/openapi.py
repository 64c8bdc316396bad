"""The gateway's OpenAPI 3.1 document, served at ``GET /openapi.json`` and ``GET /v1/openapi.json``.

Request bodies come from the request models themselves (``ResponsesRequest`` and
``ChatRequest`` in ``protocol.py``: typed pydantic models, their nested input items and
content parts becoming components of their own), and the error schema from
``errors.ErrorResponse``, which builds every error body, so neither can drift from what
the gateway does. The operations are listed once, in
``API_OPERATIONS`` and ``ROOT_OPERATIONS``; a test checks that they and the app's routes
are the same set. Every API operation is documented at both of its paths, under ``/v1``
and at the root.

The document is built per app: when API keys are configured it says that every API
operation needs ``Authorization: Bearer <key>`` (401 otherwise); the probes and the
document itself need none. Given the app's models, the request bodies' ``model`` is an
enum of them (the only names the gateway accepts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from .errors import ErrorDetail, ErrorResponse
from .protocol import ChatRequest, ResponsesRequest

OPENAPI_VERSION = "3.1.0"
API_PREFIX = "/v1"
SCHEMA_REF = "#/components/schemas/{model}"

# Each error status: what it means here (the body is always an ``Error``).
ERROR_STATUSES: dict[int, str] = {
    400: "The request is invalid; `error.param` names the parameter at fault.",
    401: "No API key, or a wrong one (`Authorization: Bearer <key>`).",
    404: "No such response or model; on `/metrics` asking for Prometheus text: none behind this gateway.",
    405: "`GET` or `DELETE` on the cancel URL (`.../{response_id}/cancel`): it takes `POST`.",
    409: "The response already ended (completed or failed), so it cannot be cancelled.",
    413: "The request body is larger than settings.max_request_bytes.",
    429: "The engine's queue is full (settings.max_queued_tasks); retry after the `Retry-After` header's seconds.",
    500: "An internal error; the engine refused the gateway's own API key (`engine_auth_failed`); or (chat) a "
         "task that failed, was cancelled, or whose agent gave up (`task_failed` / `task_cancelled` / "
         "`task_unsuccessful`). The last four are not retryable.",
    503: "The engine (coordinator) is unavailable, or it is shutting down and cancelled the request's task "
         "before it started (submit it again).",
    504: "The engine did not answer in time.",
}
ENGINE = (500, 503, 504)  # every operation that calls the coordinator can get these


def _obj(required: list[str], properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties, **extra}


_USAGE = _obj([], {}, description="Tokens summed over the task's whole tree (Task.tree_usage).")
RESPONSE_SCHEMA = _obj(
    ["id", "object", "created_at", "status", "model", "output"],
    {"id": {"type": "string", "pattern": "^resp_"}, "object": {"const": "response"},
     "created_at": {"type": "number", "description": "Unix seconds."},
     "status": {"enum": ["queued", "in_progress", "completed", "failed", "cancelled", "incomplete"]},
     "model": {"type": "string"},
     "output": {"type": "array", "items": _obj(["type"], {"type": {"enum": ["reasoning", "message"]}}),
                "description": "One reasoning item per task of the tree (its plan, steps, subtasks), then the "
                               "answer as an assistant message."},
     "usage": _USAGE, "background": {"type": "boolean"}, "previous_response_id": {"type": "string"},
     "metadata": {"type": "object", "additionalProperties": {"type": "string"}}},
    description="An OpenAI Responses API `Response` (the fields the gateway fills; see the `openai` package).",
)
DELETED_SCHEMA = _obj(["id", "object", "deleted"], {"id": {"type": "string"}, "object": {"const": "response.deleted"},
                                                    "deleted": {"const": True}})
CHAT_COMPLETION_SCHEMA = _obj(
    ["id", "object", "created", "model", "choices"],
    {"id": {"type": "string", "pattern": "^chatcmpl-"}, "object": {"const": "chat.completion"},
     "created": {"type": "integer"}, "model": {"type": "string"},
     "choices": {"type": "array", "minItems": 1, "maxItems": 1, "items": _obj(
         ["index", "message", "finish_reason"],
         {"index": {"const": 0}, "finish_reason": {"const": "stop"},  # anything else is an error (chat.py)
          "message": _obj(["role", "content"], {"role": {"const": "assistant"}, "content": {"type": "string"}})})},
     "usage": _USAGE},
    description="An OpenAI `ChatCompletion`.",
)
MODEL_SCHEMA = _obj(["id", "object", "created", "owned_by"], {
    "id": {"type": "string"}, "object": {"const": "model"}, "created": {"type": "integer"},
    "owned_by": {"type": "string"}})
MODEL_LIST_SCHEMA = _obj(["object", "data"], {"object": {"const": "list"},
                                              "data": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}}})
HEALTH_SCHEMA = _obj(["status"], {"status": {"const": "ok"}})
READY_SCHEMA = _obj(["status"], {"status": {"const": "ready"}})
UNREADY_SCHEMA = _obj(["status", "reason", "error"], {
    "status": {"const": "unavailable"}, "reason": {"type": "string"},
    "error": {"$ref": "#/components/schemas/ErrorDetail"}})
# BLAST's operator routes (ops_routes.py).
BLAST_HEALTH_SCHEMA = _obj(["status", "ready"], {"status": {"const": "ok"}, "ready": {"const": True}})
BLAST_UNHEALTHY_SCHEMA = _obj(["status", "ready", "reason"], {
    "status": {"const": "error"}, "ready": {"const": False}, "reason": {"type": "string"}})
_COUNT = {"type": "integer", "minimum": 0}
_AMOUNT = {"type": "number", "minimum": 0}
BLAST_METRICS_SCHEMA = _obj(
    ["tasks", "concurrent_browsers", "memory_usage_gb", "total_cost", "total_tokens", "llm_calls", "llm_seconds",
     "execution_seconds"],
    {"tasks": _obj(["scheduled", "running", "completed"], {k: _COUNT for k in
                                                          ("scheduled", "running", "completed", "failed", "cancelled")}),
     "concurrent_browsers": _COUNT, "memory_usage_gb": _AMOUNT, "total_cost": _AMOUNT, "total_tokens": _COUNT,
     "llm_calls": _COUNT, "llm_seconds": _AMOUNT, "execution_seconds": _AMOUNT},
    description="BLAST's `engine.get_metrics()` (memory in GiB, cost in USD, both rounded to 2 places) plus "
                "token, call and time totals.")
_PROMETHEUS_TEXT = {"text/plain": {"schema": {"type": "string"}},
                    "application/openmetrics-text": {"schema": {"type": "string"}}}
DOCUMENT_SCHEMA = _obj(["openapi", "info", "paths"], {"openapi": {"type": "string"}})


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


# Server-sent events, described one event at a time ({"event", "data"}).
_RESPONSE_EVENTS = {"text/event-stream": {"schema": _obj(["event", "data"], {
    "event": {"type": "string", "description": "The event's `type`: `response.created`, ..., `response.completed` "
                                               "(or `.failed`, `.incomplete`), or `error`."},
    "data": {"type": "string", "contentMediaType": "application/json",
             "contentSchema": _obj(["type", "sequence_number"], {"type": {"type": "string"},
                                                                 "sequence_number": {"type": "integer"}})}},
    description="One Responses API stream event.")}}
_CHAT_CHUNKS = {"text/event-stream": {"schema": _obj(["data"], {"data": {"type": "string"}}, description=(
    "A `chat.completion.chunk` as JSON, an `{\"error\": ...}` object, or `[DONE]` last."))}}


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "minLength": 1}}


_RESPONSE_ID = _path_param("response_id", "`resp_` followed by the task id.")
_MODEL_ID = _path_param("model", "A model name as GET /v1/models lists it.")
_STREAM = {"name": "stream", "in": "query", "required": False, "schema": {"type": "boolean", "default": False},
           "description": "Replay the response's events as server-sent events, then follow it live. Leaving such a "
                          "stream cancels nothing."}
_STARTING_AFTER = {"name": "starting_after", "in": "query", "required": False,
                   "schema": {"type": "integer", "minimum": -(10**18) + 1, "maximum": 10**18 - 1},
                   "description": "With `stream`: only events with a larger `sequence_number`."}


@dataclass(frozen=True)
class Operation:
    """One documented operation. ``path`` is relative to the API root (or absolute for ROOT_OPERATIONS)."""

    method: str
    path: str
    operation_id: str
    summary: str
    ok: dict[str, Any]
    errors: tuple[int, ...] = ()
    body: type[BaseModel] | None = None
    parameters: tuple[dict[str, Any], ...] = ()
    authenticated: bool = True
    extra_responses: dict[str, Any] = field(default_factory=dict)


API_OPERATIONS: tuple[Operation, ...] = (
    Operation("post", "/responses", "createResponse", "Run a task: the answer, a stream of its progress "
              "(`stream`), or at once (`background`)",
              {"description": "The finished response, its server-sent events, or (background) the queued one.",
               "content": {"application/json": {"schema": _ref("Response")}, **_RESPONSE_EVENTS}},
              (400, 429, *ENGINE), body=ResponsesRequest),
    Operation("get", "/responses/{response_id}", "getResponse", "The response as it stands, or its events",
              {"description": "The response, or (`stream=true`) its events.",
               "content": {"application/json": {"schema": _ref("Response")}, **_RESPONSE_EVENTS}},
              (400, 404, 405, *ENGINE), parameters=(_RESPONSE_ID, _STREAM, _STARTING_AFTER)),
    Operation("delete", "/responses/{response_id}", "deleteResponse",
              "Cancel the response's task if it still runs (the engine keeps the record)",
              _json(_ref("ResponseDeleted"), "Deleted."), (404, 405, *ENGINE), parameters=(_RESPONSE_ID,)),
    Operation("post", "/responses/{response_id}/cancel", "cancelResponse", "Cancel a queued or running response",
              _json(_ref("Response"), "The cancelled response."), (404, 409, *ENGINE), parameters=(_RESPONSE_ID,)),
    Operation("post", "/chat/completions", "createChatCompletion",
              "Run a task from the last user message; closing the connection cancels it",
              {"description": "The completion, or (`stream`) its chunks.",
               "content": {"application/json": {"schema": _ref("ChatCompletion")}, **_CHAT_CHUNKS}},
              (400, 429, *ENGINE), body=ChatRequest),
    Operation("get", "/models", "listModels", "The models the engine runs tasks with",
              _json(_ref("ModelList"), "The engine's models."), (500,)),
    Operation("get", "/models/{model}", "retrieveModel", "One of the engine's models",
              _json(_ref("Model"), "The model."), (404, 500), parameters=(_MODEL_ID,)),
    Operation("get", "/openapi.json", "getOpenApiDocument", "This document", _json(DOCUMENT_SCHEMA, "OpenAPI 3.1."),
              (500,), authenticated=False),
)

ROOT_OPERATIONS: tuple[Operation, ...] = (
    Operation("get", "/healthz", "healthz", "The gateway process is up", _json(HEALTH_SCHEMA, "Up."),
              authenticated=False),
    Operation("get", "/readyz", "readyz", "The coordinator serves tasks (gRPC health) and accepts the gateway",
              _json(READY_SCHEMA, "Ready."), authenticated=False,
              extra_responses={"503": _json(_ref("Unready"), "Not ready: `reason` (and `error.message`) say why.")}),
    Operation("get", "/ping", "ping", "BLAST's ping: the gateway is up", _json(HEALTH_SCHEMA, "Up."),
              authenticated=False),
    Operation("get", "/health", "blastHealth", "BLAST's health check: the coordinator serves tasks",
              _json(BLAST_HEALTH_SCHEMA, "Ready."), authenticated=False,
              extra_responses={"503": _json(BLAST_UNHEALTHY_SCHEMA, "Not ready: `reason` says why.")}),
    Operation("get", "/metrics", "metrics", "BLAST's metrics (JSON), or Prometheus text / OpenMetrics by `Accept`",
              {"description": "BLAST's metrics dict, or the coordinator's Prometheus exposition.",
               "content": {"application/json": {"schema": BLAST_METRICS_SCHEMA}, **_PROMETHEUS_TEXT}},
              (404, *ENGINE)),
)


def _model_schemas(*models: type[BaseModel]) -> dict[str, Any]:
    """Component schemas of ``models`` (and of the models they nest), named by their titles."""
    out: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=SCHEMA_REF)
        out.update(schema.pop("$defs", {}))
        out[str(schema.get("title", model.__name__))] = schema
    return out


def _schema_name(model: type[BaseModel]) -> str:
    return str(model.model_json_schema(ref_template=SCHEMA_REF).get("title", model.__name__))


def _operation(op: Operation, operation_id: str, keys_required: bool, max_request_bytes: int) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": op.ok, **op.extra_responses}
    statuses = set(op.errors) | {413}  # the body limit applies to every request
    if op.authenticated and keys_required:
        statuses.add(401)
    for status in sorted(statuses):
        text = ERROR_STATUSES[status]
        if status == 413:
            text = f"The request body is larger than {max_request_bytes} bytes (settings.max_request_bytes)."
        responses[str(status)] = _json(_ref("Error"), text)
    out: dict[str, Any] = {"operationId": operation_id, "summary": op.summary, "responses": responses}
    if op.parameters:
        out["parameters"] = list(op.parameters)
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(_schema_name(op.body))}}}
    if not op.authenticated or not keys_required:
        out["security"] = []
    return out


def _only_models(schema: dict[str, Any], models: list[str]) -> None:
    """Narrow a request body schema's ``model`` to the app's models."""
    prop = schema["properties"]["model"]
    schema["properties"]["model"] = {"anyOf": [{"enum": list(models)}, {"type": "null"}],
                                     "description": prop.get("description", ""), "default": None}


def document(*, keys_required: bool, max_request_bytes: int, models: list[str] | None = None) -> dict[str, Any]:
    """The OpenAPI document of a gateway app (``create_app``) configured so."""
    paths: dict[str, dict[str, Any]] = {}
    for op in API_OPERATIONS:
        for prefix, suffix in ((API_PREFIX, ""), ("", "Root")):
            item = paths.setdefault(prefix + op.path, {})
            item[op.method] = _operation(op, op.operation_id + suffix, keys_required, max_request_bytes)
    for op in ROOT_OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, op.operation_id, keys_required, max_request_bytes)
    schemas = _model_schemas(ResponsesRequest, ChatRequest, ErrorResponse, ErrorDetail)
    if models:
        for body in (ResponsesRequest, ChatRequest):
            _only_models(schemas[_schema_name(body)], models)
    schemas.update({"Response": RESPONSE_SCHEMA, "ResponseDeleted": DELETED_SCHEMA,
                    "ChatCompletion": CHAT_COMPLETION_SCHEMA, "Model": MODEL_SCHEMA, "ModelList": MODEL_LIST_SCHEMA,
                    "Unready": UNREADY_SCHEMA})
    doc: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "blast-grpc REST gateway",
            "version": "1",
            "description": "OpenAI's Responses and Chat Completions APIs in front of a blast-grpc engine. Every "
                           "API operation is served under /v1 and at the root. Every error is JSON of the shape "
                           "`{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`, including unknown URLs (404 "
                           "`unknown_url`) and methods (405 `method_not_allowed`).",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "A key of settings.api_keys or BLAST_API_KEYS."}},
        },
    }
    if keys_required:
        doc["security"] = [{"bearerAuth": []}]
    return doc
