"""Operator routes: BLAST's ``/ping``, ``/health`` and ``/metrics``, and the ``/readyz`` probe.

BLAST's server (``blastai`` 0.1.6, ``server.py``) answers ``GET /ping`` with
``{"status": "ok"}``, ``GET /health`` with ``{"status": "ok", "ready": true}`` and
``GET /metrics`` with its ``engine.get_metrics()`` dict; health checks and dashboards
written for it work here unchanged. ``/metrics`` answers by what the caller accepts:

- JSON (the default: ``*/*``, ``application/json``, no ``Accept``): BLAST's dict
  (``blast_grpc.blast_metrics``), from one ``GetMetrics`` call;
- Prometheus text or OpenMetrics (``Accept: text/plain`` or
  ``application/openmetrics-text``, as Prometheus sends): the coordinator's own
  ``/metrics`` (``settings.metrics_port``), fetched and passed on unchanged, histograms
  included. ``blast-grpc serve`` tells its gateway where that is (``--metrics-url``).

``/metrics`` needs the API key when keys are configured (``ApiKeyMiddleware``); ``/ping``,
``/health``, ``/healthz`` and ``/readyz`` stay open for probes.

Readiness (``/readyz``, and BLAST's ``/health``) asks the coordinator's gRPC health service
(``grpc.health.v1``, cheap: no worker is asked anything): SERVING means it takes tasks,
NOT_SERVING that it is draining. ``/readyz`` also checks that the coordinator accepts the
gateway's own credentials (health checks are open, so a gateway without the engine's key
would look ready and then fail every request): a ``GetTask`` for an id no task can have,
which the coordinator answers from memory with NOT_FOUND.
"""

from __future__ import annotations

import grpc
import httpx
from grpc_health.v1 import health_pb2
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from blast_grpc.blast_metrics import blast_metrics

from .errors import ApiError
from .state import state

READY_TIMEOUT_S = 3.0
SCRAPE_TIMEOUT_S = 10.0  # the coordinator's /metrics asks every worker for its status (bounded there)
PROBE_TASK_ID = "task_readyz_probe"  # never issued: task ids are "task_" + 20 hex digits
TEXT_TYPES = ("text/plain", "application/openmetrics-text")


def wants_text(accept: str) -> bool:
    """Whether ``accept`` asks for Prometheus' text formats rather than JSON."""
    types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    return any(t in TEXT_TYPES for t in types) and "application/json" not in types


async def _serving(request: Request) -> str:
    """"" when the coordinator says it serves tasks; otherwise why not."""
    st = state(request)
    try:
        status = await st.backend.health(timeout=READY_TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        return f"the coordinator at {st.backend.address} did not answer ({exc.code().name})"
    if status != health_pb2.HealthCheckResponse.SERVING:
        name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
        return f"the coordinator is not serving tasks ({name}: starting or draining)"
    return ""


def _unready(reason: str, code: str) -> Response:
    # A probe body, plus the ``error`` object every non-2xx answer of the gateway has.
    err = ApiError(503, reason, type="server_error", code=code).body()
    return JSONResponse({"status": "unavailable", "reason": reason, **err}, status_code=503)


async def readyz(request: Request) -> Response:
    """200 when the coordinator serves tasks and accepts the gateway's credentials, 503 otherwise."""
    problem = await _serving(request)
    if problem:
        return _unready(problem, "engine_unavailable")
    st = state(request)
    try:
        await st.backend.get(PROBE_TASK_ID, timeout=READY_TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            return _unready(f"the coordinator at {st.backend.address} refused the gateway's call "
                            f"({exc.code().name}: {exc.details()})", "engine_unavailable")
    return JSONResponse({"status": "ready"})


async def ping(request: Request) -> Response:
    """BLAST's ``GET /ping``."""
    return JSONResponse({"status": "ok"})


async def health(request: Request) -> Response:
    """BLAST's ``GET /health``: ``{"status": "ok", "ready": true}``, or 503 with ``ready: false``."""
    problem = await _serving(request)
    if problem:
        return JSONResponse({"status": "error", "ready": False, "reason": problem}, status_code=503)
    return JSONResponse({"status": "ok", "ready": True})


async def metrics(request: Request) -> Response:
    """BLAST's ``GET /metrics`` (JSON), or Prometheus text / OpenMetrics when asked for."""
    accept = request.headers.get("accept", "")
    if not wants_text(accept):
        return JSONResponse(blast_metrics(await state(request).backend.metrics()))
    url: str | None = request.app.state.metrics_url
    if not url:
        raise ApiError(404, "Prometheus metrics are not served here: the coordinator's /metrics is off "
                       "(settings.metrics_port: null) or this gateway was started without --metrics-url. "
                       "Ask for JSON (Accept: application/json) for BLAST's metrics.", code="metrics_unavailable")
    headers = {"accept": accept}
    key = state(request).backend.api_key
    if key:
        headers["authorization"] = f"Bearer {key}"
    try:
        async with httpx.AsyncClient(timeout=SCRAPE_TIMEOUT_S) as http:
            r = await http.get(url, headers=headers)
    except httpx.HTTPError as exc:
        raise ApiError(503, f"the coordinator's metrics at {url} did not answer ({type(exc).__name__})",
                       type="server_error", code="engine_unavailable") from exc
    if r.status_code != 200:  # 401: this gateway has no key the coordinator accepts
        raise ApiError(503, f"the coordinator's metrics at {url} answered HTTP {r.status_code}",
                       type="server_error", code="engine_unavailable")
    return Response(r.content, headers={"content-type": r.headers.get("content-type", "text/plain")})


def routes() -> list[BaseRoute]:
    """The operator routes, at the root (where BLAST serves them)."""
    return [
        Route("/readyz", readyz, methods=["GET"]),
        Route("/ping", ping, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
