"""``create_app``: the Starlette application of the REST gateway.

Every API route is served twice, under ``/v1`` and at the root (BLAST users pass
``base_url="http://127.0.0.1:8000"`` without ``/v1``). ``/healthz`` says the process
is up; ``/readyz`` says the coordinator serves tasks (``ops_routes``, with BLAST's
``/ping``, ``/health`` and ``/metrics``). Every error, including unknown URLs, has OpenAI's shape.

``GET /v1/models`` lists the engine's models as configured (``constraints.llm_model``
and ``llm_model_mini``, without BLAST's provider prefix). They are the only names a
request's ``model`` may take: the task runs on that model (``TaskSpec.model``), and any
other name is a 400 (``model_not_found``) naming the allowed ones.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import AsyncIterator, Iterable

import grpc
from openai.types import Model
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from blast_grpc.config import Constraints, model_name

from . import chat, openapi, ops_routes, responses
from .backend import Backend
from .errors import ApiError, from_grpc
from .middleware import ApiKeyMiddleware, BodyLimitMiddleware, ShutdownMiddleware
from .state import GatewayState, json_response, state

log = logging.getLogger("gateway")

OWNER = "blast-grpc"


def default_models() -> list[str]:
    """The engine's default models (``constraints.llm_model`` and ``llm_model_mini``)."""
    c = Constraints()
    return configured_models(c.llm_model, c.llm_model_mini)


def configured_models(*names: str) -> list[str]:
    """Model names without BLAST's provider prefix, first occurrence kept."""
    out: list[str] = []
    for n in names:
        if model_name(n) not in out:
            out.append(model_name(n))
    return out


async def list_models(request: Request) -> Response:
    """``GET /v1/models``."""
    st = state(request)
    data = [Model(id=m, created=st.created, object="model", owned_by=OWNER).model_dump(mode="json")
            for m in st.models]
    return json_response({"object": "list", "data": data})


async def get_model(request: Request) -> Response:
    """``GET /v1/models/{model}``."""
    st = state(request)
    name = request.path_params["model"]
    if name not in st.models:
        raise ApiError(404, f"The model {name[:200]!r} does not exist; GET /v1/models lists the engine's models.",
                       param="model", code="model_not_found")
    return json_response(Model(id=name, created=st.created, object="model", owned_by=OWNER))


async def healthz(request: Request) -> Response:
    """The gateway process is up."""
    return JSONResponse({"status": "ok"})


async def openapi_document(request: Request) -> Response:
    """``GET /openapi.json`` and ``GET /v1/openapi.json``: the gateway's OpenAPI document."""
    doc: bytes = request.app.state.openapi
    return Response(doc, media_type="application/json")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _grpc_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, grpc.aio.AioRpcError)
    return from_grpc(exc).response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    where = f"{request.method} {request.url.path}"
    if exc.status_code == 404:
        return ApiError(404, f"Invalid URL ({where}).", code="unknown_url").response()
    if exc.status_code == 405:
        return ApiError(405, f"Method not allowed ({where}).", code="method_not_allowed").response()
    return ApiError(exc.status_code, str(exc.detail)).response()


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
    return ApiError(500, "internal error", type="server_error", code="internal_error").response()


def api_routes() -> list[BaseRoute]:
    """The OpenAI-compatible routes, relative to the API root."""
    return [
        *responses.routes(),
        *chat.routes(),
        Route("/models", list_models, methods=["GET"]),
        Route("/models/{model:path}", get_model, methods=["GET"]),
        Route("/openapi.json", openapi_document, methods=["GET"]),
    ]


def create_app(grpc_address: str, api_keys: Iterable[str] = (), max_request_bytes: int = 4 * 1024 * 1024,
               models: list[str] | None = None, engine_api_key: str | None = None,
               metrics_url: str | None = None) -> Starlette:
    """The gateway app for the coordinator at ``grpc_address`` (``host:port``).

    ``api_keys``: bearer keys accepted (empty: no authentication). Bodies larger than
    ``max_request_bytes`` get 413. ``models``: what ``/v1/models`` lists and the model
    echoed when a request names none (default: the engine's default models).
    ``engine_api_key``: the key the gateway itself sends to the coordinator (default: the
    ``BLAST_API_KEY`` environment variable, if set). ``metrics_url``: the coordinator's
    Prometheus ``/metrics``, which ``GET /metrics`` passes on to Prometheus (``ops_routes``)."""
    model_list = list(models or default_models())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The gRPC channel belongs to the serving event loop, so it is made here.
        backend = Backend(grpc_address, api_key=engine_api_key)
        app.state.gateway = GatewayState(backend=backend, models=model_list, created=int(time.time()))
        try:
            yield
        finally:
            await backend.close()

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        *ops_routes.routes(),  # /readyz, and BLAST's /ping, /health, /metrics
        Mount("/v1", routes=api_routes()),
        *api_routes(),
    ]
    keys = [k for k in api_keys if k]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(ShutdownMiddleware),  # outermost: it knows whether any response has started
            Middleware(ApiKeyMiddleware, keys=keys, drain_limit=max_request_bytes),
            Middleware(BodyLimitMiddleware, limit=max_request_bytes),
        ],
        exception_handlers={
            ApiError: _api_error,
            grpc.aio.AioRpcError: _grpc_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
        lifespan=lifespan,
    )
    doc = openapi.document(keys_required=bool(keys), max_request_bytes=max_request_bytes, models=model_list)
    app.state.openapi = json.dumps(doc, separators=(",", ":")).encode()
    app.state.metrics_url = metrics_url
    return app
