"""The ``/metrics`` endpoint: the same figures as ``GetMetrics``, in Prometheus' text format.

Each scrape takes a fresh ``GetMetrics`` snapshot and renders it through a
prometheus-client collector, so the two can never disagree about what they count.
Served by uvicorn inside the coordinator's event loop on ``settings.metrics_port``.

With API keys configured (``settings.api_keys`` / ``BLAST_API_KEYS``) a scrape must send
``Authorization: Bearer <key>``, as on the gateway; Prometheus does so with
``authorization: {type: Bearer, credentials_file: ...}`` in its scrape config. Without
keys the endpoint is open, and the coordinator warns when it is bound beyond loopback.
"""

from __future__ import annotations

from typing import Awaitable, Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._proto.blast.v1 import blast_pb2 as pb
from ..access import bearer_allowed

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class SnapshotCollector(Collector):
    """Turns one ``GetMetricsResponse`` into metric families."""

    def __init__(self, snapshot: pb.GetMetricsResponse) -> None:
        self.m = snapshot

    def collect(self) -> Iterator[Metric]:
        m = self.m
        tasks = GaugeMetricFamily("blast_tasks", "Tasks by state (scheduled = waiting in the queue)", labels=["state"])
        for state in ("scheduled", "running", "completed", "failed", "cancelled"):
            tasks.add_metric([state], getattr(m.tasks, state))
        yield tasks
        yield GaugeMetricFamily("blast_queued_tasks", "Tasks waiting for a browser slot", value=m.queued)
        yield GaugeMetricFamily("blast_concurrent_browsers", "Open task browser contexts", value=m.concurrent_browsers)
        yield GaugeMetricFamily("blast_memory_usage_bytes", "PSS of the workers and their Chromium processes",
                                value=m.memory_usage_gb * 1e9)
        yield CounterMetricFamily("blast_cost_usd", "Money spent on LLM calls", value=m.total_cost_usd)
        tokens = CounterMetricFamily("blast_llm_tokens", "LLM tokens", labels=["model", "kind"])
        requests = CounterMetricFamily("blast_llm_requests", "LLM requests", labels=["model"])
        cost = CounterMetricFamily("blast_llm_cost_usd", "LLM cost per model", labels=["model"])
        for u in m.usage:
            tokens.add_metric([u.model, "prompt"], u.prompt_tokens)
            tokens.add_metric([u.model, "completion"], u.completion_tokens)
            requests.add_metric([u.model], u.requests)
            cost.add_metric([u.model], u.cost_usd)
        yield from (tokens, requests, cost)
        up = GaugeMetricFamily("blast_worker_ready", "1 when the worker is ready", labels=["worker"])
        restarts = CounterMetricFamily("blast_worker_restarts", "Worker restarts", labels=["worker"])
        contexts = GaugeMetricFamily("blast_worker_open_contexts", "Open contexts per worker", labels=["worker"])
        for w in m.workers:
            up.add_metric([w.worker_id], 1 if w.state == pb.WORKER_STATE_READY else 0)
            restarts.add_metric([w.worker_id], w.restarts)
            contexts.add_metric([w.worker_id], len(w.open_contexts))
        yield from (up, restarts, contexts)


def render(snapshot: pb.GetMetricsResponse) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    return generate_latest(registry)


def metrics_app(snapshot: Callable[[], Awaitable[pb.GetMetricsResponse]], keys: Iterable[str] = ()) -> Starlette:
    """The ``/metrics`` app; with ``keys``, a request without ``Authorization: Bearer <key>`` gets 401."""
    wanted = [k.encode() for k in keys if k]

    async def metrics(request: Request) -> Response:
        if wanted and not bearer_allowed(request.headers.get("authorization", "").encode(), wanted):
            return Response("401 Unauthorized: send 'Authorization: Bearer <API key>' (settings.api_keys / "
                            "BLAST_API_KEYS); in Prometheus: authorization: {type: Bearer, credentials_file: ...}\n",
                            status_code=401, media_type="text/plain", headers={"www-authenticate": "Bearer"})
        return Response(render(await snapshot()), media_type=CONTENT_TYPE)

    return Starlette(routes=[Route("/metrics", metrics)])
