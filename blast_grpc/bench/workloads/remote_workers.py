"""Workload 8: the coordinator's capacity with many remote workers, and throughput against hosts.

A real coordinator (``workers: 0``, ``worker_listen`` on loopback) and W simulated remote
workers in this process. Each speaks the real protocol over loopback TCP with the worker
token: it serves ``WorkerService`` on a port of its own, heartbeats to the coordinator's
``WorkerRegistryService`` with capacity C, and runs each task instantly (K steps, then completed,
no browser, no model). So the coordinator does all of its real work per task (queue,
placement, the ``RunTask`` stream, events, watchers) and the workers do next to nothing.
The workers and the client share this process (and the machine's cores) with nothing else
of the engine: the figures are a lower bound of what the coordinator alone can do.

Figures: tasks per second and events per second (every event the coordinator emitted for
them: scheduled, started, K steps, completed) with T tasks kept in flight; scheduling
latency, from each task's ``scheduled`` event to its ``started`` event (the coordinator's
own timestamps), p50 and p99; how the tasks spread over the workers.

Model of throughput against hosts: one real host runs tasks at ``per_host`` tasks/s at its
saturation (the concurrency workload's best throughput in ``bench/results/latest.json``, a
2-core host), so H hosts run ``min(H * per_host, coordinator)`` tasks/s, where
``coordinator`` is the tasks/s measured here for the same number of events per task. Real
tasks emit more events per task than these (K is set to the concurrency workload's S), and
a host would saturate its own CPU long before its network link, so the ceiling is the
coordinator's; ``H* = coordinator / per_host`` hosts reach it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

import grpc

from ..._proto.blast.v1 import blast_pb2 as pb
from ..._proto.blast.worker.v1 import worker_pb2 as wpb
from ..._proto.blast.worker.v1 import worker_pb2_grpc as wgrpc
from ...config import Settings
from ...coordinator.auth import WorkerTokenInterceptor
from ...engine import Engine
from ...workerlink import channel
from ..context import BenchContext
from ..results import Row, WorkloadResult
from ..stats import percentile
from ..trace import ev_time

NAME = "remote_workers"
TOKEN = "bench-worker-token"
RESULTS = Path(__file__).resolve().parents[3] / "bench" / "results" / "latest.json"


class FakeWorker(wgrpc.WorkerServiceServicer):
    """A remote worker without a browser: every task is K steps and done, at once."""

    def __init__(self, worker_id: str, steps: int, settings: Settings) -> None:
        self.worker_id = worker_id
        self.steps = steps
        self.settings = settings
        self.ran = 0
        self.server = grpc.aio.server(interceptors=[WorkerTokenInterceptor([TOKEN])])
        wgrpc.add_WorkerServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.instance = uuid.uuid4().hex
        self.running: set[str] = set()
        self.joined = asyncio.Event()  # the registry answered a heartbeat: the coordinator lists it ready

    async def RunTask(self, request: wpb.RunTaskRequest,
                      context: grpc.aio.ServicerContext) -> AsyncIterator[wpb.RunTaskResponse]:
        self.running.add(request.task_id)
        try:
            for i in range(1, self.steps + 1):
                yield wpb.RunTaskResponse(step=pb.TaskStep(number=i, action="noop()", result="ok"))
            self.ran += 1
            yield wpb.RunTaskResponse(completed=pb.TaskCompleted(result="done", success=True))
        finally:
            self.running.discard(request.task_id)

    async def GetStatus(self, request: wpb.GetStatusRequest, context: grpc.aio.ServicerContext) -> wpb.GetStatusResponse:
        return wpb.GetStatusResponse(worker_id=self.worker_id, browser_ready=True)

    async def TrimIdle(self, request: wpb.TrimIdleRequest, context: grpc.aio.ServicerContext) -> wpb.TrimIdleResponse:
        return wpb.TrimIdleResponse()

    async def heartbeats(self, coordinator: str, capacity: int) -> None:
        ch = channel(coordinator, self.settings, TOKEN)
        stub = wgrpc.WorkerRegistryServiceStub(ch)
        try:
            while True:
                resp = await stub.Heartbeat(wpb.HeartbeatRequest(
                    worker_id=self.worker_id, instance=self.instance, address=f"127.0.0.1:{self.port}",
                    contexts=capacity, memory_bytes=1 << 30, running=sorted(self.running)), timeout=10)
                self.joined.set()
                await asyncio.sleep(resp.interval_s)
        finally:
            await ch.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def per_host_tasks_per_s() -> tuple[float | None, str]:
    """The concurrency workload's best throughput (tasks/s) in the latest full run, and its params."""
    try:
        doc = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        return None, ""
    rows = [r for r in doc.get("rows", []) if r.get("workload") == "concurrency" and r.get("figure") == "throughput"
            and r.get("measured")]
    if not rows:
        return None, ""
    best = max(rows, key=lambda r: r["measured"])
    params = ", ".join(f"{k}={v}" for k, v in best["params"].items())
    return float(best["measured"]) / 60.0, params  # tasks/min in that table


