"""The coordinator process: gRPC server (BlastService, health, reflection), scheduler, supervisor.

Start-up: validate config → runtime dir (``rundir``) → find Chromium → start workers
→ serve → write the ready file. SIGTERM or SIGINT only sets an event (the handler does
nothing else); the main coroutine then drains: refuse new tasks, let running ones finish
for ``settings.drain_timeout_s``, cancel the rest, stop the workers, end every process
still left in its tree (``orphans``: the coordinator is their subreaper), exit 0. When
it has exited, no process of the engine is left.

API keys are never written to disk: the workers' config file has none (they need none)
and the gateway gets them in its environment (``BLAST_API_KEYS``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .._proto.blast.v1 import blast_pb2 as pb
from .._proto.blast.v1 import blast_pb2_grpc as bgrpc
from .._proto.blast.worker.v1 import worker_pb2 as wpb
from .._proto.blast.worker.v1 import worker_pb2_grpc as wgrpc
from ..access import api_keys, is_loopback
from ..chromium import ChromiumNotFound, find_chromium
from ..config import Config
from ..httpserve import EmbeddedServer
from ..procutil import write_ready_file
from .auth import ApiKeyInterceptor
from .broker import TaskBroker
from .budget import Budget
from .cache import Cache
from .gateway_proc import GatewayProcess
from .launch import Launcher
from .metrics import collect_metrics, memory_bytes
from .orphans import Orphans
from .persist import TaskDatabase
from .prometheus import metrics_app
from .rundir import RuntimeDir
from .scheduler import Scheduler
from .service import BlastService
from .tasks import TaskRecord, TaskStore
from .workers import Supervisor, WorkerHandle

log = logging.getLogger("blast_grpc.coordinator")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["BlastService"].full_name


class Coordinator:
    """Owns the runtime directory, the workers, the scheduler and the gRPC server."""

    def __init__(self, config: Config) -> None:
        self.config = config
        s = config.settings
        self.orphans = Orphans()
        self.rundir = RuntimeDir(s.runtime_dir)
        self.runtime_dir = self.rundir.path
        self.config_path = self.runtime_dir / "config.json"
        self.config_path.write_text(_without_keys(config).model_dump_json())
        self.store = TaskStore()
        self.task_db = TaskDatabase(s.task_db_path) if s.task_db_path else None
        self.supervisor = Supervisor(config, self.config_path, self.runtime_dir, self._worker_changed,
                                     broker_address=f"unix://{self.runtime_dir}/broker.sock", orphans=self.orphans)
        self.budget = Budget(config)
        self.scheduler = Scheduler(config, lambda: self.workers, self._history, self.budget)
        self.cache = (Cache(s.cache_path, s.persist_cache) if s.cache_results or s.cache_plans else None)
        self.launcher = Launcher(config, self.store, self.scheduler, self.cache)
        self.service = BlastService(config, self.store, self.scheduler, self.launcher, self.workers)
        # Workers call back (launch subtasks, wait for them) on an internal socket only.
        self.broker_address = f"unix://{self.runtime_dir}/broker.sock"
        self.internal = grpc.aio.server()
        self.health = health.aio.HealthServicer()
        keys = self.keys = api_keys(s.api_keys)
        self.server = grpc.aio.server(
            options=[("grpc.max_receive_message_length", 8 * 1024 * 1024)],
            interceptors=[ApiKeyInterceptor(keys)] if keys else [],
        )
        if not keys and not is_loopback(s.host):
            log.warning("the gRPC API on %s:%s is open to the network: no API key is set "
                        "(settings.api_keys or BLAST_API_KEYS)", s.host, s.grpc_port)
        self.port = 0
        self.metrics_server: EmbeddedServer | None = None
        self._memory_task: asyncio.Task[None] | None = None
        self.gateway = (GatewayProcess(config, self.config_path, self.runtime_dir, keys, self.orphans)
                        if s.gateway else None)

    @property
    def workers(self) -> list[WorkerHandle]:
        return self.supervisor.handles

    def _history(self, rec: TaskRecord) -> list[wpb.PriorTask]:
        return [wpb.PriorTask(description=p.spec.description, result=p.result or p.error)
                for p in self.store.lineage(rec)]

    def _worker_changed(self, _: WorkerHandle) -> None:
        self.scheduler.wake()

    def _restore(self) -> None:
        """Load the tasks of earlier runs and write every task down when it starts and ends."""
        db = self.task_db
        if db is None:
            return
        interrupted = db.load_into(self.store)
        if interrupted:
            log.warning("%d task(s) were queued or running when the coordinator stopped; marked failed",
                        interrupted)

        def track(rec: TaskRecord) -> None:
            db.save(rec)
            rec.on_done.append(db.save)

        self.store.on_new.append(track)

    async def start(self) -> None:
        s = self.config.settings
        self._restore()
        bgrpc.add_BlastServiceServicer_to_server(self.service, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self.server,
        )
        self.port = self.server.add_insecure_port(f"{s.host}:{s.grpc_port}")
        if self.port == 0:
            raise SystemExit(f"cannot listen on {s.host}:{s.grpc_port} (settings.host / settings.grpc_port)")
        wgrpc.add_TaskBrokerServiceServicer_to_server(TaskBroker(self.config, self.store, self.launcher, self.scheduler, self.budget),
                                                      self.internal)
        self.internal.add_insecure_port(self.broker_address)
        await self.internal.start()
        self.scheduler.start()
        if self.config.constraints.max_memory is not None:
            self._memory_task = asyncio.create_task(self._sample_memory(), name="memory-sampler")
        self.orphans.start()
        # Once, here, for every worker: off the loop, because the last resort (Playwright's own
        # download) asks Playwright's sync API, which refuses to run inside an event loop.
        try:
            chromium = await asyncio.to_thread(find_chromium, s.local_browser_path)
        except ChromiumNotFound as exc:
            raise SystemExit(f"blast-grpc: {exc}") from None
        log.info("Chromium: %s", chromium)
        await self.supervisor.start(chromium)
        await self.server.start()
        if s.metrics_port is not None:
            app = metrics_app(lambda: collect_metrics(self.store, self.scheduler, self.workers), self.keys)
            self.metrics_server = EmbeddedServer(app, s.host, s.metrics_port)
            port = await self.metrics_server.start()
            if not self.keys and not is_loopback(s.host):
                log.warning("the Prometheus /metrics endpoint on %s:%d is open to the network: no API key is set "
                            "(settings.api_keys or BLAST_API_KEYS)", s.host, port)
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.gateway is not None:
            url = await self.gateway.start(self.port)
            log.info("REST gateway (OpenAI-compatible) on %s", url)
        ready = sum(w.state == pb.WORKER_STATE_READY for w in self.workers)
        log.info("coordinator listening on %s:%d with %d/%d workers ready", s.host, self.port, ready, len(self.workers))

    async def _sample_memory(self) -> None:
        while True:
            self.scheduler.set_memory(await asyncio.to_thread(memory_bytes, self.workers))
            await asyncio.sleep(self.config.settings.memory_sample_s)

    async def drain(self) -> None:
        """Refuse new work, give running tasks ``drain_timeout_s``, then stop everything."""
        self.service.draining = True
        if self.gateway is not None:
            await self.gateway.stop()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.scheduler.wait_idle(self.config.settings.drain_timeout_s)
        await self.scheduler.stop("the engine is shutting down")
        if self._memory_task is not None:
            self._memory_task.cancel()
            await asyncio.gather(self._memory_task, return_exceptions=True)
        await self.server.stop(grace=1.0)
        await self.internal.stop(grace=0.5)
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        await self.supervisor.stop()
        if self.cache is not None:
            self.cache.close()
        if self.task_db is not None:
            self.task_db.close()
        await self.orphans.finish()
        self.rundir.remove()


def _without_keys(config: Config) -> Config:
    """The config the workers and the gateway read from disk: no API keys (never on disk)."""
    safe = config.model_copy(deep=True)
    safe.settings.api_keys = []
    return safe


async def run_coordinator(config: Config, ready_file: str | None = None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    problem = config.llm_problem()
    if problem:
        log.warning("%s", problem)
    coord = Coordinator(config)
    try:
        await coord.start()
        if ready_file:
            write_ready_file(ready_file, {
                "grpc_address": f"{config.settings.host}:{coord.port}",
                "metrics_url": f"http://{config.settings.host}:{coord.metrics_server.port}/metrics"
                if coord.metrics_server else None,
                "gateway_url": coord.gateway.url if coord.gateway else None,
                "pid": os.getpid(),
                "runtime_dir": str(coord.runtime_dir),
            })
        await stop.wait()
        log.info("draining")
    finally:
        await coord.drain()
    return 0
