"""API keys on the gRPC API and /metrics, admission control (gRPC and REST), and what bad requests get."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator

import grpc
import httpx
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from blast_grpc import Client, Engine
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.demo_site.server import DemoSite

from ..conftest import Sim, engine_overrides

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]
KEY = "test-key-7f3a9c"


@pytest_asyncio.fixture(scope="class")
async def guarded(sim: Sim) -> AsyncIterator[Engine]:
    # With the REST gateway (it shares the coordinator's keys) and /metrics on a free port.
    overrides = engine_overrides(sim, {"max_concurrent_browsers": 1}, workers=1, api_keys=[KEY],
                                 max_queued_tasks=2, gateway=True, server_port=0)
    async with Engine.create(overrides=overrides) as eng:
        yield eng


class TestGuardedEngine:
    async def test_grpc_needs_the_api_key(self, guarded: Engine, site: DemoSite) -> None:
        for key in ("", "not-the-key"):
            async with Client(guarded.address, api_key=key) as bad:
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    await bad.list_tasks()
                assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert KEY not in (e.value.details() or "") and "API key" in (e.value.details() or "")
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    _ = [ev async for ev in bad.run("say hello", stream=True)]
                assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        async with Client(guarded.address, api_key=KEY) as good:
            task = await good.run("say hello")
            assert task.state == pb.TASK_STATE_COMPLETED
        # health checks stay open for probes
        channel = grpc.aio.insecure_channel(guarded.address)
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        await channel.close()
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

    async def test_a_full_queue_refuses_new_tasks_with_a_retry_hint(self, guarded: Engine, site: DemoSite) -> None:
        async with Client(guarded.address, api_key=KEY) as c:
            running = await c.submit(f"Slowly tour Asia from {site.url}index.html")
            async for ev in c.watch(running.task_id):
                if ev.HasField("started"):
                    break
            queued = [await c.submit("say hello") for _ in range(2)]
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await c.submit("say hello")
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "max_queued_tasks" in (e.value.details() or "")
            trailing = dict(e.value.trailing_metadata() or ())
            assert float(trailing["retry-after"]) > 0
            # Through the gateway: 429 in OpenAI's shape, with the same hint as a Retry-After header.
            assert guarded.gateway_url
            async with httpx.AsyncClient(base_url=guarded.gateway_url, timeout=60,
                                         headers={"authorization": f"Bearer {KEY}"}) as http:
                r = await http.post("/v1/responses", json={"model": "gpt-4.1", "input": "say hello"})
            assert r.status_code == 429, r.text
            assert r.headers["retry-after"] == trailing["retry-after"]
            assert r.json()["error"]["type"] == "rate_limit_error" and "max_queued_tasks" in r.json()["error"]["message"]
            # nothing accepted was lost: every task ends
            for t in [running, *queued]:
                final = [ev async for ev in c.watch(t.task_id)][-1]
                assert final.HasField("completed")
            assert (await c.submit("say hello")).task_id  # room again

    async def test_metrics_need_the_api_key(self, guarded: Engine) -> None:
        assert guarded.metrics_url
        async with httpx.AsyncClient(timeout=60) as http:
            for headers in ({}, {"authorization": "Bearer not-the-key"}, {"authorization": KEY}):
                r = await http.get(guarded.metrics_url, headers=headers)
                assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", headers
                assert "Authorization: Bearer" in r.text and KEY not in r.text
            r = await http.get(guarded.metrics_url, headers={"authorization": f"Bearer {KEY}"})
        assert r.status_code == 200 and "blast_tasks{" in r.text


async def test_open_metrics_beyond_loopback_are_warned_about(sim: Sim, tmp_path: Path) -> None:
    """No keys and a wildcard bind: /metrics stays open (Prometheus needs no setup) but the log says so.
    The test talks to it on 127.0.0.1 only."""
    overrides = engine_overrides(sim, workers=1, host="0.0.0.0", logs_dir=str(tmp_path), api_keys=[])
    async with Engine.create(overrides=overrides) as eng:
        assert eng.metrics_url and eng.metrics_url.startswith("http://0.0.0.0:")
        async with httpx.AsyncClient(timeout=60) as http:
            r = await http.get(eng.metrics_url.replace("0.0.0.0", "127.0.0.1"))
        assert r.status_code == 200 and "blast_tasks{" in r.text
    port = eng.metrics_url.split(":")[-1].split("/")[0]
    log = (tmp_path / "coordinator.log").read_text()
    assert (f"the Prometheus /metrics endpoint on 0.0.0.0:{port} is open to the network: no API key is set "
            "(settings.api_keys or BLAST_API_KEYS)") in log, log


async def test_bad_requests_in_every_field_get_invalid_argument(client: Client) -> None:
    stub = client.stub
    bad_specs = [
        (pb.TaskSpec(description=""), "description"),
        (pb.TaskSpec(description="x", initial_url="javascript:alert(1)"), "initial_url"),
        (pb.TaskSpec(description="x", initial_url="http://[::1"), "spec.initial_url is not a valid URL"),
        (pb.TaskSpec(description="x", initial_url="http://example.com:99999/"), "spec.initial_url is not a valid URL"),
        (pb.TaskSpec(description="x", previous_task_id="task_missing"), "previous_task_id"),
        (pb.TaskSpec(description="x", cache_control=["no-thanks"]), "cache_control"),
        (pb.TaskSpec(description="x", metadata={f"k{i}": "v" for i in range(17)}), "metadata"),
        (pb.TaskSpec(description="x", metadata={"k": "v" * 600}), "metadata"),
    ]
    for spec, field in bad_specs:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.SubmitTask(pb.SubmitTaskRequest(spec=spec))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in (e.value.details() or ""), field
    for request, field in [(pb.ListTasksRequest(limit=-1), "limit"), (pb.ListTasksRequest(state=42), "state")]:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await stub.ListTasks(request)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in (e.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await stub.CancelTask(pb.CancelTaskRequest(task_id=""))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (await asyncio.wait_for(client.metrics(), 10)).workers  # still serving
