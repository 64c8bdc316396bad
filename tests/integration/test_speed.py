"""Issue 13 against the real engine: fewer model calls, less browser work.

Counts come from the task records' usage (what the engine charged) and the simulated
model's request log (what it was sent); nothing here depends on timing.
"""

from __future__ import annotations

import json

import pytest

from blast_grpc import Client
from blast_grpc.demo_site.facts import GORILLAS
from blast_grpc.demo_site.server import DemoSite

from ..conftest import Sim

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]


async def test_subtasks_make_no_planner_call_and_read_the_parents_plan(client: Client, site: DemoSite,
                                                                       sim: Sim) -> None:
    events = [ev async for ev in client.run(f"On {site.url}index.html find the largest gorilla in each continent",
                                            stream=True)]
    root = events[0].task_id
    assert events[-1].task_id == root and events[-1].completed.success
    plans = [e.plan.text for e in events if e.HasField("plan")]
    assert len(plans) == 1 and events[[e.HasField("plan") for e in events].index(True)].task_id == root
    subtasks = [e.subtask_launched.subtask_id for e in events if e.HasField("subtask_launched")]
    assert len(subtasks) == len(GORILLAS)
    for tid in subtasks:
        sub = await client.get_task(tid)
        # One model call per step: none for a plan.
        assert sum(u.requests for u in sub.usage) == sub.steps > 0, (tid, sub.usage, sub.steps)
    # What each subtask's agent was told: the parent's plan, in its system prompt.
    bodies = [json.loads(b) for b in sim.requests()]
    agent_requests = [b for b in bodies if b.get("tools")]
    for tid in subtasks:
        description = (await client.get_task(tid)).spec.description
        mine = [b for b in agent_requests if b["messages"][1]["content"].startswith(f"TASK: {description}")]
        assert mine, description
        assert plans[0] in mine[0]["messages"][0]["content"]
    descriptions = [(await client.get_task(t)).spec.description for t in subtasks]
    planned = [str(m.get("content", "")) for b in bodies if not b.get("tools") for m in b["messages"]
               if str(m.get("content", "")).startswith("PLAN FOR TASK:")]
    assert planned and not [p for p in planned for d in descriptions if p.startswith(f"PLAN FOR TASK: {d}")]
