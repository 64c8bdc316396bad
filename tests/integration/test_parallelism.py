"""The four kinds of parallelism against real Chromium, the demo site and the simulated model."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import AsyncIterator

import pytest
import pytest_asyncio

from blast_grpc import Client, Engine
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.demo_site.facts import ARTICLE_CODE, GORILLAS
from blast_grpc.demo_site.server import DemoSite

from ..conftest import Sim, engine_overrides

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]


def shm_blocks() -> set[str]:
    """The engines' extraction blocks (named after their worker: blast_w1_...), not other users'."""
    return {p.name for p in Path("/dev/shm").glob("blast_w*")}


async def collect(client: Client, task: str, **kw: str) -> list[pb.TaskEvent]:
    return [ev async for ev in client.run(task, stream=True, **kw)]


async def no_open_contexts(client: Client, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(w.open_contexts for w in (await client.metrics()).workers):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_fan_out_one_subtask_per_continent(client: Client, site: DemoSite) -> None:
    events = await collect(client, f"On {site.url}index.html find the largest gorilla in each continent")
    root = events[0].task_id
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert any(e.HasField("plan") and e.task_id == root for e in events)
    launched = [e.subtask_launched.subtask_id for e in events if e.HasField("subtask_launched") and e.task_id == root]
    assert len(launched) == len(GORILLAS)
    # every subtask's events reach the root's stream, tagged with their parent
    sub_events = [e for e in events if e.task_id in launched]
    assert all(e.parent_task_id == root for e in sub_events)
    starts = {e.task_id: e.seq for e in sub_events if e.HasField("started")}
    ends = {e.task_id: e.seq for e in sub_events if e.HasField("completed")}
    assert set(starts) == set(launched) == set(ends)
    assert max(starts.values()) < min(ends.values()), "a subtask finished before all had started"
    final = events[-1]
    assert final.task_id == root and final.HasField("completed") and final.completed.success
    for g in GORILLAS.values():
        assert g.name in final.completed.result, (g.continent, final.completed.result)
    task = await client.get_task(root)
    assert list(task.subtask_ids) == launched
    assert sum(u.requests for u in task.tree_usage) > sum(u.requests for u in task.usage)


async def test_depth_limit_one_hides_the_launch_tools(client: Client, site: DemoSite) -> None:
    events = await collect(client, f"Nested tour of Asia from {site.url}index.html")
    root = events[0].task_id
    children = [e.subtask_launched.subtask_id for e in events if e.HasField("subtask_launched")]
    assert len(children) == 1, "the level-two task must not launch anything at depth 1"
    child = await client.get_task(children[0])
    assert child.depth == 1 and "not offered" in child.result
    assert not any(e.HasField("subtask_launched") and e.task_id == children[0] for e in events)
    assert events[-1].task_id == root


async def test_data_parallel_extraction_reads_chunks_concurrently(client: Client, site: DemoSite) -> None:
    before = shm_blocks()
    events = await collect(client, f"Find the secret river code in the article at {site.url}article.html")
    assert events[-1].HasField("completed") and ARTICLE_CODE in events[-1].completed.result
    details = [json.loads(e.step.detail) for e in events if e.HasField("step") and e.step.detail]
    extraction = next(d for d in details if "chunks" in d)
    # The mini model takes 0.15 s per call (tests/sim/latency.yaml): the chunks overlapped in time.
    assert extraction["chunks"] >= 2 and extraction["in_flight"] >= 2, extraction
    assert extraction["unread"] == 0 and extraction["chars"] > 0
    assert os.getpid() not in extraction["pids"]  # converted and split in a reader process
    assert shm_blocks() - before == set()


@pytest_asyncio.fixture
async def modes_off(sim: Sim) -> AsyncIterator[Engine]:
    off = {"allow_parallelism": {"task": False, "data": False, "first_of_n": False}}
    async with Engine.create(overrides=engine_overrides(sim, off)) as eng:
        yield eng


async def test_each_mode_switched_off_is_off(modes_off: Engine, site: DemoSite) -> None:
    c = modes_off.client
    events = await collect(c, f"On {site.url}index.html find the largest gorilla in each continent")
    assert not any(e.HasField("subtask_launched") for e in events)
    assert {e.task_id for e in events} == {events[0].task_id}
    assert events[-1].HasField("completed") and events[-1].completed.success
    for g in GORILLAS.values():
        assert g.name in events[-1].completed.result
    article = await collect(c, f"Find the secret river code in the article at {site.url}article.html")
    assert ARTICLE_CODE in article[-1].completed.result
    details = [json.loads(e.step.detail) for e in article if e.HasField("step") and e.step.detail]
    extractions = [d for d in details if "chunks" in d]
    assert extractions and all(d["chunks"] == 1 and "pids" not in d for d in extractions)
    one = await c.run(f"On {site.url}index.html find the largest gorilla in Africa")
    assert one.state == pb.TASK_STATE_COMPLETED and list(one.subtask_ids) == []


@pytest_asyncio.fixture
async def racing(sim: Sim) -> AsyncIterator[Engine]:
    constraints = {"allow_parallelism": {"task": True, "data": True, "first_of_n": True}, "first_of_n_num_copies": 3}
    async with Engine.create(overrides=engine_overrides(sim, constraints)) as eng:
        yield eng


@pytest_asyncio.fixture(scope="class")
async def deep(sim: Sim) -> AsyncIterator[Engine]:
    """Nesting depth 2, and a slow mini model so a test can act in the middle of an extraction."""
    constraints = {"max_parallelism_nesting_depth": 2, "llm_model_mini": "slow-mini"}
    async with Engine.create(overrides=engine_overrides(sim, constraints)) as eng:
        yield eng


async def test_first_of_n_keeps_the_fastest_copy_and_cancels_the_rest(racing: Engine, site: DemoSite) -> None:
    c = racing.client
    events = await collect(c, f"Race to find the largest gorilla in Europe on {site.url}index.html")
    root = await c.get_task(events[0].task_id)
    copies = [await c.get_task(t) for t in root.subtask_ids]
    assert len(copies) == 3
    assert root.state == pb.TASK_STATE_COMPLETED and GORILLAS["Europe"].name in root.result
    winner = next(t for t in copies if t.task_id == root.winner_task_id)
    assert "(copy 2)" in root.result and winner.state == pb.TASK_STATE_COMPLETED
    losers = [t for t in copies if t.task_id != winner.task_id]
    assert [t.state for t in losers] == [pb.TASK_STATE_CANCELLED] * 2, [t.error for t in losers]
    assert all("won the race" in t.error for t in losers)
    assert await no_open_contexts(c)


class TestDeepEngine:
    """Nesting depth 2 and a slow mini model share one engine, stopped after these tests."""

    async def test_depth_two_runs_a_sub_subtask_visible_from_the_root(self, deep: Engine, site: DemoSite) -> None:
        c = deep.client
        events = await collect(c, f"Nested tour of Oceania from {site.url}index.html")
        root = events[0].task_id
        depth = {}
        for e in events:
            if e.HasField("started"):
                depth[e.task_id] = (await c.get_task(e.task_id)).depth
        assert sorted(depth.values()) == [0, 1, 2], depth
        grandchild = next(t for t, d in depth.items() if d == 2)
        assert any(e.task_id == grandchild and e.HasField("completed") for e in events)
        assert events[-1].task_id == root and GORILLAS["Oceania"].name in events[-1].completed.result


    async def test_cancel_mid_extraction_leaves_no_shared_memory_and_no_call(self, deep: Engine, sim: Sim,
                                                                              site: DemoSite) -> None:
        c = deep.client
        before = shm_blocks()
        sim.inject("stall", "stall", model="slow-mini")  # two chunk calls held until their client leaves
        task = await c.submit(f"Find the secret river code in the article at {site.url}article.html",
                              initial_url=f"{site.url}article.html")
        deadline = time.monotonic() + 30
        while sim.stats()["stalled_now"] < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert sim.stats()["stalled_now"] == 2, "the extraction never started"
        cancelled = await c.cancel(task.task_id)
        assert cancelled.state == pb.TASK_STATE_CANCELLED
        deadline = time.monotonic() + 10
        while (shm_blocks() - before or sim.stats()["stalled_now"]) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert shm_blocks() - before == set()
        assert sim.stats()["stalled_now"] == 0  # the cancel reached the chunk calls in flight
        assert await no_open_contexts(c)
