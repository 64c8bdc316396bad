"""``kill -9`` of extraction readers and of a worker's Chromium, around and in the middle of a task.

One private engine (two workers) for the module: the reader test leaves it whole, the
Chromium test ends by checking that the pool is whole again. Each test runs a bystander
task alongside the victim, which must finish untouched on its first attempt.
(A killed worker process is tested in tests/integration/test_engine.py.)
"""

from __future__ import annotations

import json
import os
import signal
from typing import AsyncIterator

import pytest
import pytest_asyncio

from blast_grpc import Client, Engine
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.demo_site.facts import ARTICLE_CODE, GORILLAS
from blast_grpc.demo_site.server import DemoSite

from ..conftest import Sim, engine_overrides
from .conftest import chromium_pid, final, pool_ready, reader_pids, steps, wait_for, watch_all, worker_pid

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]


@pytest_asyncio.fixture(scope="module")
async def kills(sim: Sim) -> AsyncIterator[Engine]:
    async with Engine.create(overrides=engine_overrides(sim)) as eng:
        yield eng


async def first_step(client: Client, task_id: str) -> str:
    """Wait for the task's first step; returns the worker it runs on."""
    worker = ""
    async for ev in client.watch(task_id):
        if ev.HasField("started"):
            worker = ev.started.worker_id
        if ev.HasField("step"):
            return worker
    raise AssertionError(f"task {task_id} ended before its first step")


async def finished_untouched(client: Client, task_id: str, continent: str) -> pb.Task:
    events = await watch_all(client, task_id)
    task = await client.get_task(task_id)
    assert task.state == pb.TASK_STATE_COMPLETED and task.success, (task.error, task.result)
    assert task.attempts == 1 and GORILLAS[continent].name in task.result
    assert not any(e.HasField("waiting") for e in events)
    return task


async def test_killed_extraction_readers_are_replaced_and_the_task_still_reads_the_page(
        kills: Engine, clean_sim: Sim, site: DemoSite) -> None:
    # The readers only convert and split (the chunk calls run on the worker's loop), so a
    # dead reader costs at most one extract_content call, which says so; the agent tries again.
    c = kills.client
    ready = await wait_for(lambda: pool_ready(c, 2), "two ready workers")
    workers = {w.worker_id: w.pid for w in ready}
    before = {wid: reader_pids(pid) for wid, pid in workers.items()}
    assert all(len(r) == 2 for r in before.values()), before
    for pids in before.values():
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
    task = await c.submit(f"Find the secret river code in the article at {site.url}article.html")
    bystander = await c.submit(f"Slowly tour Europe from {site.url}index.html")

    events = await watch_all(c, task.task_id)
    done = final(events)
    assert done.HasField("completed") and done.completed.success and ARTICLE_CODE in done.completed.result, str(done)
    results = [s.result for s in steps(events)]
    failed = [r for r in results if r.startswith("Error: extract_content failed: ")]
    assert all("an extraction process died" in r for r in failed), failed
    read = [s for s in steps(events) if s.result.startswith("Extracted:")]
    assert read, results
    record = await c.get_task(task.task_id)
    assert record.attempts == 1  # the worker itself was fine
    assert await worker_pid(c, record.worker_id) == workers[record.worker_id]
    assert set(json.loads(read[0].detail)["pids"]).isdisjoint(before[record.worker_id])  # a new reader

    # New readers in the task's worker, none of the killed ones. (The executor spawns readers on
    # demand, up to extraction_processes; the other worker replaces its own when it next needs them.)
    now_ = reader_pids(workers[record.worker_id])
    assert 1 <= len(now_) <= 2 and set(now_).isdisjoint(before[record.worker_id]), (now_, before)
    await finished_untouched(c, bystander.task_id, "Europe")


async def test_a_killed_chromium_is_reported_and_its_task_retried_elsewhere(kills: Engine, site: DemoSite) -> None:
    c = kills.client
    await wait_for(lambda: pool_ready(c, 2), "two ready workers")
    bystander = await c.submit(f"Slowly tour Africa from {site.url}index.html")
    bystander_worker = await first_step(c, bystander.task_id)
    victim = await c.submit(f"Slowly tour Oceania from {site.url}index.html")
    victim_worker = await first_step(c, victim.task_id)  # it has a few slow steps to go
    assert victim_worker != bystander_worker
    worker = await worker_pid(c, victim_worker)
    browser = chromium_pid(worker)
    assert browser is not None
    os.kill(browser, signal.SIGKILL)

    events = await watch_all(c, victim.task_id)
    done = final(events)
    assert done.HasField("completed") and done.completed.success, str(done)
    lost = [s for s in steps(events) if s.action == "(browser lost)"]
    assert len(lost) == 1 and lost[0].result == (
        f"Error: the Chromium browser of worker {victim_worker} died (its process exited or was killed) during the "
        "task; the engine retries the task on another worker")
    waiting = [e.waiting.reason for e in events if e.HasField("waiting")]
    assert len(waiting) == 1 and f"worker {victim_worker} died" in waiting[0] and "retrying" in waiting[0]
    starts = [e.started.worker_id for e in events if e.HasField("started")]
    assert len(starts) == 2 and starts[0] == victim_worker and starts[1] != victim_worker
    assert (await c.get_task(victim.task_id)).attempts == 2
    await finished_untouched(c, bystander.task_id, "Africa")

    workers = await wait_for(lambda: pool_ready(c, 2), "the pool to be whole again")
    restarted = next(w for w in workers if w.worker_id == victim_worker)
    assert restarted.restarts == 1 and restarted.pid != worker
    fresh = chromium_pid(restarted.pid)
    assert fresh is not None and fresh != browser
