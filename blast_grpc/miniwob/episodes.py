"""Run MiniWoB++ episodes through the engine and score them.

One episode is one engine task, ``Do the MiniWoB task on <url>`` with the page as
``initial_url``: the policy clicks START, does the task, reads the reward the page
shows afterwards ("Last reward: X.XX", time-discounted) and finishes with
``done("reward X.XX")``. Binary success is that reward > 0; it is read from the
task's result text, not from the policy's own ``success`` flag. MiniWoB draws its
problems with ``Math.random``, so episodes of one task type differ by themselves.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable

from ..client import Client

# The suite's task types, by category (each must have a solver in the policy).
TASK_TYPES: tuple[str, ...] = (
    # click
    "click-button", "click-link", "click-test", "click-test-2", "click-widget", "click-button-sequence",
    # type and focus
    "enter-text", "enter-text-2", "enter-text-dynamic", "enter-password", "login-user", "focus-text",
    "focus-text-2",
    # select, checkboxes, radios, scroll lists
    "choose-list", "click-checkboxes", "click-option", "click-scroll-list",
    # dialogs, tabs, collapsibles, trees
    "click-dialog", "click-dialog-2", "click-tab", "click-tab-2", "click-collapsible", "click-collapsible-2",
    "navigate-tree",
    # autocomplete, date and time
    "use-autocomplete", "enter-date", "enter-time", "choose-date-easy",
    # multi-step forms
    "form-sequence-2", "login-user-popup", "email-inbox-delete", "email-inbox-important",
)
_REWARD = re.compile(r"reward (-?\d+(?:\.\d+)?)")


def task_url(base_url: str, task: str) -> str:
    """The task's page on the static server (``base_url`` ends with a slash)."""
    return f"{base_url}miniwob/{task}.html"


def task_text(base_url: str, task: str) -> str:
    """The engine task for one episode of ``task``."""
    return f"Do the MiniWoB task on {task_url(base_url, task)}"


@dataclass
class Episode:
    """The outcome of one episode; ``reward`` is None when the policy never read one."""

    task: str
    reward: float | None = None
    steps: int = 0
    result: str = ""
    error: str = ""
    observe_ms: list[float] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return self.reward is not None and self.reward > 0

    def describe(self) -> str:
        return f"{self.task}: reward={self.reward} steps={self.steps} result={self.result!r} error={self.error!r}"


async def run_episode(client: Client, base_url: str, task: str) -> Episode:
    """Run one episode of ``task`` to its end and score it."""
    ep = Episode(task)
    async for ev in client.run(task_text(base_url, task), stream=True, initial_url=task_url(base_url, task)):
        kind = ev.WhichOneof("kind")
        if kind == "step":
            ep.steps = ev.step.number
            try:
                timing = json.loads(ev.step.detail or "{}").get("timing_ms", {})
            except json.JSONDecodeError:
                timing = {}
            if isinstance(timing.get("observe"), (int, float)):
                ep.observe_ms.append(float(timing["observe"]))
        elif kind == "completed":
            ep.result = ev.completed.result
            if m := _REWARD.search(ev.completed.result):
                ep.reward = float(m.group(1))
        elif kind == "failed":
            ep.error = ev.failed.error
        elif kind == "cancelled":
            ep.error = f"cancelled: {ev.cancelled.reason}"
    return ep


async def run_episodes(client: Client, base_url: str, tasks: Iterable[str], per_task: int,
                       concurrency: int) -> list[Episode]:
    """``per_task`` episodes of every task, at most ``concurrency`` at a time, in a stable order."""
    gate = asyncio.Semaphore(concurrency)
    jobs = [t for t in tasks for _ in range(per_task)]

    async def one(task: str) -> Episode:
        async with gate:
            return await run_episode(client, base_url, task)

    async with asyncio.TaskGroup() as tg:
        running = [tg.create_task(one(t)) for t in jobs]
    return [r.result() for r in running]


def by_task(episodes: Iterable[Episode]) -> dict[str, list[Episode]]:
    grouped: dict[str, list[Episode]] = defaultdict(list)
    for ep in episodes:
        grouped[ep.task].append(ep)
    return dict(grouped)


def success_table(episodes: list[Episode]) -> str:
    """A per-task-type table: successes, mean reward, mean steps; the total last."""
    rows = ["| task | success | mean reward | mean steps |", "|---|---|---|---|"]
    for task, eps in by_task(episodes).items():
        wins = sum(e.success for e in eps)
        rewards = [e.reward for e in eps if e.reward is not None]
        mean_r = f"{sum(rewards) / len(rewards):.2f}" if rewards else "-"
        rows.append(f"| {task} | {wins}/{len(eps)} | {mean_r} | {sum(e.steps for e in eps) / len(eps):.1f} |")
    wins = sum(e.success for e in episodes)
    rows.append(f"| **all** | {wins}/{len(episodes)} ({100 * wins / max(1, len(episodes)):.0f}%) | | |")
    return "\n".join(rows)
