"""The coordinator process: gRPC server (BlastService, health, reflection), scheduler, supervisor.

Start-up: validate config → runtime dir (``rundir``) → load the task database → find
Chromium → start workers → serve → write the ready file.

SIGTERM or SIGINT only sets an event (the handler does nothing else); the main
coroutine then drains::

    SIGTERM ─▶ refuse new tasks at once (gRPC UNAVAILABLE; the gateway answers 503)
            ─▶ queued top-level tasks no longer start
            ─▶ running tasks get settings.drain_timeout_s to finish; their watchers and
               the gateway's waiting clients receive each task's end
            ─▶ what still runs is cancelled; queued tasks stay queued in the task database
               for the next start (without a database they are cancelled, with the reason)
            ─▶ the gateway stops (its clients already have their answers), then the
               workers; exit 0

Every long-lived loop belongs to one ``TaskSet`` (``supervise.py``): if one crashes the
coordinator logs the traceback, stops everything and exits 1, so that whatever
supervises it restarts it (the task database keeps the tasks across that restart).
Finished task trees are forgotten after ``settings.task_retention_s`` or beyond
``settings.max_task_records`` (``TaskStore.evict``), in memory and in the database.

At exit the coordinator ends every process still left in its tree (``orphans``: the
coordinator is their subreaper), so when it has exited no process of the engine is left.
API keys are never written to disk: the workers' config file has none (they need none)
and the gateway gets them in its environment (``BLAST_API_KEYS``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from .._proto.blast.v1 import blast_pb2 as pb
from .._proto.blast.v1 import blast_pb2_grpc as bgrpc
from .._proto.blast.worker.v1 import worker_pb2 as wpb
from .._proto.blast.worker.v1 import worker_pb2_grpc as wgrpc
from ..access import api_keys, is_loopback
from ..chromium import ChromiumNotFound, find_chromium
from ..client import ENGINE_SHUTDOWN_REASON
from ..config import Config
from ..httpserve import EmbeddedServer
from ..procutil import write_ready_file
from ..supervise import TaskSet, first_of
from ..workerlink import worker_token
from .auth import ApiKeyInterceptor
from .broker import TaskBroker
from .budget import Budget
from .cache import Cache
from .dashboard_proc import DashboardProcess
from .gateway_proc import GatewayProcess
from .human import HumanDesk
from .launch import Launcher
from .metrics import collect_metrics, memory_bytes
from .orphans import Orphans
from .persist import TaskDatabase
from .prewarm import Prewarmer
from .prometheus import metrics_app
from .reflection import enable_reflection
from .registry import WorkerPort
from .rundir import RuntimeDir
from .scheduler import Scheduler
from .service import BlastService
from .tasks import TaskRecord, TaskStore
from .workers import Supervisor, WorkerHandle

log = logging.getLogger("blast_grpc.coordinator")
RETENTION_CHECK_S = 60.0
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
        # The owner of every long-lived task of this process: a crash in one stops the coordinator.
        self.tasks = TaskSet()
        self.task_db = TaskDatabase(s.task_db_path, self.tasks) if s.task_db_path else None
        self.supervisor = Supervisor(config, self.config_path, self.runtime_dir, self._worker_changed,
                                     broker_address=f"unix://{self.runtime_dir}/broker.sock", orphans=self.orphans,
                                     tasks=self.tasks)
        self.budget = Budget(config)
        self.scheduler = Scheduler(config, self.store, lambda: self.workers, self._history, self.budget, self.tasks)
        self.store.on_finished.append(self.scheduler.telemetry.ended)  # counts every task's end
        self.cache = (Cache(s.cache_path, s.persist_cache) if s.cache_results or s.cache_plans else None)
        self.launcher = Launcher(config, self.store, self.scheduler, self.cache)
        self.prewarmer = Prewarmer(lambda: self.workers)  # contexts for announced subtasks, on any worker
        # People in the loop: open questions and pauses (human.py), for BlastService and the broker.
        self.human = HumanDesk(config, self.scheduler, lambda: self.workers)
        self.service = BlastService(config, self.store, self.scheduler, self.launcher, lambda: self.workers,
                                    self.human)
        # Workers call back (launch subtasks, wait for them, ask a person) on an internal socket only.
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
        self.gateway = (GatewayProcess(config, self.config_path, self.runtime_dir, keys, self.orphans)
                        if s.gateway else None)
        self.dashboard = (DashboardProcess(config, self.config_path, self.runtime_dir, keys, self.orphans)
                          if s.dashboard else None)
        # Workers on other hosts join here (registry.py); None: local workers only.
        self.worker_port = (WorkerPort(config, worker_token(s), self._broker(),
                                       {h.worker_id for h in self.supervisor.handles}, self._worker_changed, self.tasks)
                            if s.worker_listen else None)

    def _broker(self) -> TaskBroker:
        return TaskBroker(self.config, self.store, self.launcher, self.scheduler, self.budget, self.human,
                          self.prewarmer)

    @property
    def workers(self) -> list[WorkerHandle]:
        remote = self.worker_port.registry.handles if self.worker_port is not None else []
        return self.supervisor.handles + remote

    def _history(self, rec: TaskRecord) -> list[wpb.PriorTask]:
        return [wpb.PriorTask(description=p.spec.description, result=p.result or p.error)
                for p in self.store.lineage(rec)]

    def _worker_changed(self, _: WorkerHandle) -> None:
        self.scheduler.wake()

    async def _restore(self) -> None:
        """Load the tasks of earlier runs, requeue or fail those that had not ended, and write
        every new task down from now on."""
        db, s = self.task_db, self.config.settings
        if db is None:
            return
        interrupted = await db.load(self.store, s.task_retention_s, s.max_task_records)
        self.store.on_new.append(db.track)
        requeued, failed = db.recover(self.store, interrupted, self.launcher.resume)
        if requeued or failed:
            log.warning("the coordinator stopped with %d task(s) unfinished: %d queued again, %d ended as failed "
                        "(they had started)", requeued + failed, requeued, failed)

    async def _expire(self) -> None:
        """Forget finished task trees past the retention limits, now and then."""
        s = self.config.settings
        while True:
            gone = self.store.evict(time.time(), s.task_retention_s, s.max_task_records)
            if gone:
                log.info("forgot %d finished task record(s) (settings.task_retention_s / max_task_records)",
                         len(gone))
                if self.task_db is not None:
                    self.task_db.forget(gone)
            await asyncio.sleep(min(s.task_retention_s, RETENTION_CHECK_S))

    async def start(self) -> None:
        s = self.config.settings
        await self._restore()
        self.tasks.spawn(self._expire(), name="task-retention")
        bgrpc.add_BlastServiceServicer_to_server(self.service, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        enable_reflection([SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name], self.server)
        self.port = self.server.add_insecure_port(f"{s.host}:{s.grpc_port}")
        if self.port == 0:
            raise SystemExit(f"cannot listen on {s.host}:{s.grpc_port} (settings.host / settings.grpc_port)")
        wgrpc.add_TaskBrokerServiceServicer_to_server(self._broker(), self.internal)
        self.internal.add_insecure_port(self.broker_address)
        await self.internal.start()
        self.scheduler.start()
        if self.config.constraints.max_memory is not None:
            self.tasks.spawn(self._sample_memory(), name="memory-sampler")
        self.orphans.start(self.tasks)
        # Once, here, for every worker: off the loop, because the last resort (Playwright's own
        # download) asks Playwright's sync API, which refuses to run inside an event loop.
        # The look-up may start Playwright's driver, a child of ours: not an orphan to sweep.
        try:
            with self.orphans.launching():
                chromium = await asyncio.to_thread(find_chromium, s.local_browser_path)
        except ChromiumNotFound as exc:
            raise SystemExit(f"blast-grpc: {exc}") from None
        log.info("Chromium: %s", chromium)
        if self.worker_port is not None:
            await self.worker_port.start()
        await self.supervisor.start(chromium)
        await self.server.start()
        if s.metrics_port is not None:
            app = metrics_app(lambda: collect_metrics(self.store, self.scheduler, self.workers), self.keys,
                              self.scheduler.telemetry.collectors)
            self.metrics_server = EmbeddedServer(app, s.host, s.metrics_port)
            port = await self.metrics_server.start()
            if not self.keys and not is_loopback(s.host):
                log.warning("the Prometheus /metrics endpoint on %s:%d is open to the network: no API key is set "
                            "(settings.api_keys or BLAST_API_KEYS)", s.host, port)
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.gateway is not None:
            metrics_url = None
            if self.metrics_server is not None:  # the gateway's /metrics passes it on to Prometheus
                host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "") else s.host
                metrics_url = f"http://{f'[{host}]' if ':' in host else host}:{self.metrics_server.port}/metrics"
            url = await self.gateway.start(self.port, metrics_url=metrics_url)
            log.info("REST gateway (OpenAI-compatible) on %s", url)
        if self.dashboard is not None:
            log.info("web dashboard on %s", await self.dashboard.start(self.port))
        ready = sum(w.state == pb.WORKER_STATE_READY for w in self.workers)
        log.info("coordinator listening on %s:%d with %d/%d workers ready", s.host, self.port, ready, len(self.workers))

    async def _sample_memory(self) -> None:
        while True:
            self.scheduler.set_memory(await asyncio.to_thread(memory_bytes, self.workers))
            await asyncio.sleep(self.config.settings.memory_sample_s)

    async def drain(self, timeout: float | None = None) -> None:
        """Refuse new work, give running tasks ``timeout`` (``drain_timeout_s``), then stop everything."""
        self.service.draining = True
        self.scheduler.close_admission()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.scheduler.wait_idle(self.config.settings.drain_timeout_s if timeout is None else timeout)
        self.launcher.hedger.close()  # no held-back first-of-N copy starts from here on
        # With a task database, queued tasks wait there for the next start.
        await self.scheduler.stop(ENGINE_SHUTDOWN_REASON, keep_queued=self.task_db is not None)
        # Watchers of tasks that stay queued are told so; then the gateway goes: its clients
        # waiting on a task have received its end, or that it waits for the next start.
        self.service.close_watches()
        if self.gateway is not None:
            await self.gateway.stop()
        if self.dashboard is not None:
            await self.dashboard.stop()
        await self.server.stop(grace=1.0)
        await self.internal.stop(grace=0.5)
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        if self.worker_port is not None:
            await self.worker_port.stop()
        await self.supervisor.stop()
        await self.tasks.aclose()  # the memory sampler, the retention loop, anything left
        if self.cache is not None:
            await self.cache.close()
        if self.task_db is not None:
            await self.task_db.close()
        await self.orphans.finish()
        self.rundir.remove()


def _without_keys(config: Config) -> Config:
    """The config the workers and the gateway read from disk: no API keys (never on disk)."""
    safe = config.model_copy(deep=True)
    safe.settings.api_keys = []
    safe.settings.worker_token = None
    return safe


async def run_coordinator(config: Config, ready_file: str | None = None) -> int:
    """Serve until SIGTERM/SIGINT (exit 0 after draining) or a crashed loop (exit 1)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    problem = config.llm_problem()
    if problem:
        log.warning("%s", problem)
    coord = Coordinator(config)
    crashed = False
    try:
        await coord.start()
        if ready_file:
            write_ready_file(ready_file, {
                "grpc_address": f"{config.settings.host}:{coord.port}",
                "metrics_url": f"http://{config.settings.host}:{coord.metrics_server.port}/metrics"
                if coord.metrics_server else None,
                "gateway_url": coord.gateway.url if coord.gateway else None,
                "dashboard_url": coord.dashboard.url if coord.dashboard else None,
                "pid": os.getpid(),
                "runtime_dir": str(coord.runtime_dir),
                "worker_port": coord.worker_port.port if coord.worker_port else None,
            })
        await first_of(stop, coord.tasks.failed)
        crashed = coord.tasks.failed.is_set()
        if crashed:
            log.critical("stopping: %s", coord.tasks.crash)
        else:
            log.info("draining")
    finally:
        # After a crash nothing waits for running tasks: the process is in an unknown state.
        await coord.drain(0.0 if crashed else None)
    return 1 if crashed else 0
