"""The planner: before the first step, the primary model writes a short plan.

Its guidance depends on which kinds of parallelism the task may use and on its
depth: at the nesting limit it is told not to launch subtasks (and the launch
tools are not offered at all).
"""

from __future__ import annotations

from typing import Awaitable, Callable

from ..config import Config
from ..llm import LLM, UsageMeter
from ..prompts import PLAN_PREFIX

PLANNER_PROMPT = (
    "You plan browser tasks. Write a short numbered plan (at most 6 lines) for the TASK below: "
    "which pages to open and what to read."
)


def guidance(config: Config, may_launch: bool) -> str:
    c = config.constraints
    lines = []
    if may_launch:
        lines.append("You may split independent parts (for example one page per item) into subtasks with "
                     "launch_subtask; they run in parallel in their own browsers. Launch them all in one turn, "
                     "then collect them with get_subtask_results. If you will launch subtasks, end the plan "
                     "with a line SUBTASKS: <how many>.")
        if c.allow_parallelism.first_of_n:
            lines.append("launch_subtask(num_copies=N) races N copies of an unreliable subtask and keeps the first "
                         "success.")
    else:
        lines.append("Do not launch subtasks: do the whole task yourself in this browser.")
    if c.allow_parallelism.data:
        lines.append("extract_content reads long pages quickly in parallel chunks: use it for long text.")
    return " ".join(lines)


async def make_plan(llm: LLM, meter: UsageMeter, config: Config, task_message: str, observation: str | None,
                    may_launch: bool, gate: Callable[[], Awaitable[None]] | None = None) -> str:
    """Ask the primary model for a plan; the request format is what the simulated model parses."""
    messages = [
        {"role": "system", "content": f"{PLANNER_PROMPT} {guidance(config, may_launch)}"},
        {"role": "user", "content": PLAN_PREFIX + task_message},
    ]
    if observation:
        messages.append({"role": "user", "content": observation})
    reply = await llm.chat(config.constraints.llm_model, messages, meter, gate=gate)
    return (reply.content or "").strip()
