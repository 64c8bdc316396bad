"""The agent loop: plan, then observe the page, ask the model for tool calls, act, repeat.

::

    plan ─▶ observe ──▶ LLM (tools) ──▶ parse ──bad──▶ tell the model, ask again (≤ 3 per step)
              ▲                           │ ok: one or more calls, run in order
              └──── report step ◀── act ──┘ ── done(text, success) ──▶ Outcome

The plan is written while the task's initial URL loads (both start at once); a subtask
writes none and works from its parent's plan; a plan that announces subtasks
(``SUBTASKS: n``) has their contexts prepared while the launching call runs (``_start``).

The conversation sent to the model is: system (with the plan), ``TASK: ...``, one
assistant message and its tool results per past step, and the current observation
last. Old observations are not resent, so a request stays bounded by the step count
and its prefix (system, tools in a fixed order, task, history) is the same as the
previous step's. With ``constraints.allow_vision`` the observation message also
carries a JPEG screenshot with the element numbers drawn on it (an ``image_url`` part),
except when a secret is on the page or was typed into it (a NOTE says so).

Every wait has a deadline: reading the page ``settings.action_timeout_s``; the model
call and each browser action ``settings.step_timeout_s`` (a model that misses it
``MAX_SILENT_STEPS`` steps in a row fails the task; one LLM request is bounded in
``llm.py``); waiting for subtasks ``settings.subtask_wait_timeout_s``. The wait for the
cost budget (``gate``) comes before a step's deadline starts, not inside it: a long
refill is reported by the coordinator as a ``waiting`` event, not as a silent model. What the engine
did on the page's behalf (a dialog dismissed, a popup closed, a download refused) is
appended to the tool result of the action during which it happened, or shown as a
``NOTE:`` of the next observation. With secrets, everything the model sees and every
step report is redacted (``secrets.py``). A person may be asked (``ask_human``) and may
pause the task between steps; their words reach the model as the tool result or as the
next user message (``human.py``).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from openai.types.chat import ChatCompletionMessageFunctionToolCall
from playwright.async_api import Page

from ..config import Config
from ..llm import LLM, UsageMeter
from ..prompts import EXTRACT_PROMPT, extract_message, task_message
from .human import (
    ANSWER_PREFIX,
    ASK_HUMAN_TOOL,
    INSTRUCTION_PREFIX,
    PAUSED,
    QUESTION,
    Human,
    HumanUnavailable,
    paused_question,
)
from .observe import Observation, observe, page_html, page_text
from .planner import make_plan
from .replay import Recorder, Replayer
from .secrets import Secrets
from .subtasks import SUBTASK_TOOL_NAMES, SUBTASK_TOOLS, Broker, announced_subtasks, run_subtask_tool
from .tools import Action, ActionError, HasPage, HasTabs, PageActions, ToolFailed, browser_tools, parse_call

SYSTEM_PROMPT = (
    "You are a browser agent. You see the current page as an OBSERVATION: its URL, title, tabs, "
    "notes, scroll position and, under PAGE, its visible text in reading order with every usable "
    "element as a line [number] <tag attributes>name (value, checked, selected... show the live state). "
    "Act by calling tools. Refer to elements by their [number]. When the page text is cut off, "
    "scroll or use extract_content. "
    "When you have the answer, call done(text, success=true); if the task cannot be done, "
    "call done with success=false and say why."
)
MAX_BAD_CALLS_PER_STEP = 3
MAX_SILENT_STEPS = 2  # consecutive steps in which the model did not answer in time before the task fails


@dataclass
class StepReport:
    number: int
    thought: str
    action: str
    url: str
    result: str
    detail: str = ""
    replayed: bool = False


@dataclass
class Outcome:
    text: str
    success: bool
    steps: int = 0


class AgentFailed(RuntimeError):
    """The loop cannot go on (step limit, model keeps calling tools wrongly, LLM down)."""


@dataclass
class Agent:
    """Runs one task in one page. ``on_step`` / ``on_plan`` are awaited as things happen."""

    config: Config
    llm: LLM
    meter: UsageMeter
    on_step: Callable[[StepReport], Awaitable[None]]
    on_plan: Callable[[str], Awaitable[None]] | None = None
    broker: Broker | None = None
    # Reads a page for extract_content: (page HTML, query) -> (answer, detail for the step event).
    extractor: Callable[[str, str], Awaitable[tuple[str, str]]] | None = None
    copy: int = 0
    copies: int = 0
    # Why a URL may not be opened (None: it may); the browser context enforces the same policy.
    refusal: Callable[[str], str | None] = lambda url: None
    # Awaited before every LLM call (and each extraction): the engine's cost limits.
    gate: Callable[[], Awaitable[None]] | None = None
    # An earlier run's recording to replay (the recording cache), and the recording of this run.
    replay: str = ""
    recorder: Recorder = field(default_factory=Recorder)
    tools: list[dict[str, Any]] = field(default_factory=list)
    # Values the model types by placeholder and never sees (settings.secrets_file_path).
    secrets: Secrets = field(default_factory=Secrets)
    # The step being worked on (0 before the first): a worker reports it if the browser dies.
    current_step: int = 0
    # A person to ask (ask_human, pauses: human.py); set by request_pause, checked between steps.
    human: Human | None = None
    pause_requested: bool = False
    _browser: PageActions | None = field(default=None, init=False, repr=False)  # while run() runs

    def __post_init__(self) -> None:
        upload = self.config.settings.upload_dir is not None
        self.tools = browser_tools(upload) + (list(SUBTASK_TOOLS) if self.broker is not None else [])
        if self.human is not None and self.config.constraints.require_human_in_loop:
            self.tools.append(ASK_HUMAN_TOOL)

    def typed_secret_here(self) -> bool:
        """Whether a secret was typed into the page now open (a screenshot would show it)."""
        return self._browser is not None and self._browser.typed_secret_here()

    def request_pause(self) -> None:
        """Stop after the current step and wait for a person's instruction (PauseTask)."""
        self.pause_requested = True

    async def _ask(self, kind: str, question: str) -> str:
        assert self.human is not None
        try:
            return await self.human.ask(kind, question)
        except HumanUnavailable as exc:
            raise AgentFailed(f"no answer from a person: {exc}") from exc

    async def _extract(self, page: Page, query: str) -> tuple[str, str]:
        """Read the page for ``query`` (the budget gate was passed before the step's deadline)."""
        if self.extractor is not None:  # the HTML: tables, headings and links survive (extraction/convert.py)
            html = await page_html(page, self.config.settings.action_timeout_s)
            return await self.extractor(self.secrets.redact(html), query)
        text = self.secrets.redact(await page_text(page, self.config.settings.action_timeout_s))
        msgs = [
            {"role": "system", "content": EXTRACT_PROMPT},
            {"role": "user", "content": extract_message(query, text)},
        ]
        reply = await self.llm.chat(self.config.constraints.llm_model_mini, msgs, self.meter)
        return (reply.content or "").strip(), json.dumps({"chunks": 1, "chars": len(text)})

    async def run(self, session: HasPage, task: str, initial_url: str = "",
                  prior: list[tuple[str, str]] | None = None, parent_plan: str = "") -> Outcome:
        """Run the task in the holder's page (read afresh at every use: it may be replaced).

        ``parent_plan`` (a subtask's) is the plan of the task that launched it: the subtask
        works from it instead of calling the planner (see ``_start``).
        """
        s = self.config.settings
        browser = self._browser = PageActions(session, s.action_timeout_s, self.refusal, self.secrets, s.upload_dir)
        task_msg = task_message(task, prior or [], self.copy, self.copies)
        system = SYSTEM_PROMPT + (f"\n\n{self.secrets.prompt()}" if self.secrets else "")
        replayer = Replayer(self.replay)
        plan = await self._start(session, browser, initial_url, task_msg, replayer, parent_plan)
        if s.planner and (plan or not parent_plan):
            system += "\n\nYour plan:\n" + plan
        elif s.planner:
            system += "\n\nThe plan of the task that launched this one (do your part of it):\n" + parent_plan
        offered = {t["function"]["name"]: t["function"]["parameters"]["required"] for t in self.tools}
        history: list[dict[str, Any]] = [{"role": "system", "content": system}, {"role": "user", "content": task_msg}]
        silent = 0
        for number in range(1, s.max_steps + 1):
            self.current_step = number
            if self.pause_requested and self.human is not None:
                self.pause_requested = False
                said = await self._ask(PAUSED, paused_question(number))
                history.append({"role": "user", "content": INSTRUCTION_PREFIX + self.secrets.redact(said)})
            t_observe = time.monotonic()
            obs = await self._observe(session, typed_secret=browser.typed_secret_here())
            browser.seen = obs
            replayed = replayer.next(number, obs)
            if replayed is None and self.gate is not None:
                await self.gate()  # outside the step deadline: waiting for budget is not the model's silence
            t_decide = time.monotonic()
            try:
                async with asyncio.timeout(s.step_timeout_s):
                    actions, thought = replayed or await self._decide(obs, history, number, offered)
            except TimeoutError:
                silent += 1
                result = f"Error: the model did not answer within the step limit of {s.step_timeout_s:g}s"
                await self.on_step(StepReport(number, "", "(timed out)", self._url(session), result))
                if silent >= MAX_SILENT_STEPS:
                    raise AgentFailed(f"the model did not answer within settings.step_timeout_s = "
                                      f"{s.step_timeout_s:g}s in {silent} steps in a row") from None
                continue
            silent = 0
            t_act = time.monotonic()
            self.recorder.add(actions, thought, obs)
            results: list[str] = []
            details: list[str] = []
            outcome = None
            if obs.notes:  # what the model was told along with the page, for the step event
                details.append(json.dumps({"observation_notes": obs.notes, "pages": _pages(session)}))
            for action in actions:
                if action.name == "done":
                    outcome = Outcome(str(action.args.get("text", "")), bool(action.args.get("success", True)), number)
                    results.append("done")
                    break
                text, detail = await self._act(browser, action)
                results.append(text)
                details.append(detail)
            history.append(_assistant_calls(actions[: len(results)], thought))
            history += [{"role": "tool", "tool_call_id": a.call_id, "content": r}
                        for a, r in zip(actions, results, strict=False)]
            timing = {"observe": t_decide - t_observe, "llm": t_act - t_decide, "act": time.monotonic() - t_act}
            await self.on_step(StepReport(number, self.secrets.redact(thought),
                                          "; ".join(a.describe() for a in actions[: len(results)]),
                                          self._url(session), "\n".join(results), step_detail(timing, details),
                                          replayed=replayed is not None))
            if outcome is not None:
                return outcome
        raise AgentFailed(f"step limit reached ({s.max_steps} steps) without an answer")

    async def _start(self, session: HasPage, browser: PageActions, initial_url: str, task_msg: str,
                     replayer: Replayer, parent_plan: str) -> str:
        """Open ``initial_url`` and write the plan; returns this task's own plan ('' if none).

        The planner call and the initial navigation run at the same time: the first browser
        request goes out at once instead of one model latency later (issue 13), and the
        planner plans from the task text alone. Without an initial URL the planner sees the
        page already open (a follow-up's kept context), as before. A subtask (``parent_plan``)
        and a replayed run (the recorded plan) make no planner call.
        """
        s = self.config.settings
        opening = (asyncio.ensure_future(browser.execute(Action("go_to_url", {"url": initial_url}, "initial")))
                   if initial_url else None)
        try:
            if not s.planner or (parent_plan and not replayer.plan):
                plan = None
            elif replayer.plan:
                plan = replayer.plan
            else:
                # With an initial URL the page is still loading: the planner plans from the task text.
                blank = opening is not None or session.page.url in ("", "about:blank")
                seen = None if blank else (await self._observe(session, drain=False)).render(
                    0, s.max_steps, s.observation_max_chars)
                plan = await make_plan(self.llm, self.meter, self.config, task_msg, seen, self.broker is not None,
                                       self.gate)
        except BaseException:
            if opening is not None:  # the plan failed (or we were cancelled): the navigation goes too
                opening.cancel()
                await asyncio.gather(opening, return_exceptions=True)
            raise
        if opening is not None:
            await opening
        if plan is None:
            return ""
        self.recorder.plan = plan
        if self.on_plan is not None:
            await self.on_plan(plan)
        if self.broker is not None and (coming := announced_subtasks(plan)):
            # Their contexts get made while this task's next model call (the launch) runs.
            await self.broker.prepare(coming)
        return plan

    def _url(self, session: HasPage) -> str:
        return self.secrets.redact(session.page.url)

    async def _observe(self, session: HasPage, drain: bool = True, typed_secret: bool = False) -> Observation:
        """The page as the model may see it: bounded in time, with the engine's notes, secrets redacted.

        The screenshot cannot be redacted, so it is withheld (with a NOTE saying why) when a
        secret shows on the page (redacting the text changed it) or was typed into this page.
        """
        s = self.config.settings
        obs = await observe(session.page, s.action_timeout_s, s.observation_max_elements, s.observation_max_chars,
                            tabs=session.tabs if isinstance(session, HasTabs) else (),
                            vision=drain and self.config.constraints.allow_vision)
        if drain:
            obs.notes = session.take_notes() + obs.notes
        redacted = self.secrets.redact_observation(obs)
        if redacted.screenshot is not None:
            why = ("a secret value is shown on this page" if redacted != obs
                   else "a secret was typed into this page" if typed_secret else "")
            if why:
                redacted.screenshot = None
                redacted.notes.append(f"no screenshot with this observation: {why} (the text above is redacted)")
        return redacted

    async def _act(self, browser: PageActions, action: Action) -> tuple[str, str]:
        """Run one non-final action; returns (tool result, step detail), redacted, with the engine's notes."""
        text, detail = await self._act_raw(browser, action)
        notes = browser.take_notes()
        if notes:
            text += "".join(f"\nNote: {n}" for n in notes)
            extra = {"notes": notes, "pages": _pages(browser)}
            detail = json.dumps({**(json.loads(detail) if detail else {}), **extra})
        return self.secrets.redact(text), self.secrets.redact(detail)

    async def _act_raw(self, browser: PageActions, action: Action) -> tuple[str, str]:
        s = self.config.settings
        if action.name in SUBTASK_TOOL_NAMES:
            assert self.broker is not None
            try:
                async with asyncio.timeout(s.subtask_wait_timeout_s):
                    return await run_subtask_tool(self.broker, action), ""
            except TimeoutError:
                return f"Error: subtasks did not finish within {s.subtask_wait_timeout_s}s", ""
        if action.name == "ask_human":  # no deadline here: the coordinator's human_response_timeout_s
            return ANSWER_PREFIX + await self._ask(QUESTION, str(action.args["question"])), ""
        if action.name == "extract_content" and self.gate is not None:
            await self.gate()  # before the action's deadline, as for the step's model call
        try:
            async with asyncio.timeout(s.step_timeout_s):
                if action.name == "extract_content":
                    answer, detail = await self._extract(browser.page, str(action.args["query"]))
                    return "Extracted: " + answer, detail
                return await browser.execute(action), ""
        except ToolFailed as exc:
            return f"Error: {action.name} failed: {exc}", ""
        except TimeoutError:
            return f"Error: {action.name} took longer than {s.step_timeout_s:g}s and was abandoned", ""

    async def _decide(
        self, seen: Observation, history: list[dict[str, Any]], number: int, offered: dict[str, list[str]]
    ) -> tuple[list[Action], str]:
        """Ask the model for the next actions, correcting malformed or missing tool calls."""
        s = self.config.settings
        text = seen.render(number, s.max_steps, s.observation_max_chars)
        image = seen.image_url()  # allow_vision: the screenshot goes with this observation only
        obs: str | list[dict[str, Any]] = text if image is None else [
            {"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": image}}]
        corrections: list[dict[str, Any]] = []
        problem = ""
        for attempt in range(MAX_BAD_CALLS_PER_STEP):
            msgs = history + corrections + [{"role": "user", "content": obs}]
            # The step's first call passed the gate before the deadline (run); corrections ask again.
            reply = await self.llm.chat(self.config.constraints.llm_model, msgs, self.meter, tools=self.tools,
                                        gate=self.gate if attempt else None)
            thought = (reply.content or "").strip()
            calls = [c for c in (reply.tool_calls or []) if isinstance(c, ChatCompletionMessageFunctionToolCall)]
            if not calls:
                problem = "you did not call a tool; call one of the tools"
                corrections += [{"role": "assistant", "content": thought or "(no tool call)"},
                                {"role": "user", "content": f"Error: {problem}."}]
                continue
            try:
                return [parse_call(c.function.name, c.function.arguments, c.id, offered) for c in calls], thought
            except ActionError as exc:
                problem = str(exc)
                raw = [{"id": c.id, "type": "function",
                        "function": {"name": c.function.name, "arguments": c.function.arguments}} for c in calls]
                corrections += [{"role": "assistant", "content": thought or None, "tool_calls": raw}]
                corrections += [{"role": "tool", "tool_call_id": c.id, "content": f"Error: {problem}"} for c in calls]
        raise AgentFailed(f"the model made {MAX_BAD_CALLS_PER_STEP} unusable tool calls in step {number}: {problem}")


def step_detail(timing: dict[str, float], parts: list[str]) -> str:
    """A step's ``detail``: one JSON object with ``timing_ms`` (observe, llm, act) and the keys of
    ``parts`` (each a JSON object or ""), lists under the same key concatenated."""
    merged: dict[str, Any] = {"timing_ms": {k: round(v * 1000, 1) for k, v in timing.items()}}
    for part in filter(None, parts):
        for key, value in json.loads(part).items():
            if isinstance(value, list) and isinstance(merged.get(key), list):
                merged[key] = merged[key] + value
            else:
                merged[key] = value
    return json.dumps(merged)


def _pages(holder: HasPage | PageActions) -> int:
    """How many pages the task's context has open (1 unless something leaked)."""
    try:
        return len(holder.page.context.pages)
    except Exception:
        return 0


def _assistant_calls(actions: list[Action], thought: str) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": thought or None,
        "tool_calls": [
            {"id": a.call_id, "type": "function", "function": {"name": a.name, "arguments": json.dumps(a.args)}}
            for a in actions
        ],
    }
