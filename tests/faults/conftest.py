"""Helpers for the fault suite: real engines, real Chromium, the simulated model, and ways to break them.

``strict`` is one private engine shared by the modules of this package that do not
break it: small deadlines (so a hang shows up as a failure within seconds), a secrets
file, and debug logging written to a file the tests can read (``StrictEngine.log``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, TypeVar

import psutil
import pytest_asyncio

from blast_grpc import Client, Engine
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.states import ends_task

from ..conftest import Sim, engine_overrides

T = TypeVar("T")

# Small deadlines for the strict engine: every wait in the engine has one of these. (llm_timeout_s
# leaves the simulated model room on a busy machine; the step limit exceeds two tries of a request.)
STRICT: dict[str, Any] = {"llm_timeout_s": 4, "llm_max_retries": 1, "action_timeout_s": 3, "step_timeout_s": 20}
NO_HANG_S = 90.0  # generous bound proving "no hang" (pytest's own timeout is 120 s); never a performance claim


async def collect(client: Client, task: str, **kw: Any) -> list[pb.TaskEvent]:
    """Run a task and return every event of it (and of its subtasks), in order."""
    return [ev async for ev in client.run(task, stream=True, **kw)]


async def watch_all(client: Client, task_id: str) -> list[pb.TaskEvent]:
    """Every event of a task from the first, until it ends."""
    return [ev async for ev in client.watch(task_id, from_seq=1)]


def steps(events: list[pb.TaskEvent]) -> list[pb.TaskStep]:
    return [e.step for e in events if e.HasField("step")]


def final(events: list[pb.TaskEvent]) -> pb.TaskEvent:
    last = events[-1]
    assert ends_task(last), last
    return last


async def wait_for(predicate: Callable[[], Awaitable[T]], what: str, timeout: float = NO_HANG_S,
                   interval: float = 0.05) -> T:
    """Poll until ``predicate`` returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout:g}s")
        await asyncio.sleep(interval)


def now(fn: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """``fn`` as the async predicate ``wait_for`` takes."""

    async def call() -> T:
        return fn()

    return call


async def worker_pid(client: Client, worker_id: str) -> int:
    return next(w.pid for w in (await client.metrics()).workers if w.worker_id == worker_id)


async def pool_ready(client: Client, workers: int) -> list[pb.WorkerInfo]:
    ws = list((await client.metrics()).workers)
    return ws if len(ws) == workers and all(w.state == pb.WORKER_STATE_READY for w in ws) else []


def chromium_pid(worker: int) -> int | None:
    """The main Chromium process a worker's Playwright launched (the one Playwright talks to over a pipe)."""
    with contextlib.suppress(psutil.Error):
        for p in psutil.Process(worker).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                cmd = p.cmdline()  # its renderers and helpers have --type=...
                if "--remote-debugging-pipe" in cmd and not any(a.startswith("--type=") for a in cmd):
                    return p.pid
    return None


def reader_pids(worker: int) -> list[int]:
    """The worker's extraction reader processes (spawned multiprocessing children)."""
    out = []
    with contextlib.suppress(psutil.Error):
        for p in psutil.Process(worker).children():
            with contextlib.suppress(psutil.Error):
                if p.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(p.cmdline()):
                    out.append(p.pid)
    return sorted(out)


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Point this process's fd 2 at ``path`` for the block: children started inside inherit it."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as f:
        os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@dataclass
class StrictEngine:
    engine: Engine
    log: Path  # everything the coordinator and its workers wrote to stderr (debug level)
    secret_value: str  # the value of secret ORDER_ITEM

    @property
    def client(self) -> Client:
        return self.engine.client


@pytest_asyncio.fixture(scope="package")
async def strict(sim: Sim) -> AsyncIterator[StrictEngine]:
    with tempfile.TemporaryDirectory(prefix="blast-faults-") as d:
        value = f"hush-{secrets.token_hex(6)}"  # the shape tests/sim/scenarios/test_tasks.yaml watches for
        secrets_file = Path(d) / "secrets.env"
        secrets_file.write_text(f"# test secrets\nORDER_ITEM={value}\nexport UNUSED_TOKEN='not used'\n")
        log = Path(d) / "engine.log"
        # One worker and no extraction readers: these tests run one task at a time and never extract.
        overrides = engine_overrides(sim, {"allow_parallelism": {"data": False}}, workers=1,
                                     secrets_file_path=str(secrets_file), blastai_log_level="debug", **STRICT)
        with stderr_to(log):
            eng = await Engine.create(overrides=overrides)
        try:
            yield StrictEngine(eng, log, value)
        finally:
            await eng.stop()


@pytest_asyncio.fixture
async def clean_sim(sim: Sim) -> AsyncIterator[Sim]:
    """The session's simulated model with no pending faults before and after the test."""

    async def settled() -> bool:
        return not sim.stats()["stalled_now"]

    await wait_for(settled, "the simulated model to let go of held requests")
    sim.reset()
    try:
        yield sim
    finally:
        await wait_for(settled, "the simulated model to let go of held requests")
        sim.reset()
