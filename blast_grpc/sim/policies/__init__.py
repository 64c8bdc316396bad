"""Scripted policies: the simulated model's replies computed in Python instead of scenario rules.

A scenario file suits a site the tests wrote; a benchmark of unmodified pages
(MiniWoB++) needs a small program per task type. A policy is chosen with
``blast-grpc sim-llm --policy NAME`` (``SimServer(policies=[...])``) and answers the
agent requests whose task its ``task`` regex finds; every other request (other
tasks, planner, extraction) goes to the scenarios as before. Like the scenarios a
policy decides only from the request: the observation message it parses with
``page.parse_page`` and the history of earlier calls and thoughts.

Policies: ``miniwob`` (tasks "Do the MiniWoB task on <url>/miniwob/<task>.html").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ..protocol import ChatRequest, content_text
from ..rules import Decision
from . import miniwob
from .page import parse_page


class PolicyError(ValueError):
    """An unknown policy name."""


@dataclass(frozen=True)
class Policy:
    """Plays the agent tasks ``task`` finds: ``decide(request, observation text)``."""

    name: str
    task: re.Pattern[str]
    decide: Callable[[ChatRequest, str], Decision]


def observation_text(body: dict[str, Any]) -> str:
    """The last message's text when it is the user's (the observation), else ''."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    return content_text(last.get("content")) if isinstance(last, dict) and last.get("role") == "user" else ""


def _miniwob(req: ChatRequest, observation: str) -> Decision:
    calls, thought = miniwob.decide(req.task, parse_page(observation), req.thoughts, [req.last_tool_result],
                                    req.step)
    scenario = f"miniwob/{miniwob.task_type(req.task) or '?'}"
    missing = next((tool for tool, _ in calls if tool not in req.tools), None)
    if missing is not None:
        return Decision("done", {"text": f"sim: tool {missing} is not offered", "success": False},
                        scenario=scenario)
    (tool, args), rest = calls[0], calls[1:]
    return Decision(tool, args, content=thought, scenario=scenario, extra=rest)


POLICIES: dict[str, Policy] = {
    "miniwob": Policy("miniwob", re.compile(r"Do the MiniWoB task on \S+/miniwob/[\w-]+\.html"), _miniwob),
}


def load_policies(names: Iterable[str]) -> list[Policy]:
    """The named policies, in order; ``PolicyError`` names an unknown one and the known ones."""
    chosen = []
    for name in names:
        if name not in POLICIES:
            raise PolicyError(f"unknown policy {name!r}; known: {', '.join(sorted(POLICIES))}")
        chosen.append(POLICIES[name])
    return chosen
