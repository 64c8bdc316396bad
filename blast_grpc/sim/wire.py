"""The OpenAI Chat Completions wire format: request validation, replies, stream chunks, errors.

Shapes follow the official API closely enough that the ``openai`` package parses
them (non-streaming ``chat.completion`` and streaming ``chat.completion.chunk``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .protocol import content_text

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
STREAM_PIECES = 4  # content and tool arguments each arrive in up to this many chunks


class RequestError(ValueError):
    """The request body is invalid; ``param`` is the offending field."""

    def __init__(self, message: str, param: str | None) -> None:
        super().__init__(message)
        self.param = param


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """The OpenAI error envelope."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def validate_body(body: Any) -> None:
    """Raise ``RequestError`` naming the first invalid field of a chat completions body."""
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object", None)
    model = body.get("model")
    if "model" not in body:
        raise RequestError("missing required parameter: 'model'", "model")
    if not isinstance(model, str) or not model:
        raise RequestError(f"'model' must be a non-empty string, got {type(model).__name__}", "model")
    if "messages" not in body:
        raise RequestError("missing required parameter: 'messages'", "messages")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty array of message objects", "messages")
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise RequestError(f"'{where}' must be an object", where)
        role = m.get("role")
        if role not in ROLES:
            raise RequestError(f"'{where}.role' must be one of {', '.join(sorted(ROLES))}, got {role!r}",
                               f"{where}.role")
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise RequestError(f"'{where}.content' must be a string, an array of parts or null", f"{where}.content")
        if role == "tool" and not isinstance(m.get("tool_call_id"), str):
            raise RequestError(f"'{where}.tool_call_id' is required for tool messages", f"{where}.tool_call_id")
        calls = m.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, list):
                raise RequestError(f"'{where}.tool_calls' must be an array", f"{where}.tool_calls")
            for j, c in enumerate(calls):
                fn = c.get("function") if isinstance(c, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                    raise RequestError(f"'{where}.tool_calls[{j}].function.name' must be a string",
                                       f"{where}.tool_calls[{j}].function.name")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise RequestError("'tools' must be an array of function tools", "tools")
        for i, t in enumerate(tools):
            fn = t.get("function") if isinstance(t, dict) else None
            if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(fn, dict) \
                    or not isinstance(fn.get("name"), str):
                raise RequestError(f"'tools[{i}]' must be {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}",
                                   f"tools[{i}]")
    if "stream" in body and body["stream"] is not None and not isinstance(body["stream"], bool):
        raise RequestError("'stream' must be a boolean", "stream")
    opts = body.get("stream_options")
    if opts is not None and (not isinstance(opts, dict) or not isinstance(opts.get("include_usage", False), bool)):
        raise RequestError("'stream_options' must be an object like {\"include_usage\": true}", "stream_options")


def count_tokens(chars: int) -> int:
    """The sim's token estimate: four characters a token, at least one."""
    return max(1, chars // 4)


def prompt_tokens(body: dict[str, Any]) -> int:
    """Tokens of all message contents in the request."""
    return count_tokens(sum(len(content_text(m.get("content"))) for m in body["messages"]))


@dataclass
class Call:
    """One function call of a reply: tool name, JSON arguments, call id."""

    name: str
    arguments: str
    id: str


@dataclass
class Reply:
    """One assistant message: optional text plus any number of function calls (run in order)."""

    content: str | None
    calls: list[Call] = field(default_factory=list)

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.calls else "stop"

    def completion_tokens(self) -> int:
        return count_tokens(len(self.content or "") + sum(len(c.name) + len(c.arguments) for c in self.calls))

    def message(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": self.content, "refusal": None}
        if self.calls:
            msg["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": c.arguments}} for c in self.calls]
        return msg


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion(reply: Reply, model: str, id_: str, created: int, prompt: int) -> dict[str, Any]:
    """A non-streaming ``chat.completion`` object."""
    return {
        "id": id_, "object": "chat.completion", "created": created, "model": model,
        "system_fingerprint": "blast-sim",
        "choices": [{"index": 0, "message": reply.message(), "logprobs": None,
                     "finish_reason": reply.finish_reason}],
        "usage": usage(prompt, reply.completion_tokens()),
    }


def _split(text: str, pieces: int) -> list[str]:
    if not text:
        return []
    size = max(1, -(-len(text) // pieces))
    return [text[i:i + size] for i in range(0, len(text), size)]


def stream_deltas(reply: Reply) -> list[dict[str, Any]]:
    """The ``delta`` objects of a streamed reply, in order (without the final empty delta)."""
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": "" if reply.content is not None else None}]
    deltas += [{"content": p} for p in _split(reply.content or "", STREAM_PIECES)]
    for i, call in enumerate(reply.calls):
        deltas.append({"tool_calls": [{"index": i, "id": call.id, "type": "function",
                                       "function": {"name": call.name, "arguments": ""}}]})
        deltas += [{"tool_calls": [{"index": i, "function": {"arguments": p}}]}
                   for p in _split(call.arguments, STREAM_PIECES)]
    return deltas


def chunk(id_: str, created: int, model: str, delta: dict[str, Any] | None, finish_reason: str | None = None,
          usage_: dict[str, int] | None = None, with_usage_field: bool = False) -> str:
    """One SSE ``data:`` event holding a ``chat.completion.chunk``.

    ``delta`` None produces the usage-only chunk (empty ``choices``) that
    ``stream_options.include_usage`` asks for.
    """
    obj: dict[str, Any] = {"id": id_, "object": "chat.completion.chunk", "created": created, "model": model,
                           "system_fingerprint": "blast-sim"}
    obj["choices"] = [] if delta is None else [
        {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    if usage_ is not None or with_usage_field:
        obj["usage"] = usage_
    return f"data: {json.dumps(obj)}\n\n"


DONE = "data: [DONE]\n\n"
