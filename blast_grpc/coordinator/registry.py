"""Workers on other hosts: the coordinator's ``WorkerRegistryService`` (served on ``settings.worker_listen``).

Design: a remote worker (``blast-grpc worker --coordinator HOST:PORT``, worker/remote.py)
serves ``WorkerService`` on a TCP address of its own and heartbeats here with that address
and its capacity; the coordinator then dials it exactly as it dials a local worker's Unix
socket. So the scheduler sees one kind of ``WorkerHandle`` for both, and a task on a remote
worker is the same server-streaming ``RunTask`` call (cancel, retry and event relay unchanged).
The alternative, a reverse stream opened by the worker, would work through NAT but needs a
second protocol that multiplexes task streams over one call; workers in a cluster (pods) are
dialable, so the coordinator dials.

The registry owns the remote handles. Each one's life::

    (heartbeat) ──▶ READY ──no heartbeat for worker_heartbeat_timeout_s──▶ DEAD (lost)
                      │  ▲                                                  │
        draining ─────┘  └────────────── heartbeat again: reconciled ◀─────┘
          ▼
       STOPPING ──Deregister──▶ forgotten

Lost: ``died`` is set and the channel closed, which ends the worker's running ``RunTask``
calls; the scheduler then retries those tasks elsewhere (``task_retries_on_worker_death``).
A lost worker that heartbeats again keeps its id and handle (it is never listed twice); the
tasks it still runs were retried elsewhere, so the heartbeat's answer names them
(``stale_tasks``) and the worker drops them: their late updates reach no task. A heartbeat
with the same id but a new ``instance`` is the worker restarted: the old process is treated
as lost at once.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Callable

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from .._proto.blast.v1 import blast_pb2 as pb
from .._proto.blast.worker.v1 import worker_pb2 as wpb
from .._proto.blast.worker.v1 import worker_pb2_grpc as wgrpc
from ..config import Config
from ..supervise import TaskSet
from ..workerlink import MAX_MESSAGE, SERVER_KEEPALIVE, LinkError, add_port, channel, uses_tls
from .auth import WorkerTokenInterceptor
from .workers import WorkerHandle

log = logging.getLogger("blast_grpc.registry")

_WORKER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")
FORGET_LOST_AFTER = 10  # a lost worker is forgotten after this many heartbeat timeouts


@dataclass
class RemoteWorkerHandle(WorkerHandle):
    """A worker on another host: dialed over TCP with the worker token (and TLS if configured)."""

    instance: str = ""
    capacity: int = 0
    memory_bytes: int = 0
    last_seen: float = field(default_factory=time.monotonic)
    token: str = ""
    config: Config | None = None

    async def connect(self) -> None:
        await self.disconnect()
        assert self.config is not None
        self.channel = channel(self.address, self.config.settings, self.token)
        self.stub = wgrpc.WorkerServiceStub(self.channel)


def address_problem(address: str) -> str:
    m = _ADDRESS.match(address)
    if not m:
        return f"address {address!r} is not HOST:PORT"
    if not 0 < int(m.group(2)) < 65536:
        return f"address {address!r} has no valid port"
    if m.group(1) in ("0.0.0.0", "[::]"):
        return f"address {address!r} is a wildcard: give the address the coordinator can dial"
    return ""


class Registry(wgrpc.WorkerRegistryServiceServicer):
    def __init__(self, config: Config, token: str, local_ids: set[str],
                 on_change: Callable[[WorkerHandle], None], tasks: TaskSet) -> None:
        self.config = config
        self._token = token
        self._local_ids = local_ids
        self._on_change = on_change
        self._tasks = tasks
        self._by_id: dict[str, RemoteWorkerHandle] = {}
        self._watch: asyncio.Task[None] | None = None

    @property
    def handles(self) -> list[WorkerHandle]:
        return list(self._by_id.values())

    def start(self) -> None:
        self._watch = self._tasks.spawn(self._watch_heartbeats(), name="worker-heartbeats")

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        for h in self._by_id.values():
            h.state = pb.WORKER_STATE_STOPPING
            await h.disconnect()

    # --- RPCs ------------------------------------------------------------------
    async def Heartbeat(self, request: wpb.HeartbeatRequest,
                        context: grpc.aio.ServicerContext) -> wpb.HeartbeatResponse:
        problem = self._problem(request)
        if problem:
            log.warning("refused a heartbeat from worker %r: %s", request.worker_id, problem)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        h = self._by_id.get(request.worker_id)
        if h is not None and h.instance != request.instance and h.state != pb.WORKER_STATE_DEAD:
            self._lose(h, "replaced by a new process with the same worker id")
        if h is None:
            h = RemoteWorkerHandle(request.worker_id, request.address, token=self._token, config=self.config,
                                   instance=request.instance)
            self._by_id[h.worker_id] = h
            log.info("worker %s joined from %s (%d contexts)", h.worker_id, request.address, request.contexts)
        elif h.state == pb.WORKER_STATE_DEAD:
            h.restarts += 1
            h.died = asyncio.Event()
            log.info("worker %s is back (%s) after it was lost: %s", h.worker_id, request.address, h.last_exit)
        h.last_seen = time.monotonic()
        h.capacity, h.memory_bytes = request.contexts, request.memory_bytes
        if h.channel is None or h.address != request.address or h.instance != request.instance:
            h.address, h.instance = request.address, request.instance
            await h.connect()
        state = pb.WORKER_STATE_STOPPING if request.draining else pb.WORKER_STATE_READY
        if h.state != state:
            if request.draining:
                log.info("worker %s is draining: no new tasks go to it", h.worker_id)
            h.state = state
            self._on_change(h)
        # Whatever it runs that the coordinator does not expect from it was retried elsewhere.
        stale = [t for t in request.running if t not in h.running]
        return wpb.HeartbeatResponse(interval_s=self.config.settings.worker_heartbeat_s, stale_tasks=stale)

    async def Deregister(self, request: wpb.DeregisterRequest,
                         context: grpc.aio.ServicerContext) -> wpb.DeregisterResponse:
        h = self._by_id.get(request.worker_id)
        if h is not None and h.instance == request.instance:
            log.info("worker %s left", h.worker_id)
            self._forget(h, "it left (drained)")
        return wpb.DeregisterResponse()

    def _problem(self, r: wpb.HeartbeatRequest) -> str:
        if not _WORKER_ID.match(r.worker_id):
            return (f"worker_id {r.worker_id!r} must be 1-63 letters, digits, '.', '_' or '-', "
                    "starting with a letter or digit")
        if r.worker_id in self._local_ids:
            return f"worker_id {r.worker_id!r} is the id of one of the coordinator's local workers"
        if not r.instance:
            return "instance is empty"
        if r.contexts < 1:
            return f"contexts must be at least 1 (got {r.contexts})"
        return address_problem(r.address)

    # --- losing workers --------------------------------------------------------
    def _lose(self, h: RemoteWorkerHandle, why: str, left: bool = False) -> None:
        if not left or h.running:
            log.warning("worker %s (%s) lost: %s; its %d running task(s) go to other workers",
                        h.worker_id, h.address, why, len(h.running))
        h.last_exit = f"{'left' if left else 'lost'}: {why}"
        h.state = pb.WORKER_STATE_DEAD
        h.died.set()
        # Closing the channel ends its RunTask calls now: the scheduler retries their tasks.
        # (This channel only: a heartbeat may connect a new one before the close is done.)
        if h.channel is not None:
            self._tasks.spawn(h.channel.close(grace=None), name=f"disconnect-{h.worker_id}")
        h.channel, h.stub = None, None
        self._on_change(h)

    def _forget(self, h: RemoteWorkerHandle, why: str) -> None:
        if h.state != pb.WORKER_STATE_DEAD:
            self._lose(h, why, left=True)
        del self._by_id[h.worker_id]

    async def _watch_heartbeats(self) -> None:
        s = self.config.settings
        while True:
            await asyncio.sleep(min(s.worker_heartbeat_s, s.worker_heartbeat_timeout_s / 4))
            now = time.monotonic()
            for h in list(self._by_id.values()):
                silent = now - h.last_seen
                if h.state != pb.WORKER_STATE_DEAD and silent > s.worker_heartbeat_timeout_s:
                    self._lose(h, f"no heartbeat for {silent:.0f}s (settings.worker_heartbeat_timeout_s="
                                  f"{s.worker_heartbeat_timeout_s:g})")
                elif h.state == pb.WORKER_STATE_DEAD and silent > FORGET_LOST_AFTER * s.worker_heartbeat_timeout_s:
                    del self._by_id[h.worker_id]


class WorkerPort:
    """The coordinator's listener for remote workers (``settings.worker_listen``): the registry,
    ``TaskBrokerService`` (their agents' subtask and budget calls) and gRPC health, all behind
    the worker token and, when configured, TLS. Never the public API: a worker token opens
    nothing of ``BlastService``, an API key nothing of this."""

    def __init__(self, config: Config, token: str, broker: wgrpc.TaskBrokerServiceServicer, local_ids: set[str],
                 on_change: Callable[[WorkerHandle], None], tasks: TaskSet) -> None:
        if not token:
            raise SystemExit("blast-grpc: settings.worker_listen is set but there is no worker token: set "
                             "settings.worker_token or BLAST_WORKER_TOKEN (remote workers must present it)")
        self.config = config
        self.registry = Registry(config, token, local_ids, on_change, tasks)
        self.server = grpc.aio.server(options=SERVER_KEEPALIVE + MAX_MESSAGE,
                                      interceptors=[WorkerTokenInterceptor([token])])
        wgrpc.add_WorkerRegistryServiceServicer_to_server(self.registry, self.server)
        wgrpc.add_TaskBrokerServiceServicer_to_server(broker, self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = 0

    async def start(self) -> int:
        address = self.config.settings.worker_listen
        assert address is not None
        try:
            self.port = add_port(self.server, address, self.config.settings)
        except (LinkError, RuntimeError) as exc:
            raise SystemExit(f"blast-grpc: cannot listen for workers on {address}: {exc}") from None
        if self.port == 0:
            raise SystemExit(f"blast-grpc: cannot listen for workers on {address} (settings.worker_listen)")
        await self.server.start()
        self.registry.start()
        log.info("remote workers join at %s (port %d)%s", address, self.port,
                 " with TLS" if uses_tls(self.config.settings) else " WITHOUT TLS (settings.worker_tls_*)")
        return self.port

    async def stop(self) -> None:
        await self.server.stop(grace=0.5)
        await self.registry.stop()
