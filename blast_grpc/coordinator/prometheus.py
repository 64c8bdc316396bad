"""The ``/metrics`` endpoint: ``GetMetrics``' figures and the coordinator's telemetry, for Prometheus.

Each scrape takes a fresh ``GetMetrics`` snapshot and renders it through a
prometheus-client collector, so the two can never disagree about what they count; the
counters and histograms kept as things happen (``telemetry.py``) are rendered beside it.
Served by uvicorn inside the coordinator's event loop on ``settings.metrics_port``, as
Prometheus' text format, or OpenMetrics when the scraper asks for it (``Accept``).

Names follow Prometheus' conventions: a unit suffix (``_seconds``, ``_bytes``, ``_usd``),
``_total`` on counters (added by prometheus-client to the family name), and gauges only for
what is true now. The snapshot's gauges and counters:

==================================  =======  ==================================================
``blast_tasks{state}``              gauge    tasks scheduled (queued, parked) or running now
``blast_queued_tasks``              gauge    tasks waiting for a browser slot: scale workers on it
``blast_concurrent_browsers``       gauge    open task browser contexts
``blast_open_contexts``             gauge    every open browser context (task, warm, kept)
``blast_memory_usage_bytes``        gauge    PSS of the workers and their Chromium
``blast_llm_tokens_total``          counter  per ``model`` and ``kind`` (prompt, completion)
``blast_llm_requests_total``        counter  per ``model``
``blast_llm_cost_usd_total``        counter  per ``model`` (their sum is the engine's cost)
``blast_worker_ready``              gauge    per ``worker``
``blast_worker_restarts_total``     counter  per ``worker``
``blast_worker_contexts``           gauge    per ``worker`` and ``kind`` (task, warm, kept)
``blast_worker_status_ok``          gauge    per ``worker``: its figures are current
==================================  =======  ==================================================

The LLM figures count since the coordinator process started (and, with a task database,
include nothing from before a restart); so do the telemetry's.

With API keys configured (``settings.api_keys`` / ``BLAST_API_KEYS``) a scrape must send
``Authorization: Bearer <key>``, as on the gateway; Prometheus does so with
``authorization: {type: Bearer, credentials_file: ...}`` in its scrape config. Without
keys the endpoint is open, and the coordinator warns when it is bound beyond loopback.
"""

from __future__ import annotations

from typing import Awaitable, Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._proto.blast.v1 import blast_pb2 as pb
from ..access import bearer_allowed

GIB = 1024**3  # GetMetrics' memory_usage_gb is in GiB, as BLAST's


class SnapshotCollector(Collector):
    """Turns one ``GetMetricsResponse`` into metric families."""

    def __init__(self, snapshot: pb.GetMetricsResponse) -> None:
        self.m = snapshot

    def collect(self) -> Iterator[Metric]:
        m = self.m
        tasks = GaugeMetricFamily("blast_tasks", "Tasks now, by state (scheduled = waiting in the queue or parked "
                                  "for a browser slot); ended tasks are blast_tasks_finished_total", labels=["state"])
        tasks.add_metric(["scheduled"], m.tasks.scheduled)
        tasks.add_metric(["running"], m.tasks.running)
        yield tasks
        yield GaugeMetricFamily("blast_queued_tasks", "Tasks waiting for a browser slot", value=m.queued)
        yield GaugeMetricFamily("blast_concurrent_browsers", "Open task browser contexts", value=m.concurrent_browsers)
        yield GaugeMetricFamily("blast_open_contexts", "Every open browser context (task, warm and kept)",
                                value=m.open_contexts)
        yield GaugeMetricFamily("blast_memory_usage_bytes", "PSS of the workers and their Chromium processes",
                                value=round(m.memory_usage_gb * GIB))
        tokens = CounterMetricFamily("blast_llm_tokens", "LLM tokens", labels=["model", "kind"])
        requests = CounterMetricFamily("blast_llm_requests", "LLM requests", labels=["model"])
        cost = CounterMetricFamily("blast_llm_cost_usd", "Money spent on LLM calls, per model", labels=["model"])
        for u in m.usage:
            tokens.add_metric([u.model, "prompt"], u.prompt_tokens)
            tokens.add_metric([u.model, "completion"], u.completion_tokens)
            requests.add_metric([u.model], u.requests)
            cost.add_metric([u.model], u.cost_usd)
        yield from (tokens, requests, cost)
        up = GaugeMetricFamily("blast_worker_ready", "1 when the worker is ready", labels=["worker"])
        restarts = CounterMetricFamily("blast_worker_restarts", "Worker restarts", labels=["worker"])
        by_kind = GaugeMetricFamily("blast_worker_contexts", "Open browser contexts per worker: a task's, warm "
                                    "(ready for a new task) or kept (for a follow-up)", labels=["worker", "kind"])
        answered = GaugeMetricFamily("blast_worker_status_ok", "1 when the worker answered its status call in time "
                                     "(its context figures are current)", labels=["worker"])
        for w in m.workers:
            up.add_metric([w.worker_id], 1 if w.state == pb.WORKER_STATE_READY else 0)
            restarts.add_metric([w.worker_id], w.restarts)
            for kind, n in (("task", len(w.open_contexts)), ("warm", w.warm_contexts), ("kept", w.kept_contexts)):
                by_kind.add_metric([w.worker_id, kind], n)
            answered.add_metric([w.worker_id], 0 if w.status_problem else 1)
        yield from (up, restarts, by_kind, answered)


def render(snapshot: pb.GetMetricsResponse, collectors: Iterable[Collector] = (), accept: str = "") -> tuple[bytes, str]:
    """(body, content type) for one scrape: the snapshot and ``collectors``, in the format ``accept`` asks for."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    for c in collectors:
        registry.register(c)
    encode, content_type = choose_encoder(accept)
    return encode(registry), content_type


def metrics_app(snapshot: Callable[[], Awaitable[pb.GetMetricsResponse]], keys: Iterable[str] = (),
                collectors: Callable[[], Iterable[Collector]] = lambda: ()) -> Starlette:
    """The ``/metrics`` app; with ``keys``, a request without ``Authorization: Bearer <key>`` gets 401."""
    wanted = [k.encode() for k in keys if k]

    async def metrics(request: Request) -> Response:
        if wanted and not bearer_allowed(request.headers.get("authorization", "").encode(), wanted):
            return Response("401 Unauthorized: send 'Authorization: Bearer <API key>' (settings.api_keys / "
                            "BLAST_API_KEYS); in Prometheus: authorization: {type: Bearer, credentials_file: ...}\n",
                            status_code=401, media_type="text/plain", headers={"www-authenticate": "Bearer"})
        body, content_type = render(await snapshot(), collectors(), request.headers.get("accept", ""))
        return Response(body, headers={"content-type": content_type})

    return Starlette(routes=[Route("/metrics", metrics)])
