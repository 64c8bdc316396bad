"""Load: 50 concurrent tasks and 200 concurrent stream watchers against the simulated model."""

from __future__ import annotations

import asyncio

import pytest

from blast_grpc import Client, Engine
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.demo_site.facts import GORILLAS
from blast_grpc.demo_site.server import DemoSite
from blast_grpc.states import is_terminal

from ..conftest import Sim, engine_overrides

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]
TASKS, WATCHERS_PER_TASK, MAX_MEMORY_GB = 50, 4, 6.0


@pytest.mark.timeout(480)
async def test_fifty_tasks_two_hundred_watchers(sim: Sim, site: DemoSite) -> None:
    constraints = {"max_concurrent_browsers": 8, "max_memory": f"{MAX_MEMORY_GB}GB",
                   "allow_parallelism": {"task": False, "data": False, "first_of_n": False}}
    overrides = engine_overrides(sim, constraints, workers=2, planner=False, warm_contexts=0)
    async with Engine.create(overrides=overrides) as eng:
        c = eng.client
        continents = list(GORILLAS)
        texts = [f"On {site.url}index.html find the largest gorilla in {continents[i % len(continents)]}"
                 if i % 2 else "say hello" for i in range(TASKS)]
        tasks = await asyncio.gather(*(c.submit(t) for t in texts))
        assert len({t.task_id for t in tasks}) == TASKS

        memory: list[float] = []
        finished = asyncio.Event()

        async def sample() -> None:
            while not finished.is_set():
                memory.append((await c.metrics()).memory_usage_gb)
                await asyncio.sleep(0.25)

        async def watch(client: Client, task_id: str) -> list[pb.TaskEvent]:
            return [ev async for ev in client.watch(task_id)]

        # the watchers use their own connections, as separate clients would
        watchers = [Client(eng.address) for _ in range(4)]
        sampler = asyncio.create_task(sample())
        try:
            seen = await asyncio.wait_for(asyncio.gather(*(
                watch(watchers[(i + k) % 4], t.task_id) for i, t in enumerate(tasks)
                for k in range(WATCHERS_PER_TASK))), timeout=600)
        finally:
            finished.set()
            await sampler
            for w in watchers:
                await w.close()

        for i, t in enumerate(tasks):
            final = await c.get_task(t.task_id)
            assert is_terminal(final.state)
            assert final.state == pb.TASK_STATE_COMPLETED, final.error
            log = [e.SerializeToString() for e in await watch(c, t.task_id)]
            for k in range(WATCHERS_PER_TASK):
                events = seen[i * WATCHERS_PER_TASK + k]
                assert [e.seq for e in events] == list(range(1, final.last_seq + 1))
                assert [e.SerializeToString() for e in events] == log
        assert memory and max(memory) < MAX_MEMORY_GB, max(memory)
