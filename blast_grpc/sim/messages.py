"""Build requests in the engine's message format — the inverse of ``protocol.py``.

For tests, demos and benchmarks that drive the simulated model without the real
engine: they produce exactly what the engine sends (an ``OBSERVATION`` block,
``TASK:`` with an optional ``COPY: k/N`` line, tool-call history including
replies with several calls, ``QUERY:``/``CONTENT:``, ``PLAN FOR TASK:``) and the
subtask tools' results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

TOOL_PARAMS: dict[str, dict[str, Any]] = {
    "go_to_url": {"url": {"type": "string"}},
    "click": {"index": {"type": "integer"}},
    "type": {"index": {"type": "integer"}, "text": {"type": "string"}, "submit": {"type": "boolean"}},
    "select_option": {"index": {"type": "integer"}, "value": {"type": "string"},
                      "values": {"type": "array", "items": {"type": "string"}}},
    "send_keys": {"keys": {"type": "string"}, "index": {"type": "integer"}},
    "hover": {"index": {"type": "integer"}},
    "scroll": {"direction": {"type": "string", "enum": ["up", "down"]}, "index": {"type": "integer"}},
    "scroll_to_text": {"text": {"type": "string"}},
    "drag_and_drop": {"source": {"type": "integer"}, "target": {"type": "integer"}},
    "switch_tab": {"index": {"type": "integer"}},
    "close_tab": {"index": {"type": "integer"}},
    "go_back": {},
    "wait": {"seconds": {"type": "number"}},
    "extract_content": {"query": {"type": "string"}},
    "done": {"text": {"type": "string"}, "success": {"type": "boolean"}},
}
_IDS = {"type": "array", "items": {"type": "string"}}
SUBTASK_PARAMS: dict[str, dict[str, Any]] = {
    "launch_subtask": {"task": {"type": "string"}, "initial_url": {"type": "string"},
                       "num_copies": {"type": "integer"}},
    "get_subtask_results": {"task_ids": _IDS},
    "get_first_subtask_result": {"task_ids": _IDS},
}
SUBTASK_TOOLS = tuple(SUBTASK_PARAMS)
HUMAN_PARAMS: dict[str, dict[str, Any]] = {"ask_human": {"question": {"type": "string"}}}


def tool_schemas(names: Iterable[str] | None = None, subtasks: bool = False) -> list[dict[str, Any]]:
    """Function-tool definitions: ``names`` (browser or subtask tools), else every browser tool,
    plus the subtask tools when ``subtasks``."""
    params = {**TOOL_PARAMS, **SUBTASK_PARAMS, **HUMAN_PARAMS}
    chosen = list(names) if names is not None else list(TOOL_PARAMS)
    if subtasks:
        chosen += [n for n in SUBTASK_TOOLS if n not in chosen]
    return [{"type": "function", "function": {"name": n, "description": f"tool {n}",
                                              "parameters": {"type": "object", "properties": params[n]}}}
            for n in chosen]


def observation(url: str, title: str = "", elements: Iterable[str] = (), text: str = "",
                step: int = 1, max_steps: int = 25, page: Iterable[str] | None = None,
                notes: Iterable[str] = (), tabs: Iterable[str] = (), scroll: str = "") -> str:
    """An ``OBSERVATION`` block. ``page`` gives the PAGE lines as the engine writes them (text lines
    and ``[N] <tag ...>name`` lines interleaved); without it, ``text`` comes first and then
    ``elements`` (``<tag ...>label`` strings), numbered from 0."""
    tab_list = list(tabs)
    lines = ["OBSERVATION", f"URL: {url}", f"TITLE: {title}"]
    if len(tab_list) > 1:
        lines.append("TABS: " + " | ".join(tab_list))
    lines += [f"NOTE: {n}" for n in notes]
    if scroll:
        lines.append(f"SCROLL: {scroll}")
    lines.append("PAGE:")
    if page is not None:
        lines += list(page)
    else:
        lines += [text] if text else []
        lines += [f"[{i}] {e}" for i, e in enumerate(elements)]
    lines.append(f"STEP: {step}/{max_steps}")
    return "\n".join(lines)


def with_image(observation_text: str, jpeg_data_url: str) -> list[dict[str, Any]]:
    """An observation message's content with a screenshot, as the engine sends it with vision on."""
    return [{"type": "text", "text": observation_text},
            {"type": "image_url", "image_url": {"url": jpeg_data_url}}]


