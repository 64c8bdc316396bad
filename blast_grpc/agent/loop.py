"""The agent loop: observe the page, ask the model for one tool call, act, repeat.

::

    observe ──▶ LLM (tools) ──▶ parse ──bad──▶ tell the model, ask again (≤ 3 per step)
       ▲                          │ ok
       └──── report step ◀── act ─┘ ── done(text, success) ──▶ Outcome

The conversation sent to the model is: system, ``TASK: ...``, one assistant tool
call and tool result per past step, and the current observation last. Old
observations are not resent, so a request stays bounded by the step count.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from ..config import Config
from ..llm import LLM, UsageMeter
from .observe import observe, page_text
from .tools import BROWSER_TOOLS, Action, ActionError, Browser, parse_call

SYSTEM_PROMPT = (
    "You are a browser agent. You see the current page as an OBSERVATION: its URL, title, "
    "numbered interactive elements and visible text. Act by calling exactly one tool per turn. "
    "Refer to elements by their [number]. When the page text is cut off, use extract_content. "
    "When you have the answer, call done(text, success=true); if the task cannot be done, "
    "call done with success=false and say why."
)
EXTRACT_PROMPT = (
    "You extract information from web page text. Answer the QUERY using only the CONTENT. "
    "Reply with JSON when the query asks for structured data; say plainly when the content "
    "does not contain the answer."
)
MAX_BAD_CALLS_PER_STEP = 3


@dataclass
class StepReport:
    number: int
    thought: str
    action: str
    url: str
    result: str


@dataclass
class Outcome:
    text: str
    success: bool
    steps: int = 0
    error: str = ""


class AgentFailed(RuntimeError):
    """The loop cannot go on (step limit, model keeps calling tools wrongly, LLM down)."""


@dataclass
class Agent:
    """Runs one task in one page. ``on_step`` is awaited after every step."""

    config: Config
    llm: LLM
    meter: UsageMeter
    on_step: Callable[[StepReport], Awaitable[None]]
    tools: list[dict[str, Any]] = field(default_factory=lambda: list(BROWSER_TOOLS))

    async def extract(self, page: Any, query: str) -> str:
        text = await page_text(page)
        msgs = [
            {"role": "system", "content": EXTRACT_PROMPT},
            {"role": "user", "content": f"QUERY: {query}\nCONTENT:\n{text}"},
        ]
        reply = await self.llm.chat(self.config.constraints.llm_model_mini, msgs, self.meter)
        return (reply.content or "").strip()

    async def run(self, page: Any, task: str, initial_url: str = "",
                  prior: list[tuple[str, str]] | None = None) -> Outcome:
        s = self.config.settings
        browser = Browser(page, s.action_timeout_s, lambda q: self.extract(page, q))
        if initial_url:
            await browser.execute(Action("go_to_url", {"url": initial_url}, "initial"))
        offered = {t["function"]["name"] for t in self.tools}
        history: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": task_message(task, prior or [])},
        ]
        for number in range(1, s.max_steps + 1):
            try:
                async with asyncio.timeout(s.step_timeout_s):
                    action, thought = await self._decide(page, history, number, offered)
                    if action.name == "done":
                        text = str(action.args.get("text", ""))
                        success = bool(action.args.get("success", True))
                        await self.on_step(StepReport(number, thought, action.describe(), page.url, "done"))
                        return Outcome(text, success, number)
                    result = await browser.execute(action)
            except TimeoutError:
                result = f"Error: the step took longer than {s.step_timeout_s}s and was abandoned"
                action, thought = Action("none", {}, f"timeout-{number}"), ""
                history.append({"role": "user", "content": result})
                await self.on_step(StepReport(number, thought, "(timed out)", page.url, result))
                continue
            history.append(_assistant_call(action, thought))
            history.append({"role": "tool", "tool_call_id": action.call_id, "content": result})
            await self.on_step(StepReport(number, thought, action.describe(), page.url, result))
        raise AgentFailed(f"step limit reached ({s.max_steps} steps) without an answer")

    async def _decide(
        self, page: Any, history: list[dict[str, Any]], number: int, offered: set[str]
    ) -> tuple[Action, str]:
        """Ask the model for the next action, correcting malformed or missing tool calls."""
        s = self.config.settings
        obs = (await observe(page)).render(number, s.max_steps, s.observation_max_chars)
        corrections: list[dict[str, Any]] = []
        problem = ""
        for _ in range(MAX_BAD_CALLS_PER_STEP):
            msgs = history + corrections + [{"role": "user", "content": obs}]
            reply = await self.llm.chat(self.config.constraints.llm_model, msgs, self.meter, tools=self.tools)
            thought = (reply.content or "").strip()
            calls = reply.tool_calls or []
            if not calls:
                problem = "you did not call a tool; call exactly one tool"
                corrections += [{"role": "assistant", "content": thought or "(no tool call)"},
                                {"role": "user", "content": f"Error: {problem}."}]
                continue
            call = calls[0]
            fn = getattr(call, "function", None)
            if fn is None:
                problem = "only function tools are supported"
                corrections += [{"role": "user", "content": f"Error: {problem}."}]
                continue
            try:
                return parse_call(fn.name, fn.arguments, call.id, offered), thought
            except ActionError as exc:
                problem = str(exc)
                corrections += [
                    {"role": "assistant", "content": thought or None,
                     "tool_calls": [{"id": call.id, "type": "function",
                                     "function": {"name": fn.name, "arguments": fn.arguments}}]},
                    {"role": "tool", "tool_call_id": call.id, "content": f"Error: {problem}"},
                ]
        raise AgentFailed(f"the model made {MAX_BAD_CALLS_PER_STEP} unusable tool calls in step {number}: {problem}")


def task_message(task: str, history: list[tuple[str, str]]) -> str:
    """``TASK: ...``, followed by the earlier turns of the conversation when there are any."""
    lines = [f"TASK: {task}"]
    if history:
        lines.append("CONTEXT (earlier tasks in this conversation, oldest first):")
        for i, (description, result) in enumerate(history, 1):
            lines += [f"{i}. Task: {description}", f"   Result: {result}"]
    return "\n".join(lines)


def _assistant_call(action: Action, thought: str) -> dict[str, Any]:
    import json

    return {
        "role": "assistant",
        "content": thought or None,
        "tool_calls": [
            {"id": action.call_id, "type": "function",
             "function": {"name": action.name, "arguments": json.dumps(action.args)}}
        ],
    }
