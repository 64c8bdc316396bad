"""From a validated request (``protocol.py``) to the ``TaskSpec`` the engine runs.

The task is the text of the last user message; ``instructions`` and the other messages
become context written before it (``describe``). Here are the rules the request schema
cannot state: there must be a user message and the last one must say something; only an
assistant message may have null content; ``model`` must be one the engine runs (the
gateway's list, as ``GET /v1/models`` shows it); ``metadata.cache_control`` must hold
known directives.

What goes where in the ``TaskSpec``:

- ``model`` → ``TaskSpec.model``: the task runs on it.
- ``metadata`` → ``TaskSpec.metadata``, exactly as sent (it is the user's), and its
  ``cache_control`` entry also → ``TaskSpec.cache_control`` (BLAST's directives).
- the gateway's own note (which API made the task, the ``background`` flag: what a
  retrieval must echo) → ``TaskSpec.client_state``, never the user's metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from blast_grpc._proto.blast.v1 import blast_pb2 as pb

from .convert import task_id_of
from .errors import invalid
from .protocol import (
    CACHE_CONTROL_KEY,
    CACHE_DIRECTIVES,
    ChatMessage,
    ChatRequest,
    ReasoningItem,
    ResponsesMessage,
    ResponsesRequest,
    parse_body,
)

# Maps the TaskSpec field a coordinator error names to the request parameter.
RESPONSES_PARAMS = {"spec.description": "input", "spec.previous_task_id": "previous_response_id",
                    "spec.metadata": "metadata", "spec.model": "model",
                    "spec.cache_control": f"metadata.{CACHE_CONTROL_KEY}"}
CHAT_PARAMS = {"spec.description": "messages", "spec.metadata": "metadata", "spec.model": "model",
               "spec.cache_control": f"metadata.{CACHE_CONTROL_KEY}"}

Message = tuple[str, str]  # (role, text)


def _text(content: Any) -> str:
    """A validated ``content`` as text (a list of parts is joined by newlines)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(part.text for part in content)


def _conversation(messages: list[tuple[int, ResponsesMessage | ChatMessage]], param: str) -> tuple[list[Message], int]:
    """The messages as (role, text) and the index of the last user message (the task);
    ``messages`` pairs each with its index in the request, to name it in an error."""
    out: list[Message] = []
    for i, msg in messages:
        if msg.content is None and msg.role != "assistant":
            raise invalid(f"{param}[{i}].content", f"Invalid type for '{param}[{i}].content': only an assistant "
                          "message may have null content; send a string or an array of text parts.", "invalid_type")
        out.append((msg.role, _text(msg.content)))
    users = [k for k, (role, _) in enumerate(out) if role == "user"]
    if not users:
        raise invalid(param, f"'{param}' has no user message; the last user message is the task.")
    last = users[-1]
    if not out[last][1].strip():
        i = messages[last][0]
        raise invalid(f"{param}[{i}].content", f"'{param}[{i}].content' is empty; the last user message is the task "
                      "and must say what to do.")
    return out, last


def describe(task: str, context: list[Message], instructions: str | None) -> str:
    """The task description sent to the engine: the task alone when there is no context,
    otherwise the instructions and earlier messages first, then the task."""
    if not context and not instructions:
        return task
    lines: list[str] = []
    if instructions:
        lines += ["Instructions:", instructions, ""]
    if context:
        lines.append("Earlier messages:")
        lines += [f"[{role}] {text}" for role, text in context]
        lines.append("")
    lines.append(f"Task: {task}")
    return "\n".join(lines)


def responses_description(req: ResponsesRequest) -> str:
    """The task description for a Responses request (``input`` + ``instructions``)."""
    if isinstance(req.input, str):
        if not req.input.strip():
            raise invalid("input", "'input' is empty: say what the task is.")
        return describe(req.input, [], req.instructions)
    # reasoning items: an earlier response's progress, passed back as input; its answer message suffices
    msgs = [(i, item) for i, item in enumerate(req.input) if not isinstance(item, ReasoningItem)]
    if not msgs:
        raise invalid("input", "'input' has no user message; the last user message is the task.")
    out, last = _conversation(msgs, "input")  # type: ignore[arg-type]
    return describe(out[last][1], out[:last] + out[last + 1:], req.instructions)


