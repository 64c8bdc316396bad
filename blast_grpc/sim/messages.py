"""Build requests in the engine's message format — the inverse of ``protocol.py``.

For tests, demos and benchmarks that drive the simulated model without the real
engine: they produce exactly what the engine sends (an ``OBSERVATION`` block,
``TASK:``, tool-call history, ``QUERY:``/``CONTENT:``, ``PLAN FOR TASK:``).
"""

from __future__ import annotations

import json
from typing import Any, Iterable

TOOL_PARAMS: dict[str, dict[str, Any]] = {
    "go_to_url": {"url": {"type": "string"}},
    "click": {"index": {"type": "integer"}},
    "type": {"index": {"type": "integer"}, "text": {"type": "string"}, "submit": {"type": "boolean"}},
    "select_option": {"index": {"type": "integer"}, "value": {"type": "string"}},
    "scroll": {"direction": {"type": "string", "enum": ["up", "down"]}},
    "go_back": {},
    "extract_content": {"query": {"type": "string"}},
    "done": {"text": {"type": "string"}, "success": {"type": "boolean"}},
}


def tool_schemas(names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Function-tool definitions for the browser tools (all of them by default)."""
    chosen = list(names) if names is not None else list(TOOL_PARAMS)
    return [{"type": "function", "function": {"name": n, "description": f"browser tool {n}",
                                              "parameters": {"type": "object", "properties": TOOL_PARAMS[n]}}}
            for n in chosen]


def observation(url: str, title: str = "", elements: Iterable[str] = (), text: str = "",
                step: int = 1, max_steps: int = 25) -> str:
    """An ``OBSERVATION`` block; ``elements`` are ``<tag ...>label`` strings, numbered from 0."""
    lines = ["OBSERVATION", f"URL: {url}", f"TITLE: {title}", "ELEMENTS:"]
    lines += [f"[{i}] {e}" for i, e in enumerate(elements)]
    lines += ["TEXT:", text, f"STEP: {step}/{max_steps}"]
    return "\n".join(lines)


def agent_messages(task: str, current: str | None, history: Iterable[tuple[str, dict[str, Any], str]] = (),
                   thought: str = "") -> list[dict[str, Any]]:
    """system, ``TASK:``, one assistant call + tool result per ``(tool, args, result)``, then ``current``."""
    msgs: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a browser agent."},
        {"role": "user", "content": f"TASK: {task}"},
    ]
    for i, (tool, args, result) in enumerate(history):
        call_id = f"call_h{i}"
        msgs.append({"role": "assistant", "content": thought or None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": tool, "arguments": json.dumps(args)}}]})
        msgs.append({"role": "tool", "tool_call_id": call_id, "content": result})
    if current is not None:
        msgs.append({"role": "user", "content": current})
    return msgs


def extraction_messages(query: str, content: str) -> list[dict[str, Any]]:
    """The mini model's extraction request."""
    return [
        {"role": "system", "content": "You extract information from web page text."},
        {"role": "user", "content": f"QUERY: {query}\nCONTENT:\n{content}"},
    ]


def plan_messages(task: str) -> list[dict[str, Any]]:
    """A planner request."""
    return [
        {"role": "system", "content": "You plan browser tasks."},
        {"role": "user", "content": f"PLAN FOR TASK: {task}"},
    ]
