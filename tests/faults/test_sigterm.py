"""SIGTERM drains: no new work is admitted, queued work waits for the next start, and clients
of running tasks get their answers.

One engine with its gateway, one browser slot and a task database. A blocking chat
completion runs a ~4 s task; a second one waits in the queue behind it. Then SIGTERM:

* new submissions are refused at once: gRPC UNAVAILABLE, and 503 in OpenAI's shape through
  the gateway, each saying the engine is shutting down;
* the running completion gets its real answer (200, the task's result);
* the queued task does not start. Its waiting gateway client ran it with ``RunTask``, whose
  task lives as long as its request, so the engine cancels it and the client gets an
  OpenAI-shaped, retryable 503 saying to submit it again (no task runs later that nobody
  reads); a queued task submitted with ``SubmitTask`` stays queued, and the next start of
  the engine runs it;
* the coordinator exits 0.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from blast_grpc import Engine
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.demo_site.facts import GORILLAS
from blast_grpc.demo_site.server import DemoSite

from ..conftest import Sim, engine_overrides
from .conftest import NO_HANG_S, wait_for

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]


def _chat(task: str) -> dict[str, Any]:
    return {"model": "gpt-4.1", "messages": [{"role": "user", "content": task}]}


async def _serving(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as ch:
        resp = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        return int(resp.status)


async def test_sigterm_refuses_new_work_keeps_the_queue_and_answers_running_clients(
        sim: Sim, site: DemoSite, tmp_path: Path) -> None:
    overrides = engine_overrides(sim, {"max_concurrent_browsers": 1}, workers=1, gateway=True, server_port=0,
                                 task_db_path=str(tmp_path / "tasks.sqlite"), drain_timeout_s=60)
    running_task = f"Slowly tour Europe from {site.url}index.html"
    queued_task = f"On {site.url}index.html find the largest gorilla in Oceania"
    eng = await Engine.create(overrides=overrides)
    pending: list[asyncio.Future[httpx.Response]] = []
    try:
        assert eng.gateway_url
        async with httpx.AsyncClient(base_url=eng.gateway_url, timeout=NO_HANG_S) as http:
            running = asyncio.ensure_future(http.post("/v1/chat/completions", json=_chat(running_task)))
            pending.append(running)

            async def started() -> bool:
                return any(t.state == pb.TASK_STATE_RUNNING for t in await eng.client.list_tasks())

            await wait_for(started, "the first task to start")
            waiting = asyncio.ensure_future(http.post("/v1/chat/completions", json=_chat(queued_task)))
            pending.append(waiting)
            kept_id = (await eng.client.submit(queued_task)).task_id  # SubmitTask: kept for the next start

            async def queued() -> list[pb.Task]:
                return [t for t in await eng.client.list_tasks()
                        if t.spec.description == queued_task and t.state == pb.TASK_STATE_QUEUED
                        and t.task_id != kept_id]

            queued_id = (await wait_for(queued, "the second task to be queued"))[0].task_id

            eng.proc.send_signal(signal.SIGTERM)

            async def draining() -> bool:
                return await _serving(eng.address) == health_pb2.HealthCheckResponse.NOT_SERVING

            await wait_for(draining, "the coordinator to report NOT_SERVING")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await eng.client.submit("say hello")
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "shutting down" in (refused.value.details() or "")
            rest = await http.post("/v1/responses", json={"model": "gpt-4.1", "input": "say hello"})
            assert rest.status_code == 503, rest.text
            assert rest.json()["error"]["code"] == "engine_unavailable"
            assert "shutting down" in rest.json()["error"]["message"]
            # The queued tasks are not started while the running one finishes.
            assert (await eng.client.get_task(kept_id)).state == pb.TASK_STATE_QUEUED

            answer = await running
            assert answer.status_code == 200, answer.text
            assert answer.json()["choices"][0]["message"]["content"] == \
                f"Toured Europe: {GORILLAS['Europe'].name}"
            told = await waiting
            assert told.status_code == 503, told.text
            assert told.headers["content-type"].startswith("application/json")
            assert told.headers["x-should-retry"] == "true"
            assert told.json()["error"]["code"] == "engine_unavailable"
            assert "submit it again" in told.json()["error"]["message"]
        assert await asyncio.wait_for(eng.proc.wait(), NO_HANG_S) == 0
    finally:
        for f in pending:
            f.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await eng.stop()

    async with Engine.create(overrides=overrides) as again:
        events = [ev async for ev in again.client.watch(kept_id)]
        dropped = await again.client.get_task(queued_id)
    assert dropped.state == pb.TASK_STATE_CANCELLED and "shutting down" in dropped.error, dropped
    kinds = [e.WhichOneof("kind") for e in events]
    assert kinds.count("started") == 1 and events[-1].HasField("completed"), kinds
    assert GORILLAS["Oceania"].name in events[-1].completed.result
