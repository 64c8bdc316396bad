"""Read the engine's chat messages: what kind of request it is, the task, the page, the history.

The simulated model may only know what the request tells it, so everything the
scenarios look at comes from here. The formats (see the module docs of
``blast_grpc.sim``) are:

* agent request — has ``tools``; first user message ``TASK: ...``; history of
  assistant tool calls and ``tool`` results; the last user message is an
  ``OBSERVATION`` block ending in ``STEP: n/max``;
* extraction request — no tools; last user message ``QUERY: ...`` / ``CONTENT:``;
* planner request — no tools; first user message starts with ``PLAN FOR TASK:``;
  a later user message may hold the ``OBSERVATION`` of the page already open.

The task message may carry a ``COPY: k/N`` line (the task runs as N racing
copies); it is taken out of the task text into ``copy``/``copies``. One
assistant message may hold several tool calls (the engine runs them all, in
order); the history lists every call, each with its own ``tool`` result. Tool
results of the subtask tools are read into ``launched`` (``Launched subtask
task_<id>``) and ``results`` (the latest ``Subtask results:`` or ``First
subtask result:`` message). What a person said (people in the loop) is read into
``human_said``: the latest ``ask_human`` answer (a tool result ``The person answered: ...``)
or instruction to a paused task (a user message ``INSTRUCTION FROM THE PERSON ...: ...``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

AGENT, EXTRACT, PLAN, OTHER = "agent", "extract", "plan", "other"

_ELEMENT_LINE = re.compile(r"^\[(\d+)\] (<.*)$")
_STEP_LINE = re.compile(r"^STEP:\s*(\d+)")
_URL_IN_TEXT = re.compile(r"https?://[^\s\"'<>)\]]+")
_COPY_LINE = re.compile(r"^COPY:[ \t]*(\d+)[ \t]*/[ \t]*(\d+)[ \t]*$\n?", re.MULTILINE)
CONTEXT_HEADER = "CONTEXT (earlier tasks in this conversation, oldest first):"
_LAUNCHED = re.compile(r"^Launched subtask (task_[0-9A-Za-z_-]+)")
_RESULTS_HEADERS = ("Subtask results:", "First subtask result:")
_VISITED = re.compile(r"^(?:Opened|Went back to) (\S+)")
_HUMAN_ANSWER = "The person answered: "
_HUMAN_INSTRUCTION = re.compile(r"^INSTRUCTION FROM THE PERSON[^:]*: ", re.DOTALL)
_LINK_LINE = re.compile(r"^<a\b[^>]*>(.*?)(?:</a>)?$")


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
    tabs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    scroll: str = ""
    images: int = 0  # image parts (screenshots) sent with the observation


@dataclass
class ToolCall:
    """A past action, as the assistant message in the history recorded it."""

    name: str
    arguments: str
    thought: str = ""
    result: str = ""  # the matching ``tool`` message's content ('' if none came back)

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
    copy: int = 1
    copies: int = 1
    copy_line: bool = False  # the task message had a ``COPY: k/N`` line
    launched: list[str] = field(default_factory=list)
    results: str | None = None
    visited: list[str] = field(default_factory=list)
    thoughts: list[str] = field(default_factory=list)
    human_said: str | None = None  # the latest answer or instruction of a person (None: none yet)

    @property
    def start_url(self) -> str | None:
        """The first http(s) URL in the task text, if any."""
        m = _URL_IN_TEXT.search(self.task)
        return m.group(0).rstrip(".,;:!?") if m else None

    @property
    def links(self) -> list[str]:
        """The labels of the ``<a ...>`` element lines of the observation, in page order."""
        labels = []
        for e in self.observation.elements if self.observation else []:
            m = _LINK_LINE.match(e.line)
            if m and m.group(1).strip():
                labels.append(m.group(1).strip())
        return labels


def parse_observation(text: str) -> Observation | None:
    """Parse an ``OBSERVATION`` block; None if ``text`` is not one.

    Header lines (``URL:``, ``TITLE:``, ``TABS:``, ``NOTE:``, ``SCROLL:``) run until ``PAGE:``;
    the PAGE section runs to the last ``STEP:`` line. ``elements`` are its ``[N] ...`` lines,
    ``text`` is the whole section (text lines and element lines, in page order).
    """
    lines = text.split("\n")
    if not lines or lines[0].strip() != "OBSERVATION":
        return None
    obs = Observation()
    i = 1
    while i < len(lines) and lines[i].strip() != "PAGE:":
        key, _, value = lines[i].partition(":")
        if key == "URL":
            obs.url = value.strip()
        elif key == "TITLE":
            obs.title = value.strip()
        elif key == "TABS":
            obs.tabs = [t.strip() for t in value.split(" | ") if t.strip()]
        elif key == "NOTE":
            obs.notes.append(value.strip())
        elif key == "SCROLL":
            obs.scroll = value.strip()
        i += 1
    body = lines[i + 1:]
    # The STEP line is the last line; page text could contain "STEP:" too, so search from the end.
    for j in range(len(body) - 1, -1, -1):
        m = _STEP_LINE.match(body[j])
        if m:
            obs.step = int(m.group(1))
            body = body[:j]
            break
    for line in body:
        if m := _ELEMENT_LINE.match(line):
            obs.elements.append(Element(int(m.group(1)), m.group(2)))
    obs.text = "\n".join(body).strip("\n")
    return obs


def image_parts(content: Any) -> int:
    """How many ``image_url`` parts a message's content carries (vision screenshots)."""
    if not isinstance(content, list):
        return 0
    return sum(1 for p in content if isinstance(p, dict) and p.get("type") == "image_url"
               and str((p.get("image_url") or {}).get("url", "")).startswith("data:image/"))


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


