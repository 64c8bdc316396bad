"""A worker on another host: ``blast-grpc worker --coordinator HOST:PORT``.

The worker is the same process as a local one (main.py: one Chromium, ``WorkerService``);
this module is what differs when it joins a coordinator over TCP (coordinator/registry.py
has the design and the coordinator's side):

- it serves ``WorkerService`` on ``--address`` (default ``0.0.0.0:0``, any free port)
  behind the worker token and TLS (workerlink.py), plus gRPC health for probes;
- it heartbeats to the coordinator's ``WorkerRegistryService`` every ``worker_heartbeat_s`` with
  the address the coordinator should dial (``--advertise``, default: this host's address on
  the route to the coordinator, and the port bound), its capacity
  (``worker_max_contexts``, host memory) and the tasks it runs. The first heartbeat must
  succeed: a refused one (no or wrong token, bad id) exits at once with the reason
  (``EXIT_REFUSED``); later ones that fail are retried (the coordinator may be restarting
  or the network cut; it declares this worker lost meanwhile and reconciles it when the
  heartbeats come back, naming the tasks it retried elsewhere, which this worker drops);
- its agents call the coordinator's ``TaskBrokerService`` over the same link;
- on SIGTERM it drains: it tells the coordinator (no new tasks), lets running tasks finish
  for up to ``drain_timeout_s``, deregisters (the coordinator retries what still runs
  elsewhere) and only then stops.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import uuid

import grpc
import psutil
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from .._proto.blast.worker.v1 import worker_pb2 as wpb
from .._proto.blast.worker.v1 import worker_pb2_grpc as wgrpc
from ..config import Config
from ..coordinator.auth import WorkerTokenInterceptor
from ..supervise import TaskSet
from ..workerlink import MAX_MESSAGE, SERVER_KEEPALIVE, LinkError, add_port, channel
from .service import WorkerService

log = logging.getLogger("blast_grpc.worker.remote")

HEARTBEAT_TIMEOUT_S = 5.0
# Refusals that another try cannot fix: the worker exits with the reason.
_FATAL = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED,
          grpc.StatusCode.UNIMPLEMENTED}


class Refused(Exception):
    """The coordinator refused this worker; the message says why."""


def default_worker_id() -> str:
    """This host's name as a worker id (a pod's name on Kubernetes)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:63].lstrip("-._") or "worker"


def route_address(coordinator: str) -> str:
    """This host's address on the route to ``coordinator`` (no packet is sent: a UDP connect)."""
    host, _, port = coordinator.rpartition(":")
    host = host.strip("[]")
    info = socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)[0]
    with socket.socket(info[0], socket.SOCK_DGRAM) as s:
        s.connect(info[4])
        ip = str(s.getsockname()[0])
    return f"[{ip}]" if ":" in ip else ip