@dataclass
class Turn:
    """One assistant reply with several tool calls ``(tool, args, result)``, run in order."""

    calls: list[tuple[str, dict[str, Any], str]]
    thought: str = ""


HistoryItem = tuple[str, dict[str, Any], str] | tuple[str, dict[str, Any], str, str] | Turn


def task_message(task: str, copy: tuple[int, int] | None = None, context: str = "") -> str:
    """``TASK: ...``, the ``COPY: k/N`` line of a racing copy, then an optional CONTEXT block."""
    lines = [f"TASK: {task}"]
    if copy is not None:
        lines.append(f"COPY: {copy[0]}/{copy[1]}")
    if context:
        lines.append(context)
    return "\n".join(lines)


def agent_messages(task: str, current: str | None, history: Iterable[HistoryItem] = (),
                   thought: str = "", copy: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """system, ``TASK:``, the history, then ``current``.

    A history item is ``(tool, args, result)`` (``thought`` is its assistant text),
    ``(tool, args, result, thought)``, or a ``Turn`` — one assistant message with
    several ``tool_calls`` followed by one ``tool`` message per call.
    """
    msgs: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a browser agent."},
        {"role": "user", "content": task_message(task, copy)},
    ]
    for i, item in enumerate(history):
        if isinstance(item, Turn):
            turn = item
        else:
            turn = Turn([(item[0], item[1], item[2])], item[3] if len(item) == 4 else thought)
        ids = [f"call_h{i}" + (f"_{j}" if j else "") for j in range(len(turn.calls))]
        msgs.append({"role": "assistant", "content": turn.thought or None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": tool, "arguments": json.dumps(args)}}
            for call_id, (tool, args, _) in zip(ids, turn.calls, strict=True)]})
        msgs += [{"role": "tool", "tool_call_id": call_id, "content": result}
                 for call_id, (_, _, result) in zip(ids, turn.calls, strict=True)]
    if current is not None:
        msgs.append({"role": "user", "content": current})
    return msgs


def extraction_messages(query: str, content: str) -> list[dict[str, Any]]:
    """The mini model's extraction request."""
    return [
        {"role": "system", "content": "You extract information from web page text."},
        {"role": "user", "content": f"QUERY: {query}\nCONTENT:\n{content}"},
    ]


def plan_messages(task: str, current: str | None = None, copy: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """A planner request; ``current`` is the observation of the page already open, if any."""
    first = f"PLAN FOR TASK: {task}" + (f"\nCOPY: {copy[0]}/{copy[1]}" if copy else "")
    msgs = [
        {"role": "system", "content": "You plan browser tasks."},
        {"role": "user", "content": first},
    ]
    if current is not None:
        msgs.append({"role": "user", "content": current})
    return msgs


def launched_result(task_id: str) -> str:
    """The tool result of ``launch_subtask``."""
    return f"Launched subtask {task_id}"


def subtask_line(task_id: str, status: str, text: str) -> str:
    """One subtask's line: status is ``success``, ``gave up``, ``failed`` or ``cancelled``."""
    if status in ("success", "gave up"):
        return f"[{task_id}] completed ({status}): {text}"
    return f"[{task_id}] {status}: {text}"


def results_message(lines: Iterable[str], first: bool = False) -> str:
    """The tool result of ``get_subtask_results`` (or of ``get_first_subtask_result`` when ``first``)."""
    return "\n".join(["First subtask result:" if first else "Subtask results:", *lines])