def split_copy(text: str) -> tuple[str, tuple[int, int] | None]:
    """Take the ``COPY: k/N`` line out of a task message: (text without it, (k, N) or None).

    The line is looked for before the ``CONTEXT`` block, else as the very last
    line of the message, so an earlier answer quoted in the block cannot pose as one.
    """
    head, sep, tail = text.partition(CONTEXT_HEADER)
    m = _COPY_LINE.search(head)
    if m is not None:
        return head[:m.start()] + head[m.end():] + sep + tail, (int(m.group(1)), int(m.group(2)))
    rest, _, last = text.rstrip("\n").rpartition("\n")
    m = _COPY_LINE.fullmatch(last)
    if sep and m is not None:
        return rest, (int(m.group(1)), int(m.group(2)))
    return text, None


def _set_task(req: ChatRequest, text: str) -> None:
    task, copy = split_copy(text)
    req.task = task.strip()
    if copy is not None:
        req.copy, req.copies = copy
        req.copy_line = True


def _read_history(req: ChatRequest, messages: list[dict[str, Any]]) -> None:
    """Every tool call of every assistant message, their results, and what the results tell."""
    by_id: dict[str, ToolCall] = {}
    for m in messages:
        role = m.get("role")
        if role == "assistant":
            thought = content_text(m.get("content"))
            if thought.strip():
                req.thoughts.append(thought.strip())
            for call in m.get("tool_calls") or []:
                fn = call.get("function", {}) if isinstance(call, dict) else {}
                args = fn.get("arguments", "")
                tc = ToolCall(name=str(fn.get("name", "")),
                              arguments=args if isinstance(args, str) else json.dumps(args), thought=thought)
                req.history.append(tc)
                if isinstance(call, dict) and isinstance(call.get("id"), str):
                    by_id[call["id"]] = tc
        elif role == "user":
            said = content_text(m.get("content"))
            if instruction := _HUMAN_INSTRUCTION.match(said):
                req.human_said = said[instruction.end():]
        elif role == "tool":
            result = content_text(m.get("content"))
            req.last_tool_result = result
            if result.startswith(_HUMAN_ANSWER):
                req.human_said = result[len(_HUMAN_ANSWER):]
            if (answered := by_id.get(str(m.get("tool_call_id")))) is not None:
                answered.result = result
            if launched := _LAUNCHED.match(result):
                req.launched.append(launched.group(1))
            elif result.startswith(_RESULTS_HEADERS):
                req.results = result
            elif visited := _VISITED.match(result):
                req.visited.append(visited.group(1))


def _later_observation(messages: list[dict[str, Any]]) -> Observation | None:
    """The last user message after the first that is an ``OBSERVATION`` (planner requests)."""
    users = [content_text(m.get("content")) for m in messages if m.get("role") == "user"]
    for text in reversed(users[1:]):
        if (obs := parse_observation(text)) is not None:
            return obs
    return None


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
            _set_task(req, first_user[len("TASK:"):])
        last = messages[-1] if messages else {}
        if last.get("role") == "user":
            req.observation = parse_observation(content_text(last.get("content")))
            if req.observation is not None:
                req.observation.images = image_parts(last.get("content"))
        _read_history(req, messages)
        assistants = sum(1 for m in messages if m.get("role") == "assistant")
        obs_step = req.observation.step if req.observation else None
        req.step = obs_step if obs_step is not None else assistants + 1
    elif first_user.startswith("PLAN FOR TASK:"):
        req.kind = PLAN
        _set_task(req, first_user[len("PLAN FOR TASK:"):])
        req.observation = _later_observation(messages)
    elif last_user.startswith("QUERY:"):
        req.kind = EXTRACT
        req.query, req.content = _split_query(last_user)
    return req
