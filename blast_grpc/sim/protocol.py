"""Read the engine's chat messages: what kind of request it is, the task, the page, the history.

The simulated model may only know what the request tells it, so everything the
scenarios look at comes from here. The formats (see the module docs of
``blast_grpc.sim``) are:

* agent request — has ``tools``; first user message ``TASK: ...``; history of
  assistant tool calls and ``tool`` results; the last user message is an
  ``OBSERVATION`` block ending in ``STEP: n/max``;
* extraction request — no tools; last user message ``QUERY: ...`` / ``CONTENT:``;
* planner request — no tools; first user message starts with ``PLAN FOR TASK:``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

AGENT, EXTRACT, PLAN, OTHER = "agent", "extract", "plan", "other"

_ELEMENT_LINE = re.compile(r"^\[(\d+)\] ?(.*)$")
_STEP_LINE = re.compile(r"^STEP:\s*(\d+)")
_URL_IN_TEXT = re.compile(r"https?://[^\s\"'<>)\]]+")


def content_text(content: Any) -> str:
    """A message's content as text: strings as-is, content-part lists joined, None as ''."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


@dataclass
class Element:
    """One ``[index] <tag ...>label`` line of the observation; ``line`` excludes the prefix."""

    index: int
    line: str


@dataclass
class Observation:
    """The current page as the engine described it."""

    url: str = ""
    title: str = ""
    elements: list[Element] = field(default_factory=list)
    text: str = ""
    step: int | None = None


@dataclass
class ToolCall:
    """A past action, as the assistant message in the history recorded it."""

    name: str
    arguments: str
    thought: str = ""

    def render(self) -> str:
        """``name {json args}`` — what ``last_action`` conditions match against."""
        return f"{self.name} {self.arguments}".strip()


@dataclass
class ChatRequest:
    """A classified request: ``kind`` is agent/extract/plan/other."""

    kind: str
    model: str
    task: str = ""
    observation: Observation | None = None
    history: list[ToolCall] = field(default_factory=list)
    last_tool_result: str = ""
    query: str = ""
    content: str = ""
    tools: list[str] = field(default_factory=list)
    step: int = 1

    @property
    def start_url(self) -> str | None:
        """The first http(s) URL in the task text, if any."""
        m = _URL_IN_TEXT.search(self.task)
        return m.group(0).rstrip(".,;:!?") if m else None


def parse_observation(text: str) -> Observation | None:
    """Parse an ``OBSERVATION`` block; None if ``text`` is not one."""
    lines = text.split("\n")
    if not lines or lines[0].strip() != "OBSERVATION":
        return None
    obs = Observation()
    i = 1
    # Header fields until ELEMENTS:/TEXT:.
    while i < len(lines) and lines[i].strip() not in ("ELEMENTS:", "TEXT:"):
        key, _, value = lines[i].partition(":")
        if key == "URL":
            obs.url = value.strip()
        elif key == "TITLE":
            obs.title = value.strip()
        i += 1
    if i < len(lines) and lines[i].strip() == "ELEMENTS:":
        i += 1
        while i < len(lines) and lines[i].strip() != "TEXT:":
            m = _ELEMENT_LINE.match(lines[i])
            if m:
                obs.elements.append(Element(int(m.group(1)), m.group(2)))
            i += 1
    if i < len(lines) and lines[i].strip() == "TEXT:":
        i += 1
    body = lines[i:]
    # The STEP line is the last line; page text could contain "STEP:" too, so search from the end.
    for j in range(len(body) - 1, -1, -1):
        m = _STEP_LINE.match(body[j])
        if m:
            obs.step = int(m.group(1))
            body = body[:j]
            break
    obs.text = "\n".join(body).strip("\n")
    return obs


def _tool_names(tools: Any) -> list[str]:
    names = []
    for t in tools or []:
        fn = t.get("function") if isinstance(t, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            names.append(fn["name"])
    return names


def _split_query(text: str) -> tuple[str, str]:
    """``QUERY: q ... CONTENT:\\n body`` -> (q, body)."""
    head, sep, body = text.partition("\nCONTENT:")
    query = head[len("QUERY:"):].strip()
    if not sep:
        return query, ""
    return query, body[1:] if body.startswith("\n") else body.lstrip(" ")


def parse_request(body: dict[str, Any]) -> ChatRequest:
    """Classify a (validated) Chat Completions body and pull out what the scenarios need."""
    messages: list[dict[str, Any]] = body["messages"]
    tools = _tool_names(body.get("tools"))
    users = [content_text(m.get("content")) for m in messages if m.get("role") == "user"]
    first_user = users[0] if users else ""
    last_user = users[-1] if users else ""
    req = ChatRequest(kind=OTHER, model=str(body["model"]), tools=tools)

    if body.get("tools"):
        req.kind = AGENT
        if first_user.startswith("TASK:"):
            req.task = first_user[len("TASK:"):].strip()
        last = messages[-1] if messages else {}
        if last.get("role") == "user":
            req.observation = parse_observation(content_text(last.get("content")))
        for m in messages:
            if m.get("role") == "assistant" and m.get("tool_calls"):
                call = m["tool_calls"][0]
                fn = call.get("function", {}) if isinstance(call, dict) else {}
                args = fn.get("arguments", "")
                req.history.append(ToolCall(
                    name=str(fn.get("name", "")),
                    arguments=args if isinstance(args, str) else json.dumps(args),
                    thought=content_text(m.get("content")),
                ))
            elif m.get("role") == "tool":
                req.last_tool_result = content_text(m.get("content"))
        assistants = sum(1 for m in messages if m.get("role") == "assistant")
        obs_step = req.observation.step if req.observation else None
        req.step = obs_step if obs_step is not None else assistants + 1
    elif first_user.startswith("PLAN FOR TASK:"):
        req.kind = PLAN
        req.task = first_user[len("PLAN FOR TASK:"):].strip()
    elif last_user.startswith("QUERY:"):
        req.kind = EXTRACT
        req.query, req.content = _split_query(last_user)
    return req
