"""The subtask tools: launch subtasks, collect their results (task parallelism).

The agent reaches the engine through a ``Broker`` (the worker's gRPC client of the
coordinator's TaskBrokerService). A launch returns at once; a wait is a plain
awaitable, so a waiting parent never blocks its worker's event loop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from ..prompts import FIRST_SUBTASK_RESULT, LAUNCHED, SUBTASK_RESULTS
from .tools import Action, _fn

SUBTASK_TOOLS: list[dict[str, Any]] = [
    _fn(
        "launch_subtask",
        "Start a subtask that runs in parallel in its own browser. Returns its task id at once. "
        "num_copies > 1 races that many copies and keeps the first that succeeds.",
        {"task": {"type": "string"}, "initial_url": {"type": "string"}, "num_copies": {"type": "integer"}},
        ["task"],
    ),
    _fn(
        "get_subtask_results",
        "Wait until all the given subtasks have ended and return their results.",
        {"task_ids": {"type": "array", "items": {"type": "string"}}},
        ["task_ids"],
    ),
    _fn(
        "get_first_subtask_result",
        "Wait until the first of the given subtasks succeeds and return its result.",
        {"task_ids": {"type": "array", "items": {"type": "string"}}},
        ["task_ids"],
    ),
]
SUBTASK_TOOL_NAMES = {t["function"]["name"] for t in SUBTASK_TOOLS}


@dataclass
class SubtaskOutcome:
    task_id: str
    state: str  # "completed", "failed", "cancelled", "running"
    result: str
    success: bool
    error: str

    def line(self) -> str:
        if self.state == "completed":
            return f"[{self.task_id}] completed ({'success' if self.success else 'gave up'}): {self.result}"
        return f"[{self.task_id}] {self.state}: {self.error or self.result}"


class Broker(Protocol):
    async def launch(self, task: str, initial_url: str, num_copies: int) -> tuple[str, int]: ...
    async def prepare(self, count: int) -> int: ...
    async def wait(self, task_ids: list[str], first_success: bool) -> list[SubtaskOutcome]: ...


# The plan's last line when the planner means to launch subtasks (planner.py asks for it).
_ANNOUNCED = re.compile(r"^\s*SUBTASKS:\s*(\d+)\s*$", re.MULTILINE)
MAX_ANNOUNCED = 64


def announced_subtasks(plan: str) -> int:
    """How many subtasks the plan says it will launch (its last ``SUBTASKS: n`` line; 0 if none)."""
    found = _ANNOUNCED.findall(plan)
    return min(int(found[-1]), MAX_ANNOUNCED) if found else 0


class BrokerRefused(RuntimeError):
    """The engine refused the request (depth limit, too many subtasks, unknown id)."""


async def run_subtask_tool(broker: Broker, action: Action) -> str:
    """Carry out one subtask tool call; the text is the tool result the model reads."""
    a = action.args
    try:
        if action.name == "launch_subtask":
            copies = int(a.get("num_copies") or 1)
            task_id, started = await broker.launch(str(a["task"]), str(a.get("initial_url") or ""), copies)
            extra = f" ({started} racing copies)" if started > 1 else ""
            return f"{LAUNCHED} {task_id}{extra}"
        ids = a.get("task_ids")
        if isinstance(ids, str):
            ids = [ids]
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            return "Error: task_ids must be a non-empty list of subtask ids"
        first = action.name == "get_first_subtask_result"
        outcomes = await broker.wait(ids, first)
        head = FIRST_SUBTASK_RESULT if first else SUBTASK_RESULTS
        return "\n".join([head, *(o.line() for o in outcomes)])
    except BrokerRefused as exc:
        return f"Error: {exc}"
