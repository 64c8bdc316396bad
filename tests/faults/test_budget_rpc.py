"""Without a cost limit an LLM call asks the coordinator nothing: no ``AwaitBudget`` RPC.

The strict engine has no ``max_cost_per_minute`` / ``max_cost_per_hour`` and logs at debug
level, where the coordinator notes every ``AwaitBudget`` it serves.
"""

from __future__ import annotations

import pytest

from ..conftest import Sim
from .conftest import StrictEngine, collect

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]


async def test_no_budget_rpc_without_a_cost_limit(strict: StrictEngine, clean_sim: Sim) -> None:
    before = clean_sim.stats()["requests_total"]
    events = await collect(strict.client, "say hello")
    assert events[-1].HasField("completed"), events[-1]
    task_id = events[-1].task_id
    assert clean_sim.stats()["requests_total"] > before  # the task did call the model
    text = strict.log.read_text(errors="replace")
    assert f"AwaitBudget for task {task_id}" not in text
    assert all(e.WhichOneof("kind") != "waiting" for e in events)
