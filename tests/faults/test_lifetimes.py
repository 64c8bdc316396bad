"""Nothing of the engine outlives it, nothing with a key is left on disk, and metrics never hang.

- ``kill -9`` of a worker: its Node.js driver, its Chromium (every process of it) and its
  extraction readers end, and Chromium's profile folder is removed; the pool is whole again.
- ``GetMetrics`` (no client deadline) and ``/metrics`` answer every call while a worker is
  killed and restarted, and report a stopped (SIGSTOP) worker as not answering.
- SIGTERM of the coordinator, one worker and its Chromium stuck (SIGSTOP): when the
  coordinator has exited, no process it started is left.
- ``kill -9`` of the coordinator: every process of the engine ends within a deadline, no file
  under its runtime folder holds its API key, and the next coordinator removes that folder.

Processes are found from the engine's own tree (a snapshot taken before the kill), never by
name across the machine; the tests only signal processes of engines they started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
from pathlib import Path
from typing import AsyncIterator

import httpx
import psutil
import pytest
import pytest_asyncio

from blast_grpc import Client, Engine
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.demo_site.server import DemoSite

from ..conftest import Sim, engine_overrides
from .conftest import NO_HANG_S, chromium_pid, now, pool_ready, wait_for, worker_pid

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]


def tree(pid: int) -> list[psutil.Process]:
    """The descendants of ``pid`` (not itself)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running (``is_running`` also compares start times, so a reused pid is not it)."""
    out = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
    return out


def describe(procs: list[psutil.Process]) -> str:
    out = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            out.append(f"{p.pid} {p.name()}")
    return ", ".join(out)


def profile_dirs(procs: list[psutil.Process]) -> set[str]:
    dirs = set()
    for p in procs:
        with contextlib.suppress(psutil.Error):
            dirs |= {a.split("=", 1)[1] for a in p.cmdline() if a.startswith("--user-data-dir=")}
    return dirs


def names(procs: list[psutil.Process]) -> list[str]:
    out = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            out.append(" ".join(p.cmdline()))
    return out


def exists(path: str | Path) -> bool:
    return os.path.exists(path)


def files_under(*roots: str | Path) -> list[Path]:
    return [p for root in roots for p in Path(root).rglob("*") if p.is_file()]


async def all_gone(procs: list[psutil.Process], what: str) -> None:
    await wait_for(now(lambda: not alive(procs)), f"{what} to end (left: {describe(alive(procs))})")


@pytest_asyncio.fixture(scope="module")
async def pool(sim: Sim) -> AsyncIterator[Engine]:
    async with Engine.create(overrides=engine_overrides(sim)) as eng:
        yield eng


async def test_a_killed_worker_leaves_no_chromium_driver_reader_or_profile_folder(pool: Engine,
                                                                                  site: DemoSite) -> None:
    c = pool.client
    await wait_for(lambda: pool_ready(c, 2), "two ready workers")
    task = await c.run(f"Find the secret river code in the article at {site.url}article.html")  # readers too
    assert task.success, task.error
    pid = await worker_pid(c, task.worker_id)
    left_behind = tree(pid)
    cmdlines = names(left_behind)
    assert any("chrom" in n for n in cmdlines) and any("node" in n for n in cmdlines), cmdlines
    assert any("spawn_main" in n for n in cmdlines), cmdlines  # the extraction readers
    profiles = profile_dirs(left_behind)
    assert profiles and all(exists(d) for d in profiles), profiles
    assert all(d.startswith(pool.runtime_dir) for d in profiles), (profiles, pool.runtime_dir)  # its own $TMPDIR

    os.kill(pid, signal.SIGKILL)
    await all_gone(left_behind, "the killed worker's processes")
    await wait_for(now(lambda: not any(exists(d) for d in profiles)), f"the profile folders {profiles} to go")

    workers = await wait_for(lambda: pool_ready(c, 2), "the pool to be whole again")
    assert next(w for w in workers if w.worker_id == task.worker_id).restarts == 1
    again = await c.run(f"Report the title of {site.url}asia.html")
    assert again.success, again.error


async def test_metrics_answer_every_call_while_a_worker_dies_and_restarts(pool: Engine) -> None:
    c = pool.client
    await wait_for(lambda: pool_ready(c, 2), "two ready workers")
    assert pool.metrics_url
    victim = "w2"
    before = next(w for w in (await c.metrics()).workers if w.worker_id == victim)
    stop = asyncio.Event()
    replies: list[pb.GetMetricsResponse] = []
    http_codes: list[int] = []

    async def grpc_loop() -> None:
        while not stop.is_set():
            replies.append(await c.metrics())  # no deadline: a hang would hang here

    async def http_loop(http: httpx.AsyncClient) -> None:
        while not stop.is_set():
            http_codes.append((await http.get(pool.metrics_url or "")).status_code)

    async def restarted() -> bool:
        w = next(w for w in (await c.metrics()).workers if w.worker_id == victim)
        return w.restarts == before.restarts + 1 and w.state == pb.WORKER_STATE_READY and not w.status_problem

    async with asyncio.timeout(NO_HANG_S), httpx.AsyncClient(timeout=None) as http:
        loops = [asyncio.create_task(grpc_loop()) for _ in range(6)] + [asyncio.create_task(http_loop(http))]
        try:
            await wait_for(now(lambda: len(replies) >= 6 and http_codes), "the first answers")
            os.kill(before.pid, signal.SIGKILL)
            await wait_for(restarted, f"worker {victim} to be back")
            stop.set()
            await asyncio.gather(*loops)
        finally:
            stop.set()
            for t in loops:
                t.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
    assert set(http_codes) == {200}, http_codes
    seen = [w for r in replies for w in r.workers if w.worker_id == victim]
    assert any(w.status_problem for w in seen), "the dead worker was never reported as such"


async def test_a_stopped_worker_is_reported_not_waited_for(pool: Engine) -> None:
    c = pool.client
    workers = await wait_for(lambda: pool_ready(c, 2), "two ready workers")
    stopped = workers[0]
    os.kill(stopped.pid, signal.SIGSTOP)
    try:
        async with asyncio.timeout(NO_HANG_S):
            m = await c.metrics()  # no client deadline
    finally:
        os.kill(stopped.pid, signal.SIGCONT)
    w = next(w for w in m.workers if w.worker_id == stopped.worker_id)
    assert "did not answer its status call" in w.status_problem, w
    other = next(w for w in m.workers if w.worker_id != stopped.worker_id)
    assert not other.status_problem and other.warm_contexts >= 0
    await wait_for(lambda: pool_ready(c, 2), "two ready workers")


async def test_sigterm_of_the_coordinator_leaves_no_process_of_the_engine(sim: Sim, site: DemoSite,
                                                                          tmp_path: Path) -> None:
    overrides = engine_overrides(sim, runtime_dir=str(tmp_path), gateway=True, server_port=0,
                                 context_keep_alive_s=600)
    engine = await Engine.create(overrides=overrides)
    try:
        tasks = [engine.client.run(f"Report the title of {site.url}{page}.html") for page in ("asia", "europe")]
        assert all(t.success for t in await asyncio.gather(*tasks))
        everything = tree(engine.proc.pid)
        cmdlines = names(everything)
        assert sum("chrom" in n for n in cmdlines) >= 4 and any("gateway" in n for n in cmdlines), cmdlines
        # One worker and its Chromium are stuck (SIGSTOP: neither handles SIGTERM nor notices its
        # parent's death): the coordinator has to SIGKILL the worker, and its driver and Chromium, in
        # process groups of their own, must still not outlive the coordinator.
        stuck = (await engine.client.metrics()).workers[0].pid
        browser = chromium_pid(stuck)
        assert browser is not None
        os.kill(browser, signal.SIGSTOP)
        os.kill(stuck, signal.SIGSTOP)
        engine.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(engine.proc.wait(), NO_HANG_S)
        assert code == 0
        assert not alive(everything), f"outlived the coordinator: {describe(alive(everything))}"
        assert not exists(engine.runtime_dir)
    finally:
        await engine.stop()


@pytest.mark.timeout(300)
async def test_kill_9_of_the_coordinator_leaves_no_process_and_no_key_on_disk(sim: Sim, site: DemoSite,
                                                                              tmp_path: Path) -> None:
    key = f"sk-{secrets.token_hex(16)}"
    overrides = engine_overrides(sim, runtime_dir=str(tmp_path), gateway=True, server_port=0, api_keys=[key])
    engine = await Engine.create(overrides=overrides)
    try:
        async with Client(engine.address, api_key=key) as c:
            task = await c.run(f"Report the title of {site.url}asia.html")
            assert task.success, task.error
        everything = tree(engine.proc.pid)
        runtime = Path(engine.runtime_dir)
        assert runtime.parent == tmp_path and sum("chrom" in n for n in names(everything)) >= 2

        engine.proc.kill()
        await engine.proc.wait()
        await all_gone(everything, "every process of the killed coordinator")

        files = files_under(runtime, engine._workdir)
        assert any(p.name == "config.json" for p in files), files  # the workers' config is there ...
        holding = [str(p) for p in files if key.encode() in p.read_bytes()]
        assert not holding, holding  # ... and it has no key, nor has anything else

        # The next coordinator removes the folder the killed one could not.
        async with Engine.create(overrides=engine_overrides(sim, runtime_dir=str(tmp_path), workers=1)) as nxt:
            assert not exists(runtime)
            assert exists(nxt.runtime_dir)
    finally:
        await engine.stop()
