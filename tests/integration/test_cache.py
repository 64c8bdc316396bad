"""The result cache and the plan cache, counted at the simulated model."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import AsyncIterator

import pytest
import pytest_asyncio

from blast_grpc import Engine
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.demo_site.server import DemoSite

from ..conftest import Sim, engine_overrides

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]


@pytest_asyncio.fixture
async def caching(sim: Sim, tmp_path: Path) -> AsyncIterator[Engine]:
    overrides = engine_overrides(sim, workers=1, cache_results=True, cache_plans=True,
                                 cache_path=str(tmp_path / "cache.sqlite"))
    async with Engine.create(overrides=overrides) as eng:
        yield eng


def model_calls(sim: Sim) -> int:
    return int(sim.stats()["requests_total"])


async def test_result_and_plan_caches(caching: Engine, sim: Sim, site: DemoSite) -> None:
    c = caching.client
    site.motto = "Swing from the highest branch"
    task = f"Read the motto at {site.url}_motto?run={uuid.uuid4().hex[:8]}"
    first = await c.run(task)
    assert first.success and "highest branch" in first.result and not first.cached
    fresh_calls = sum(u.requests for u in first.usage)
    assert fresh_calls >= 2  # the plan and at least one step

    # The same task again: answered from the result cache, no model call at all.
    before = model_calls(sim)
    again = await c.run(task)
    assert again.cached and again.result == first.result and model_calls(sim) == before

    # no-cache skips the result cache; the plan cache replays every step, still no model call.
    replay = await c.run(task, cache_control=["no-cache"])
    assert replay.success and replay.result == first.result and not replay.cached
    assert replay.replayed_steps == replay.steps > 0 and model_calls(sim) == before

    # no-cache-plan as well: the model drives it again.
    forced = await c.run(task, cache_control=["no-cache", "no-cache-plan"])
    assert forced.success and forced.replayed_steps == 0 and model_calls(sim) - before == fresh_calls

    # The page changes: the replay holds until the answer step, then the model takes over.
    site.motto = "Never drop the banana"
    changed = await c.run(task, cache_control=["no-cache"])
    assert changed.success and "banana" in changed.result, changed.result
    assert 0 < changed.replayed_steps < changed.steps
    events = [ev async for ev in c.watch(changed.task_id)]
    flags = [e.step.replayed for e in events if e.HasField("step")]
    assert flags[0] and not flags[-1]
    site.motto = "Swing from the highest branch"


async def test_conversations_do_not_share_cache_entries(caching: Engine, site: DemoSite) -> None:
    c = caching.client
    url = f"{site.url}_motto?conv={uuid.uuid4().hex[:8]}"
    alone = await c.run(f"Read the motto at {url}")
    other = await c.run(f"Report the title of {site.url}asia.html")
    follow = await c.run(f"Read the motto at {url}", previous_task_id=other.task_id)
    assert alone.success and follow.success and not follow.cached  # a different lineage
    no_store = await c.run(f"Report the title of {site.url}europe.html", cache_control=["no-store"])
    again = await c.run(f"Report the title of {site.url}europe.html")
    assert no_store.success and not again.cached and again.state == pb.TASK_STATE_COMPLETED
