"""Cost limits: a call that would overdraw max_cost_per_minute waits, then the task completes."""

from __future__ import annotations

import pytest
import pytest_asyncio

from blast_grpc import Engine
from blast_grpc._proto.blast.v1 import blast_pb2 as pb

from ..conftest import Sim, engine_overrides

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]

PRICES = {"gpt-4.1": {"input_per_1m": 1000.0, "output_per_1m": 4000.0}}


@pytest_asyncio.fixture(scope="module")
async def cost(sim: Sim) -> float:
    """What one "say hello" costs at these prices (one agent call, no planner)."""
    async with Engine.create(overrides=engine_overrides(sim, workers=1, planner=False,
                                                        model_prices=PRICES)) as probe:
        one = await probe.client.run("say hello")
    assert one.state == pb.TASK_STATE_COMPLETED and [u.requests for u in one.usage] == [1]
    assert one.usage[0].cost_usd > 0
    return float(one.usage[0].cost_usd)


async def test_over_budget_calls_wait_then_the_task_completes(sim: Sim, cost: float) -> None:
    # A budget slightly below that: the first task overdraws it by ~5%, which takes
    # ~3 s of the per-minute refill to pay back; the second task's first call waits for it.
    limit = cost / 1.05
    overrides = engine_overrides(sim, {"max_cost_per_minute": limit}, workers=1, planner=False,
                                 model_prices=PRICES)
    async with Engine.create(overrides=overrides) as eng:
        first = await eng.client.run("say hello")
        assert first.state == pb.TASK_STATE_COMPLETED
        assert abs(first.usage[0].cost_usd - cost) < 1e-9
        events = [ev async for ev in eng.client.run("say hello", stream=True)]
        waiting = [e for e in events if e.HasField("waiting")]
        assert waiting and "max_cost_per_minute" in waiting[0].waiting.reason
        step = next(e for e in events if e.HasField("step"))
        waited = (step.time.ToNanoseconds() - waiting[0].time.ToNanoseconds()) / 1e9
        assert waited > 1.0, waited  # the overdraft (about 3 s of refill) was paid back first
        assert events[-1].HasField("completed") and events[-1].completed.success
        m = await eng.client.get_metrics()
        assert m["total_cost"] == pytest.approx(2 * cost, abs=0.005)  # rounded to cents, as BLAST's


async def test_a_budget_wait_longer_than_the_step_limit_is_not_a_silent_model(sim: Sim, cost: float) -> None:
    # The first task overdraws the per-minute limit by 15%: ~9 s of refill, more than twice
    # the step limit. The second task's first call waits for it before its step's deadline
    # starts: a waiting event says so, no step times out, and the task completes.
    overrides = engine_overrides(sim, {"max_cost_per_minute": cost / 1.15}, workers=1, planner=False,
                                 model_prices=PRICES, step_timeout_s=4)
    async with Engine.create(overrides=overrides) as eng:
        assert (await eng.client.run("say hello")).state == pb.TASK_STATE_COMPLETED
        events = [ev async for ev in eng.client.run("say hello", stream=True)]
    waiting = [e for e in events if e.HasField("waiting")]
    assert waiting and "waiting for budget" in waiting[0].waiting.reason
    steps = [e.step for e in events if e.HasField("step")]
    assert steps and all(s.action != "(timed out)" for s in steps), [s.action for s in steps]
    step = next(e for e in events if e.HasField("step"))
    assert (step.time.ToNanoseconds() - waiting[0].time.ToNanoseconds()) / 1e9 > 4  # longer than the step limit
    assert events[-1].HasField("completed") and events[-1].completed.success
