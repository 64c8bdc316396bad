"""BLAST's operator routes on the gateway: ``/ping``, ``/health``, ``/metrics`` (JSON, and
Prometheus text or OpenMetrics by ``Accept``), and ``/readyz`` on gRPC health."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import grpc
import httpx
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from blast_grpc import Client, Engine
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.demo_site.server import DemoSite

from ..conftest import stop_process
from .conftest import API_KEY, Gateway, gorilla_task, poll, start_gateway

# blastai 0.1.6, Engine.get_metrics(): every key a BLAST dashboard reads.
BLAST_KEYS = {"tasks", "concurrent_browsers", "memory_usage_gb", "total_cost"}
BLAST_TASK_KEYS = {"scheduled", "running", "completed"}


@pytest.fixture(scope="module")
def scraped_gateway(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway that knows the coordinator's Prometheus endpoint, as ``blast-grpc serve`` starts it."""
    assert engine.metrics_url
    gw = start_gateway(engine.address, tmp_path_factory.mktemp("ops"), "scraped", metrics_url=engine.metrics_url)
    try:
        yield gw
    finally:
        stop_process(gw.proc)


def test_ping_and_health_in_blasts_shape(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.url}/ping", timeout=10).json() == {"status": "ok"}
    health = poll(lambda: httpx.get(f"{gateway.url}/health", timeout=10), lambda r: r.status_code == 200)
    assert health.json() == {"status": "ok", "ready": True}
    ready = poll(lambda: httpx.get(f"{gateway.url}/readyz", timeout=10), lambda r: r.status_code == 200)
    assert ready.json() == {"status": "ready"}


@pytest.mark.asyncio
async def test_metrics_json_has_blasts_keys_units_and_totals(gateway: Gateway, client: Client, site: DemoSite) -> None:
    task = await client.run(gorilla_task(site, "Asia"))
    assert task.state == pb.TASK_STATE_COMPLETED
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.get(f"{gateway.url}/metrics")  # httpx sends Accept: */*, as BLAST's clients do
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    m = r.json()
    raw = await client.metrics()
    assert set(m) >= BLAST_KEYS and set(m["tasks"]) >= BLAST_TASK_KEYS
    assert m["memory_usage_gb"] == round(m["memory_usage_gb"], 2) and m["memory_usage_gb"] > 0
    # GiB: the raw figure (bytes / 1024**3) and the rounded one agree to BLAST's 2 places, give or take
    # what the memory did between the two calls.
    assert abs(m["memory_usage_gb"] - raw.memory_usage_gb) < 0.5 * raw.memory_usage_gb + 0.01
    assert m["total_cost"] == round(m["total_cost"], 2)
    assert m["total_tokens"] == m["prompt_tokens"] + m["completion_tokens"] > 0
    assert m["llm_calls"] >= task.steps >= 1
    assert sum(u.llm_seconds for u in raw.usage) > 0  # timed; the rounded total may show 0.0 (instant sim)
    assert m["execution_seconds"] > 0 and m["tasks_finished"]["completed"] >= 1
    assert raw.finished.completed >= 1 and raw.execution_seconds >= m["execution_seconds"] - 0.01


def test_metrics_in_prometheus_text_and_openmetrics(scraped_gateway: Gateway, client: Client) -> None:
    url = f"{scraped_gateway.url}/metrics"
    text = httpx.get(url, headers={"accept": "text/plain"}, timeout=30)
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(text.text)}
    assert families["blast_tasks_finished"].type == "counter"
    assert families["blast_queued_tasks"].type == "gauge"
    assert families["blast_task_duration_seconds"].type == "histogram"
    assert "blast_cost_usd" not in families  # the duplicate of blast_llm_cost_usd_total is gone
    om = httpx.get(url, headers={"accept": "application/openmetrics-text; version=1.0.0"}, timeout=30)
    assert om.status_code == 200 and om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")
    # What Prometheus sends picks OpenMetrics; a BLAST client's */* still gets JSON.
    prom = httpx.get(url, headers={"accept": "application/openmetrics-text;version=1.0.0;q=0.75,"
                                              "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"}, timeout=30)
    assert prom.headers["content-type"].startswith("application/openmetrics-text")
    assert "tasks" in httpx.get(url, headers={"accept": "*/*"}, timeout=30).json()


def test_prometheus_text_without_a_metrics_url_says_so(gateway: Gateway) -> None:
    r = httpx.get(f"{gateway.url}/metrics", headers={"accept": "text/plain"}, timeout=10)
    assert r.status_code == 404 and r.json()["error"]["code"] == "metrics_unavailable"
    assert "--metrics-url" in r.json()["error"]["message"]


def test_metrics_need_the_key_and_probes_do_not(keyed_gateway: Gateway) -> None:
    for path in ("/ping", "/health", "/readyz", "/healthz"):
        assert httpx.get(f"{keyed_gateway.url}{path}", timeout=10).status_code in (200, 503), path
    assert httpx.get(f"{keyed_gateway.url}/ping", timeout=10).status_code == 200
    r = httpx.get(f"{keyed_gateway.url}/metrics", timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    ok = httpx.get(f"{keyed_gateway.url}/metrics", headers={"authorization": f"Bearer {API_KEY}"}, timeout=30)
    assert ok.status_code == 200 and set(ok.json()) >= BLAST_KEYS


def test_readyz_and_health_follow_grpc_health(tmp_path: Path) -> None:
    # A real grpc.health.v1 server with nothing else, on loopback: it plays a coordinator that
    # drains (NOT_SERVING), then one that serves but does not know the gateway (no BlastService).
    server = grpc.server(ThreadPoolExecutor(2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    servicer.set("blast.v1.BlastService", health_pb2.HealthCheckResponse.NOT_SERVING)
    gw = start_gateway(f"127.0.0.1:{port}", tmp_path, "health-only")
    try:
        for path in ("/readyz", "/health"):
            r = httpx.get(f"{gw.url}{path}", timeout=10)
            assert r.status_code == 503 and "NOT_SERVING" in r.json()["reason"], r.text
        assert httpx.get(f"{gw.url}/health", timeout=10).json()["ready"] is False
        servicer.set("blast.v1.BlastService", health_pb2.HealthCheckResponse.SERVING)
        assert httpx.get(f"{gw.url}/health", timeout=10).json() == {"status": "ok", "ready": True}
        r = httpx.get(f"{gw.url}/readyz", timeout=10)  # serving, but GetTask is not there: not ready
        assert r.status_code == 503 and "UNIMPLEMENTED" in r.json()["reason"], r.text
        assert httpx.get(f"{gw.url}/ping", timeout=10).json() == {"status": "ok"}
    finally:
        stop_process(gw.proc)
        server.stop(grace=None)
