"""Worker handles and the local supervisor.

The scheduler only sees ``WorkerHandle``s: an id, a gRPC address, a state and the
tasks it runs. Nothing else assumes a worker is a local process; ``Supervisor``
is the one place that starts worker processes, notices a dead one through its exit
(``asyncio`` waits on the child, no polling), ends what the dead one left (``Orphans``:
its driver, Chromium and readers; its ``$TMPDIR`` with Chromium's profile folders) and
restarts it with backoff::

    STARTING ──ready──▶ READY ──exit──▶ DEAD ──backoff──▶ STARTING
        └──────────── fails to start ──────┘          (STOPPING on shutdown)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import grpc

from .._proto.blast.v1 import blast_pb2 as pb
from .._proto.blast.worker.v1 import worker_pb2 as wpb
from .._proto.blast.worker.v1 import worker_pb2_grpc as wgrpc
from ..config import Config
from ..extraction import cleanup_blocks
from ..procutil import kill_group, stop_processes
from ..supervise import TaskSet
from ..worker.exits import exit_reason
from .orphans import Orphans

log = logging.getLogger("blast_grpc.supervisor")


@dataclass
class WorkerHandle:
    worker_id: str
    address: str
    state: int = pb.WORKER_STATE_STARTING
    running: set[str] = field(default_factory=set)
    restarts: int = 0
    pid: int = 0
    last_exit: str = ""
    channel: grpc.aio.Channel | None = None
    stub: wgrpc.WorkerServiceStub | None = None
    died: asyncio.Event = field(default_factory=asyncio.Event)

    async def connect(self) -> None:
        await self.disconnect()
        self.channel = grpc.aio.insecure_channel(self.address)
        self.stub = wgrpc.WorkerServiceStub(self.channel)

    async def disconnect(self) -> None:
        if self.channel is not None:
            await self.channel.close(grace=None)
        self.channel, self.stub = None, None

    async def status(self, timeout: float = 2.0) -> wpb.GetStatusResponse | None:
        """The worker's own account of itself, or None if it gave none within ``timeout`` seconds.

        Never hangs and never raises for the worker's sake: when the worker dies the supervisor
        closes its channel, which cancels a call in flight (grpc.aio raises ``CancelledError`` in the
        caller); that is "no answer", unless this task itself is being cancelled.
        """
        stub = self.stub
        if stub is None:
            return None
        try:
            return await stub.GetStatus(wpb.GetStatusRequest(), timeout=timeout)
        except (grpc.aio.AioRpcError, grpc.aio.UsageError):  # UsageError: the channel closed before the call
            return None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            return None


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    why = exit_reason(code)
    return f"exited with code {code}: {why}" if why else f"exited with code {code}"


class Supervisor:
    """Starts ``settings.workers`` local worker processes and keeps that many alive."""

    def __init__(self, config: Config, config_path: Path, runtime_dir: Path,
                 on_change: Callable[[WorkerHandle], None], broker_address: str, orphans: Orphans,
                 tasks: TaskSet | None = None) -> None:
        self.config = config
        # Owner of the keep-alive loops: one that crashes stops the coordinator (supervise.py).
        self.tasks = tasks if tasks is not None else TaskSet()
        self.broker_address = broker_address
        self.config_path = config_path
        self.runtime_dir = runtime_dir
        self.on_change = on_change
        self.chromium = ""  # resolved once by the coordinator (find_chromium), given to start()
        self.orphans = orphans
        self.handles = [
            WorkerHandle(f"w{i + 1}", f"unix://{runtime_dir}/w{i + 1}.sock") for i in range(config.settings.workers)
        ]
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self._first_ready = asyncio.Event()

    async def start(self, chromium: str) -> None:
        """Start every worker and wait until at least one is ready (or all failed once)."""
        self.chromium = chromium
        if not self.handles:  # workers: 0, every worker is remote (coordinator/registry.py)
            return
        for h in self.handles:
            self._tasks[h.worker_id] = self.tasks.spawn(self._keep_alive(h), name=f"supervise-{h.worker_id}")
        try:
            await asyncio.wait_for(self._first_ready.wait(), self.config.settings.worker_start_timeout_s)
        except TimeoutError:
            log.error("no worker became ready within %.0fs; tasks wait until one does",
                      self.config.settings.worker_start_timeout_s)

    def tmp_dir(self, h: WorkerHandle) -> Path:
        """The worker's ``$TMPDIR``: Chromium's profile folders live there, removed with the worker."""
        return self.runtime_dir / f"{h.worker_id}.tmp"

    async def _spawn(self, h: WorkerHandle) -> asyncio.subprocess.Process:
        sock = h.address.removeprefix("unix://")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sock)
        tmp = self.tmp_dir(h)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(mode=0o700)
        with self.orphans.launching():
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "blast_grpc.worker",
                "--worker-id", h.worker_id, "--address", h.address, "--config", str(self.config_path),
                "--broker", self.broker_address, "--chromium", self.chromium,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # its own process group, apart from the coordinator's
                env={**os.environ, "TMPDIR": str(tmp)},
            )
            self.orphans.known.add(proc.pid)
        self._procs[h.worker_id] = proc
        h.pid = proc.pid
        return proc

    def _bury(self, h: WorkerHandle, proc: asyncio.subprocess.Process) -> None:
        """After a worker exited: end what it left (driver, Chromium, readers) and remove its files."""
        kill_group(proc.pid)
        self.orphans.known.discard(proc.pid)
        self.orphans.collect()  # its children were re-parented to the coordinator
        # The worker created these shared-memory blocks and can no longer unlink them.
        cleanup_blocks(h.worker_id, keep_live_owners=False, pid=proc.pid)
        shutil.rmtree(self.tmp_dir(h), ignore_errors=True)

    async def _wait_ready(self, h: WorkerHandle, proc: asyncio.subprocess.Process) -> bool:
        await h.connect()
        deadline = time.monotonic() + self.config.settings.worker_start_timeout_s
        while time.monotonic() < deadline and proc.returncode is None:
            st = await h.status(timeout=1.0)
            if st is not None and st.browser_ready:
                return True
            await asyncio.sleep(0.05)
        return False

    async def _keep_alive(self, h: WorkerHandle) -> None:
        s = self.config.settings
        backoff = s.worker_restart_backoff_s
        while not self._stopping:
            h.state = pb.WORKER_STATE_STARTING
            h.died = asyncio.Event()
            proc = await self._spawn(h)
            started = time.monotonic()
            if await self._wait_ready(h, proc):
                h.state = pb.WORKER_STATE_READY
                self._first_ready.set()
                log.info("worker %s ready (pid %d)", h.worker_id, proc.pid)
                self.on_change(h)
            elif not self._stopping and proc.returncode is None:
                log.error("worker %s did not become ready within %.0fs", h.worker_id, s.worker_start_timeout_s)
                kill_group(proc.pid)
            code = await proc.wait()
            self._bury(h, proc)
            h.last_exit = _describe_exit(code)
            if self._stopping:
                break
            h.state = pb.WORKER_STATE_DEAD
            h.died.set()
            await h.disconnect()
            log.warning("worker %s (pid %d) %s; restarting", h.worker_id, proc.pid, h.last_exit)
            self.on_change(h)
            h.restarts += 1
            if time.monotonic() - started > 60:
                backoff = s.worker_restart_backoff_s
            await asyncio.sleep(backoff)
            backoff = min(max(backoff * 2, 0.1), s.worker_restart_backoff_max_s)
        h.state = pb.WORKER_STATE_STOPPING

    async def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM every worker, SIGKILL what is left after ``timeout``; idempotent."""
        self._stopping = True
        for h in self.handles:
            h.state = pb.WORKER_STATE_STOPPING
        # The whole group gets SIGTERM: the worker's driver and Chromium close with it.
        await stop_processes(list(self._procs.values()), timeout, term_group=True)
        for t in self._tasks.values():
            t.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        for h in self.handles:
            await h.disconnect()