def chat_description(req: ChatRequest) -> str:
    """The task description for a chat request: the last user message, the rest as context."""
    out, last = _conversation(list(enumerate(req.messages)), "messages")
    return describe(out[last][1], out[:last] + out[last + 1:], None)


def cache_control(metadata: dict[str, str]) -> list[str]:
    """BLAST's cache directives from ``metadata.cache_control`` (comma-separated); a 400 naming
    a directive the engine does not know."""
    raw = metadata.get(CACHE_CONTROL_KEY)
    if raw is None:
        return []
    directives = [d.strip() for d in raw.split(",") if d.strip()]
    for d in directives:
        if d not in CACHE_DIRECTIVES:
            raise invalid(f"metadata.{CACHE_CONTROL_KEY}", f"Invalid value for 'metadata.{CACHE_CONTROL_KEY}': "
                          f"unknown cache directive {d[:50]!r}; use a comma-separated list of "
                          f"{', '.join(CACHE_DIRECTIVES)}.")
    return directives


def check_model(model: str | None, models: list[str]) -> str:
    """The model a request runs on: the one asked for, if the engine has it (``models``, as
    ``/v1/models`` lists them), or the first of ``models``; a 400 naming the allowed ones."""
    if model is None:
        return models[0]
    if model not in models:
        shown = model[:100] + ("..." if len(model) > 100 else "")
        raise invalid("model", f"The model {shown!r} is not served here; use one of: {', '.join(models)} "
                      "(GET /v1/models).", "model_not_found")
    return model


def _note(**fields: Any) -> str:
    """The gateway's own note on a task (``TaskSpec.client_state``), as compact JSON."""
    return json.dumps(fields, separators=(",", ":"))


def _spec(description: str, metadata: dict[str, str] | None, model: str, note: str,
          previous_task_id: str = "") -> pb.TaskSpec:
    md = dict(metadata or {})
    return pb.TaskSpec(description=description, previous_task_id=previous_task_id, metadata=md,
                       cache_control=cache_control(md), model=model, client_state=note)


R = TypeVar("R", ResponsesRequest, ChatRequest)


@dataclass
class Submission(Generic[R]):
    """A request that passed every check the gateway makes: what to submit, and what to echo."""

    request: R
    model: str
    spec: pb.TaskSpec


def responses_submission(body: Any, models: list[str]) -> Submission[ResponsesRequest]:
    """Check a decoded ``POST /v1/responses`` body and build its task; a 400 naming the
    parameter otherwise. Nothing is sent anywhere: a body this accepts is one that starts a
    task (unless the coordinator refuses it)."""
    req = parse_body(ResponsesRequest, body)
    model = check_model(req.model, models)
    previous_task_id = ""
    if req.previous_response_id is not None:
        previous_task_id = task_id_of(req.previous_response_id)
        if not previous_task_id.strip():
            raise invalid("previous_response_id", f"'previous_response_id' {req.previous_response_id[:50]!r} names "
                          "no response; omit it or send the id of a response.")
    note = _note(api="responses", background=True) if req.background else _note(api="responses")
    spec = _spec(responses_description(req), req.metadata, model, note, previous_task_id)
    return Submission(req, model, spec)


def chat_submission(body: Any, models: list[str]) -> Submission[ChatRequest]:
    """Check a decoded ``POST /v1/chat/completions`` body and build its task (see
    ``responses_submission``)."""
    req = parse_body(ChatRequest, body)
    model = check_model(req.model, models)
    return Submission(req, model, _spec(chat_description(req), req.metadata, model, _note(api="chat")))


def include_usage(req: ChatRequest) -> bool:
    """Whether a streamed chat reply ends with a usage chunk (``stream_options.include_usage``)."""
    return bool(req.stream_options and req.stream_options.include_usage)


def gateway_note(task: pb.Task) -> dict[str, Any]:
    """What the gateway recorded on the task (``TaskSpec.client_state``: api, background), or ``{}``."""
    raw = task.spec.client_state
    try:
        note = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return note if isinstance(note, dict) else {}


def user_metadata(task: pb.Task) -> dict[str, str]:
    """The task's metadata as the client sent it."""
    return dict(task.spec.metadata)
