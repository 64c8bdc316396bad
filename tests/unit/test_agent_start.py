"""How a task starts: the planner call overlaps the initial navigation; a subtask makes no planner call.

The browser and the model are fakes here (the engine-level checks, with real Chromium and
the simulated model, are in tests/integration/test_speed.py): each fake waits for an event
the other sets, so a start that runs the two one after the other never finishes.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from blast_grpc.agent.loop import Agent
from blast_grpc.agent.replay import Replayer
from blast_grpc.agent.tools import Action
from blast_grpc.config import load_config
from blast_grpc.llm import UsageMeter

pytestmark = pytest.mark.asyncio
DEADLINE_S = 30  # generous: only a start that serialises the two waits hits it


async def _no_step(*_: Any) -> None:
    return None


class FakeModel:
    """Answers a planner request once ``release`` is set; counts the calls."""

    def __init__(self, release: asyncio.Event | None = None) -> None:
        self.calls = 0
        self.asked = asyncio.Event()
        self.release = release

    async def chat(self, model: str, messages: list[dict[str, Any]], meter: UsageMeter, tools: Any = None,
                   gate: Any = None) -> SimpleNamespace:
        self.calls += 1
        self.asked.set()
        if self.release is not None:
            await self.release.wait()
        return SimpleNamespace(content="1. Open the page.", tool_calls=None)


class FakeBrowser:
    """Opens the initial URL only after the model was asked for the plan."""

    def __init__(self, model: FakeModel) -> None:
        self.model = model
        self.opened: list[str] = []
        self.started = asyncio.Event()

    async def execute(self, action: Action) -> str:
        self.started.set()
        await self.model.asked.wait()
        self.opened.append(str(action.args["url"]))
        return f"Opened {action.args['url']}"


async def test_the_planner_call_and_the_initial_navigation_run_together() -> None:
    release = asyncio.Event()
    model = FakeModel(release)
    browser = FakeBrowser(model)
    plans: list[str] = []

    async def on_plan(text: str) -> None:
        plans.append(text)

    agent = Agent(load_config(), model, UsageMeter(), _no_step, on_plan)  # type: ignore[arg-type]
    start = asyncio.ensure_future(agent._start(None, browser, "http://127.0.0.1:9/", "TASK: t",  # type: ignore[arg-type]
                                               Replayer(""), ""))
    # The navigation has begun while the planner's reply is still outstanding.
    await asyncio.wait_for(browser.started.wait(), DEADLINE_S)
    assert not start.done() and model.calls == 1
    release.set()
    plan = await asyncio.wait_for(start, DEADLINE_S)
    assert plan == "1. Open the page." and plans == [plan]
    assert browser.opened == ["http://127.0.0.1:9/"]


async def test_a_failed_plan_cancels_the_navigation() -> None:
    class Broken(FakeModel):
        async def chat(self, *a: Any, **kw: Any) -> SimpleNamespace:
            raise RuntimeError("model down")

    model = Broken()
    browser = FakeBrowser(model)  # waits for model.asked, which a broken model never sets
    agent = Agent(load_config(), model, UsageMeter(), _no_step)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="model down"):
        await asyncio.wait_for(agent._start(None, browser, "http://127.0.0.1:9/", "TASK: t",  # type: ignore[arg-type]
                                            Replayer(""), ""), DEADLINE_S)
    assert browser.opened == []  # the navigation was cancelled, not left running


async def test_a_subtask_works_from_its_parents_plan_without_a_planner_call() -> None:
    model = FakeModel()
    browser = FakeBrowser(model)
    model.asked.set()  # nothing to wait for: no planner call is expected
    plans: list[str] = []

    async def on_plan(text: str) -> None:
        plans.append(text)

    agent = Agent(load_config(), model, UsageMeter(), _no_step, on_plan)  # type: ignore[arg-type]
    plan = await agent._start(None, browser, "http://127.0.0.1:9/", "TASK: t", Replayer(""),  # type: ignore[arg-type]
                              "1. Launch one subtask per item.")
    assert plan == "" and plans == [] and model.calls == 0
    assert browser.opened == ["http://127.0.0.1:9/"]
