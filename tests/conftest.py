"""Shared fixtures: one simulated model, one demo site and one engine for the whole session.

The simulated model also runs the ``miniwob`` policy: it plays only tasks that say
"Do the MiniWoB task on ..." (tests/miniwob), every other task goes to the scenarios.

Every server runs as a real process (or thread, for the static demo site) on
127.0.0.1 with port 0; everything is stopped at the end of the session. Tests that
break an engine (kill a worker, bad config) start their own with ``start_engine``.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, async_playwright

from blast_grpc import Client, Engine
from blast_grpc.chromium import CHROMIUM_ARGS, find_chromium
from blast_grpc.demo_site.server import DemoSite
from blast_grpc.procutil import stop_process, wait_ready_file

ROOT = Path(__file__).resolve().parent.parent
TEST_SIM = Path(__file__).resolve().parent / "sim"
TEST_SCENARIOS = TEST_SIM / "scenarios"


class Sim:
    """The simulated model server, run as a subprocess."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.root = base_url.removesuffix("/v1")

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.root}/sim/stats").json())

    def inject(self, *kinds: str, model: str | None = None) -> None:
        r = httpx.post(f"{self.root}/sim/faults", json={"faults": [{"kind": k} for k in kinds], "model": model})
        r.raise_for_status()

    def requests(self) -> list[str]:
        """The bodies of the recent chat completion requests, as the model received them."""
        return list(httpx.get(f"{self.root}/sim/requests").json()["requests"])

    def reset(self) -> None:
        """Clear the counts, the recorded requests and pending faults."""
        httpx.post(f"{self.root}/sim/reset").raise_for_status()


@contextlib.contextmanager
def sim_process(host: str = "127.0.0.1") -> Iterator[Sim]:
    """A simulated model server listening on ``host`` (tests/netns.py hosts need one on their bridge)."""
    with tempfile.TemporaryDirectory() as d:
        ready = Path(d) / "sim.json"
        proc = subprocess.Popen(
            [sys.executable, "-m", "blast_grpc", "sim-llm", "--host", host, "--port", "0", "--ready-file", str(ready),
             "--scenarios", str(ROOT / "blast_grpc" / "sim" / "scenarios"), "--scenarios", str(TEST_SCENARIOS),
             "--latency", str(TEST_SIM / "latency.yaml"), "--policy", "miniwob"],
            start_new_session=True,
        )
        try:
            info = wait_ready_file(ready, proc)
            yield Sim(str(info["base_url"]))
        finally:
            stop_process(proc)


@pytest.fixture(scope="session")
def sim() -> Iterator[Sim]:
    with sim_process() as s:
        yield s


@pytest.fixture(scope="session")
def site() -> Iterator[DemoSite]:
    with DemoSite(host="127.0.0.1", port=0) as s:
        yield s


def engine_overrides(sim: Sim, constraints: dict[str, Any] | None = None, **settings: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "grpc_port": 0,
        "metrics_port": 0,
        "workers": 2,
        "max_steps": 12,
        "llm_endpoints": {"default": {"base_url": sim.base_url}},
        "llm_max_retries": 3,
        "llm_timeout_s": 20,
        "worker_restart_backoff_s": 0.2,
        "drain_timeout_s": 5,
        "allow_loopback": True,  # the demo site and the simulated model live on 127.0.0.1
        # Tests repeat tasks on purpose; the caches have their own engine in test_cache.py.
        "cache_results": False,
        "cache_plans": False,
        "task_db_path": None,  # the restart test gives its engine a database of its own
        "logs_dir": None,  # stderr only; the tests that read log files give their engine a directory
    }
    base.update(settings)
    return {"settings": base, "constraints": constraints or {}}


@pytest_asyncio.fixture(scope="session")
async def engine(sim: Sim) -> AsyncIterator[Engine]:
    eng = await Engine.create(overrides=engine_overrides(sim))
    try:
        yield eng
    finally:
        await eng.stop()


@pytest_asyncio.fixture(scope="session")
async def client(engine: Engine) -> Client:
    return engine.client


@pytest_asyncio.fixture(scope="module")
async def chromium() -> AsyncIterator[Browser]:
    """One real Chromium driven directly (no engine), for tests of the worker's parts."""
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=await asyncio.to_thread(find_chromium), args=CHROMIUM_ARGS,
                                     headless=True)
        try:
            yield b
        finally:
            await b.close()


@contextlib.asynccontextmanager
async def tcp_server(serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
                     ) -> AsyncIterator[int]:
    """A raw TCP server on 127.0.0.1, port 0, running ``serve`` for each connection; yields the port.

    A client that goes away mid-conversation is not an error; on exit every connection's
    handler is cancelled and awaited, so nothing outlives the block.
    """
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            handlers.discard(task)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for t in list(handlers):
            t.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()