async def run(ctx: BenchContext) -> WorkloadResult:
    res = WorkloadResult(NAME)
    workers, capacity, steps = (10, 4, 3) if ctx.quick else (50, 4, 3)
    tasks, in_flight = (200, 40) if ctx.quick else (3000, workers * capacity)
    params: dict[str, Any] = {"W": workers, "C": capacity, "K": steps, "tasks": tasks, "in_flight": in_flight}
    port = _free_port()
    overrides = {"settings": {
        "grpc_port": 0, "metrics_port": None, "workers": 0, "gateway": False, "task_db_path": None,
        "cache_results": False, "llm_endpoints": {"default": {"base_url": "http://127.0.0.1:9/v1"}},  # never called "cache_plans": False, "logs_dir": None, "blastai_log_level": "warning",
        "worker_listen": f"127.0.0.1:{port}", "worker_token": TOKEN, "worker_heartbeat_s": 1.0,
        "worker_heartbeat_timeout_s": 30.0, "max_queued_tasks": tasks + 10},
        "constraints": {"max_concurrent_browsers": min(1000, workers * capacity)}}
    base = ctx.workdir / "remote-base.yaml"
    base.write_text("{}\n", encoding="utf-8")
    settings = Settings()
    fakes = [FakeWorker(f"fake-{i + 1}", steps, settings) for i in range(workers)]
    async with Engine.create(str(base), overrides=overrides, timeout=180) as eng:
        beats = []
        for f in fakes:
            await f.server.start()
            beats.append(asyncio.create_task(f.heartbeats(f"127.0.0.1:{port}", capacity)))
        try:
            await asyncio.wait_for(asyncio.gather(*(f.joined.wait() for f in fakes)), 120)
            latencies, events, wall = await _drive(eng, tasks, in_flight)
        finally:
            for b in beats:
                b.cancel()
            await asyncio.gather(*beats, return_exceptions=True)
            for f in fakes:
                await f.server.stop(grace=None)
    tps, eps = tasks / wall, events / wall
    res.rows += [
        Row(NAME, "coordinator throughput, remote workers", params, tps, None, "tasks/s", better="higher"),
        Row(NAME, "coordinator events per second", params, eps, None, "events/s", better="higher"),
        Row(NAME, "scheduling latency p50 (scheduled → started)", params, percentile(latencies, 50) * 1000, None,
            "ms"),
        Row(NAME, "scheduling latency p99 (scheduled → started)", params, percentile(latencies, 99) * 1000, None,
            "ms"),
    ]
    spread = sorted(f.ran for f in fakes)
    res.notes.append(f"tasks per worker: min {spread[0]}, max {spread[-1]} (of {tasks} over {workers} workers)")
    host, where = per_host_tasks_per_s()
    if host is None:
        res.rows.append(Row(NAME, "hosts until the coordinator saturates (model)", params, None, None, "hosts",
                            note=f"no concurrency throughput in {RESULTS}: run the concurrency workload first"))
    else:
        knee = tps / host
        res.rows.append(Row(NAME, "hosts until the coordinator saturates (model)", params, knee, None, "hosts",
                            better="higher",
                            note=f"throughput(H) = min(H × {host:.2f}, {tps:.1f}) tasks/s; per host: the concurrency "
                                 f"workload's best ({where}) in bench/results/latest.json"))
        res.series["throughput_model"] = {
            "hosts": list(range(1, int(knee * 2) + 2)),
            "tasks_per_s": [min(h * host, tps) for h in range(1, int(knee * 2) + 2)],
            "per_host": host, "coordinator": tps,
        }
    return res


async def _drive(eng: Engine, tasks: int, in_flight: int) -> tuple[list[float], int, float]:
    """Run ``tasks`` tasks, ``in_flight`` at a time; their scheduling latencies, events and wall time."""
    client = eng.client
    latencies: list[float] = []
    events = 0
    todo = iter(range(tasks))

    async def lane() -> None:
        nonlocal events
        for _ in todo:
            scheduled = started = None
            async for ev in client.run("bench remote noop", stream=True):
                events += 1
                kind = ev.WhichOneof("kind")
                if kind in ("failed", "cancelled"):
                    raise RuntimeError(f"a bench task ended {kind}: {ev}")
                if kind == "scheduled" and scheduled is None:
                    scheduled = ev_time(ev)
                elif kind == "started" and started is None:
                    started = ev_time(ev)
            if scheduled is not None and started is not None:
                latencies.append(started - scheduled)

    t0 = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(in_flight)))
    return latencies, events, time.perf_counter() - t0