class RemoteLink:
    """Owns this worker's connection to its coordinator: the server's auth, heartbeats, drain."""

    def __init__(self, config: Config, worker_id: str, coordinator: str, token: str, advertise: str | None) -> None:
        if not token:
            raise LinkError("no worker token: set BLAST_WORKER_TOKEN, settings.worker_token or --token-file")
        self.config = config
        self.worker_id = worker_id
        self.coordinator = coordinator
        self.token = token
        self.advertise = advertise
        self.instance = uuid.uuid4().hex
        self.address = ""
        self.draining = False
        self.refused = ""  # why the coordinator refused this worker, once it did
        self._channel: grpc.aio.Channel | None = None  # made inside the event loop (open)
        self.health = health.aio.HealthServicer()
        self._loop: asyncio.Task[None] | None = None

    @property
    def channel(self) -> grpc.aio.Channel:
        """The channel to the coordinator's worker port (registry and broker calls)."""
        if self._channel is None:
            self._channel = channel(self.coordinator, self.config.settings, self.token)
        return self._channel

    @property
    def registry(self) -> wgrpc.WorkerRegistryServiceStub:
        return wgrpc.WorkerRegistryServiceStub(self.channel)

    # --- serving -----------------------------------------------------------------
    def server(self) -> grpc.aio.Server:
        server = grpc.aio.server(options=SERVER_KEEPALIVE + MAX_MESSAGE,
                                 interceptors=[WorkerTokenInterceptor([self.token])])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        return server

    def listen(self, server: grpc.aio.Server, address: str) -> int:
        """Bind ``address``; remember what the coordinator is to dial."""
        port = add_port(server, address, self.config.settings)
        if port:
            host = self.advertise or route_address(self.coordinator)
            self.address = host if re.search(r":\d+$", host) else f"{host}:{port}"
        return port

    def broker(self) -> wgrpc.TaskBrokerServiceStub:
        return wgrpc.TaskBrokerServiceStub(self.channel)

    # --- heartbeats ----------------------------------------------------------------
    def _request(self, service: WorkerService) -> wpb.HeartbeatRequest:
        return wpb.HeartbeatRequest(worker_id=self.worker_id, instance=self.instance, address=self.address,
                                    contexts=self.config.settings.worker_max_contexts,
                                    memory_bytes=psutil.virtual_memory().total, draining=self.draining,
                                    running=service.running_ids())

    async def beat(self, service: WorkerService) -> float:
        """One heartbeat; drops the tasks the coordinator retried elsewhere; the next interval."""
        try:
            resp = await self.registry.Heartbeat(self._request(service), timeout=HEARTBEAT_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _FATAL:
                raise Refused(f"the coordinator at {self.coordinator} refused worker {self.worker_id}: "
                              f"{exc.code().name}: {exc.details()}") from None
            raise
        for task_id in resp.stale_tasks:
            log.warning("task %s was retried elsewhere while this worker was cut off: dropping it", task_id)
            service.drop(task_id, "the coordinator lost this worker and retried the task elsewhere")
        return resp.interval_s or self.config.settings.worker_heartbeat_s

    def start(self, service: WorkerService, tasks: TaskSet, stop: asyncio.Event) -> None:
        """Join and keep heartbeating (owned by the worker's ``TaskSet``); a refusal sets
        ``refused`` and ``stop``: the worker exits ``EXIT_REFUSED``."""
        self._loop = tasks.spawn(self._heartbeats(service, stop), name="heartbeat")

    async def _heartbeats(self, service: WorkerService, stop: asyncio.Event) -> None:
        joined = failing = False
        interval = self.config.settings.worker_heartbeat_s
        while True:
            try:
                interval = await self.beat(service)
            except Refused as exc:
                log.critical("%s", exc)
                self.refused = str(exc)
                stop.set()
                return
            except grpc.aio.AioRpcError as exc:
                # Not there yet, restarting, or the network is cut: the coordinator reconciles later.
                if not failing:
                    log.warning("heartbeat to %s failed (%s: %s); retrying every %gs", self.coordinator,
                                exc.code().name, exc.details(), self.config.settings.worker_heartbeat_s)
                failing = True
                interval = self.config.settings.worker_heartbeat_s
            else:
                if not joined:
                    joined = True
                    await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
                    log.info("worker %s joined the coordinator at %s as %s", self.worker_id, self.coordinator,
                             self.address)
                elif failing:
                    log.info("heartbeats to %s go through again", self.coordinator)
                failing = False
            await asyncio.sleep(interval)

    # --- leaving -------------------------------------------------------------------
    async def drain(self, service: WorkerService) -> None:
        """SIGTERM: no new tasks, running ones finish (up to drain_timeout_s), then deregister."""
        self.draining = True
        await self.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        try:  # at once (the heartbeat loop goes on, saying "draining", so this worker is not lost)
            await self.beat(service)
        except (grpc.aio.AioRpcError, Refused) as exc:
            log.warning("could not tell the coordinator this worker drains: %s", exc)
        timeout = self.config.settings.drain_timeout_s
        log.info("worker %s draining: %d task(s) running, waiting up to %gs", self.worker_id,
                 len(service.running_ids()), timeout)
        try:
            await asyncio.wait_for(service.idle_event().wait(), timeout)
        except TimeoutError:
            log.warning("drain timeout: %d task(s) still running go back to the coordinator",
                        len(service.running_ids()))

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        if self.refused:
            await self.channel.close()
            return
        try:
            await self.registry.Deregister(wpb.DeregisterRequest(worker_id=self.worker_id, instance=self.instance),
                                           timeout=HEARTBEAT_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            log.warning("could not deregister from %s: %s (it declares this worker lost instead)",
                        self.coordinator, exc.details())
        await self.channel.close()
