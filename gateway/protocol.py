"""Request bodies of the OpenAI endpoints, validated, and turned into a ``TaskSpec``.

Only what blast-grpc can honour is accepted: unknown parameters are rejected by
name (as OpenAI does), and parameters that tune a model's sampling
(``temperature``, ``max_output_tokens``, ...) are accepted and ignored, because the
engine picks and drives its own models. The task is the text of the last user
message; ``instructions`` and the other messages become context written before it.

``model`` names the model that drives the agent: one of the engine's configured models
(``constraints.llm_model`` / ``llm_model_mini``, as ``GET /v1/models`` lists them), sent as
``TaskSpec.model``; any other name is a 400 naming the allowed ones. BLAST's cache
directives come in ``metadata.cache_control`` (comma-separated, e.g. ``"no-cache"``) and
become ``TaskSpec.cache_control``. What the gateway keeps for itself (the background flag,
which API made the task) goes in ``TaskSpec.client_state``, never in the user's metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError, WithJsonSchema

from blast_grpc._proto.blast.v1 import blast_pb2 as pb

from .convert import task_id_of
from .errors import ApiError, from_validation, invalid

MAX_USER_METADATA = 16  # the coordinator's limit (TaskSpec.metadata)
MAX_MODEL_CHARS = 256
# The metadata key that carries BLAST's cache directives (TaskSpec.cache_control).
CACHE_CONTROL_KEY = "cache_control"
CACHE_DIRECTIVES = ("no-cache", "no-store", "no-cache-plan", "no-store-plan")

# Maps the TaskSpec field a coordinator error names to the request parameter.
RESPONSES_PARAMS = {"spec.description": "input", "spec.previous_task_id": "previous_response_id",
                    "spec.metadata": "metadata", "spec.model": "model", "spec.cache_control": "metadata.cache_control"}
CHAT_PARAMS = {"spec.description": "messages", "spec.metadata": "metadata", "spec.model": "model",
               "spec.cache_control": "metadata.cache_control"}

_RESPONSES_ROLES = ("user", "system", "developer", "assistant")
_RESPONSES_PART_TYPES = ("input_text", "output_text")
_RESPONSES_ITEM_KEYS = {"type", "role", "content", "id", "status", "phase"}
_RESPONSES_ITEM_STRINGS = ("id", "status", "phase")  # accepted (echoed back by clients) and ignored
_CHAT_ROLES = ("user", "system", "developer", "assistant")
_CHAT_PART_TYPES = ("text",)
_CHAT_MESSAGE_KEYS = {"role", "content", "name", "refusal"}

# JSON schemas of the fields checked by hand below, for the OpenAPI document (gateway.openapi).
# Each accepts everything the hand checks accept (the fuzz tests rely on it: data outside a
# schema must be refused); rules JSON Schema cannot say (the last user message is the task
# and must not be blank) are in the descriptions and still answered with a 400.
_NULL: dict[str, Any] = {"type": "null"}
_ANY_NOTE = "Accepted and ignored: the engine picks and drives its own models."


def _nullable(schema: dict[str, Any], description: str) -> WithJsonSchema:
    return WithJsonSchema({"anyOf": [schema, _NULL], "description": description})


def _parts(types: tuple[str, ...]) -> dict[str, Any]:
    return {"type": "array", "items": {
        "type": "object", "required": ["type", "text"],
        "properties": {"type": {"enum": list(types)}, "text": {"type": "string"}}}}


def _content(types: tuple[str, ...]) -> dict[str, Any]:
    return {"anyOf": [{"type": "string"}, _parts(types), _NULL],
            "description": "Text, or a list of text parts (null only for an assistant message)."}


RESPONSES_INPUT_SCHEMA: dict[str, Any] = {
    "description": "The task: a non-blank string, or a list of messages (text only) whose last user message is "
                   "the task; the other messages and `instructions` are sent before it as context. `reasoning` "
                   "items of an earlier response may be passed back and are skipped.",
    "anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "minItems": 1, "items": {"anyOf": [
            {"type": "object", "additionalProperties": False, "required": ["role", "content"], "properties": {
                "type": {"const": "message"},
                "role": {"enum": list(_RESPONSES_ROLES)},
                "content": _content(_RESPONSES_PART_TYPES),
                **{k: {"type": ["string", "null"]} for k in _RESPONSES_ITEM_STRINGS},
            }},
            {"type": "object", "required": ["type"], "properties": {"type": {"const": "reasoning"}}},
        ]}},
    ],
}
CHAT_MESSAGES_SCHEMA: dict[str, Any] = {
    "description": "The conversation (text only); the last user message is the task, the others are sent "
                   "before it as context.",
    "type": "array", "minItems": 1, "items": {
        "type": "object", "additionalProperties": False, "required": ["role", "content"], "properties": {
            "role": {"enum": list(_CHAT_ROLES)},
            "content": _content(_CHAT_PART_TYPES),
            "name": {"type": "string"},
            "refusal": {"type": ["string", "null"]},
        }},
}
MODEL_DESCRIPTION = ("The model that drives the browsing agent: one of the engine's models (GET /v1/models); "
                     "any other name is refused. Default: the first of those.")
_MODEL = _nullable({"type": "string", "minLength": 1, "maxLength": MAX_MODEL_CHARS}, MODEL_DESCRIPTION)
_METADATA = _nullable({"type": "object", "additionalProperties": {"type": "string"},
                       "maxProperties": MAX_USER_METADATA},
                      f"String pairs kept with the task (at most {MAX_USER_METADATA}; keys of at most 64 and "
                      f"values of at most 512 characters). `{CACHE_CONTROL_KEY}` also sets BLAST's cache "
                      f"directives, comma-separated: {', '.join(CACHE_DIRECTIVES)} (e.g. `no-cache` runs the "
                      "task even when the result cache has its answer).")
_TOOLS = _nullable({"type": "array", "maxItems": 0}, "Not supported: blast-grpc drives the browser with its own "
                   "tools. Only an empty list is accepted.")
_TOOL_CHOICE = WithJsonSchema({"enum": [None, "auto", "none"], "description": "Only `auto` or `none`."})
_TEXT_ONLY: dict[str, Any] = {"type": "object", "required": ["type"], "properties": {"type": {"const": "text"}}}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ResponsesRequest(_Body):
    """``POST /v1/responses``."""

    model_config = ConfigDict(title="CreateResponseRequest")

    # checked by hand (responses_description) to name the exact item at fault
    input: Annotated[Any, WithJsonSchema(RESPONSES_INPUT_SCHEMA)] = Field(...)
    model: Annotated[StrictStr | None, _MODEL] = None
    instructions: StrictStr | None = Field(None, description="Sent to the engine before the task, as context.")
    previous_response_id: Annotated[StrictStr | None, _nullable(
        {"type": "string", "minLength": 1},
        "A response to follow up on: the engine gives the task that response's answer as context.")] = None
    metadata: Annotated[dict[StrictStr, StrictStr] | None, _METADATA] = None
    stream: StrictBool | None = Field(None, description="Answer with server-sent events as the task runs.")
    background: StrictBool | None = Field(None, description="Answer at once (status `queued`); the task runs on "
                                          "after the connection closes. Poll or stream GET /v1/responses/{id}.")
    store: StrictBool | None = Field(None, description="Accepted for compatibility: the engine keeps every task.")
    tools: Annotated[list[Any] | None, _TOOLS] = None
    tool_choice: Annotated[Any, _TOOL_CHOICE] = None
    text: Annotated[dict[str, Any] | None, _nullable(
        {"type": "object", "properties": {"format": {"anyOf": [_TEXT_ONLY, _NULL]}}},
        "Only text output: `format` may only be `{\"type\": \"text\"}`.")] = None
    # Sampling and serving knobs: the engine chooses these itself; accepted and ignored.
    temperature: Any = Field(None, description=_ANY_NOTE)
    top_p: Any = Field(None, description=_ANY_NOTE)
    max_output_tokens: Any = Field(None, description=_ANY_NOTE)
    max_tool_calls: Any = Field(None, description=_ANY_NOTE)
    parallel_tool_calls: Any = Field(None, description=_ANY_NOTE)
    reasoning: Any = Field(None, description=_ANY_NOTE)
    include: Any = Field(None, description=_ANY_NOTE)
    stream_options: Any = Field(None, description=_ANY_NOTE)
    truncation: Any = Field(None, description=_ANY_NOTE)
    service_tier: Any = Field(None, description=_ANY_NOTE)
    user: Any = Field(None, description=_ANY_NOTE)
    safety_identifier: Any = Field(None, description=_ANY_NOTE)
    prompt_cache_key: Any = Field(None, description=_ANY_NOTE)
    prompt_cache_retention: Any = Field(None, description=_ANY_NOTE)
    top_logprobs: Any = Field(None, description=_ANY_NOTE)


class ChatRequest(_Body):
    """``POST /v1/chat/completions``."""

    model_config = ConfigDict(title="CreateChatCompletionRequest")

    messages: Annotated[Any, WithJsonSchema(CHAT_MESSAGES_SCHEMA)] = Field(...)
    model: Annotated[StrictStr | None, _MODEL] = None
    stream: StrictBool | None = Field(None, description="Answer with server-sent chunks; closing the stream "
                                      "cancels the task.")
    stream_options: Annotated[dict[str, Any] | None, _nullable(
        {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "`include_usage`: end the stream with a usage chunk.")] = None
    metadata: Annotated[dict[StrictStr, StrictStr] | None, _METADATA] = None
    store: StrictBool | None = Field(None, description="Accepted for compatibility: the engine keeps every task.")
    n: Annotated[int | None, WithJsonSchema({"enum": [1, None], "description": "Only 1: one browsing task "
                                                                                "per request."})] = None
    tools: Annotated[list[Any] | None, _TOOLS] = None
    tool_choice: Annotated[Any, _TOOL_CHOICE] = None
    response_format: Annotated[dict[str, Any] | None, _nullable(
        _TEXT_ONLY, "Only text output: `{\"type\": \"text\"}`.")] = None
    # Sampling and serving knobs: accepted and ignored (see the module docstring).
    temperature: Any = Field(None, description=_ANY_NOTE)
    top_p: Any = Field(None, description=_ANY_NOTE)
    max_tokens: Any = Field(None, description=_ANY_NOTE)
    max_completion_tokens: Any = Field(None, description=_ANY_NOTE)
    frequency_penalty: Any = Field(None, description=_ANY_NOTE)
    presence_penalty: Any = Field(None, description=_ANY_NOTE)
    stop: Any = Field(None, description=_ANY_NOTE)
    seed: Any = Field(None, description=_ANY_NOTE)
    user: Any = Field(None, description=_ANY_NOTE)
    safety_identifier: Any = Field(None, description=_ANY_NOTE)
    prompt_cache_key: Any = Field(None, description=_ANY_NOTE)
    prompt_cache_retention: Any = Field(None, description=_ANY_NOTE)
    reasoning_effort: Any = Field(None, description=_ANY_NOTE)
    service_tier: Any = Field(None, description=_ANY_NOTE)
    parallel_tool_calls: Any = Field(None, description=_ANY_NOTE)
    logprobs: Any = Field(None, description=_ANY_NOTE)
    top_logprobs: Any = Field(None, description=_ANY_NOTE)


T = TypeVar("T", bound=BaseModel)


def parse_body(cls: type[T], body: Any) -> T:
    """Validate a decoded JSON body as ``cls``; a 400 naming the parameter otherwise."""
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    try:
        return cls.model_validate(body)
    except ValidationError as exc:
        raise from_validation(exc) from None


Message = tuple[str, str]  # (role, text)


def _text(content: Any, param: str, part_types: tuple[str, ...], optional: bool) -> str:
    if isinstance(content, str):
        return content
    if content is None and optional:
        return ""
    if not isinstance(content, list):
        raise invalid(param, f"Invalid type for '{param}': expected a string or an array of text parts.",
                      "invalid_type")
    texts = []
    for j, part in enumerate(content):
        p = f"{param}[{j}]"
        if not isinstance(part, dict):
            raise invalid(p, f"Invalid type for '{p}': expected an object.", "invalid_type")
        kind = part.get("type")
        if kind not in part_types:
            raise invalid(f"{p}.type", f"Unsupported content type {kind!r} at '{p}.type': blast-grpc accepts "
                          f"text only ({', '.join(part_types)}).")
        text = part.get("text")
        if not isinstance(text, str):
            raise invalid(f"{p}.text", f"Invalid type for '{p}.text': expected a string.", "invalid_type")
        texts.append(text)
    return "\n".join(texts)


def _messages(items: Any, param: str, roles: tuple[str, ...], part_types: tuple[str, ...],
              keys: set[str], item_type: str | None, strings: dict[str, bool]) -> tuple[list[Message], int]:
    """Validate a message list; returns the messages and the index of the last user message.
    ``strings``: the other keys a message may have, which must hold a string (or null, when
    the flag says so)."""
    if not isinstance(items, list):
        raise invalid(param, f"Invalid type for '{param}': expected a string or an array of messages.", "invalid_type")
    if not items:
        raise invalid(param, f"'{param}' is empty: send at least one user message (it is the task).", "empty_array")
    out: list[Message] = []
    for i, item in enumerate(items):
        p = f"{param}[{i}]"
        if not isinstance(item, dict):
            raise invalid(p, f"Invalid type for '{p}': expected a message object.", "invalid_type")
        if item_type is not None and item.get("type") == "reasoning":
            continue  # an earlier response's progress, passed back as input: its answer message suffices
        if item_type is not None and item.get("type", item_type) != item_type:
            raise invalid(f"{p}.type", f"Unsupported item type {item.get('type')!r} at '{p}.type': blast-grpc "
                          "accepts messages (role and text content) only.")
        extra = sorted(set(item) - keys)
        if extra:
            raise invalid(f"{p}.{extra[0]}", f"Unknown parameter: '{p}.{extra[0]}'.", "unknown_parameter")
        for key, nullable in strings.items():
            if key in item and not (isinstance(item[key], str) or (nullable and item[key] is None)):
                raise invalid(f"{p}.{key}", f"Invalid type for '{p}.{key}': expected a string"
                              f"{' or null' if nullable else ''}.", "invalid_type")
        role = item.get("role")
        if role is None:
            raise invalid(f"{p}.role", f"Missing required parameter: '{p}.role'.", "missing_required_parameter")
        if role not in roles:
            raise invalid(f"{p}.role", f"Invalid value for '{p}.role': {role!r}; expected one of {', '.join(roles)}.")
        if "content" not in item:
            raise invalid(f"{p}.content", f"Missing required parameter: '{p}.content'.", "missing_required_parameter")
        out.append((role, _text(item["content"], f"{p}.content", part_types, optional=role == "assistant")))
    users = [i for i, (role, _) in enumerate(out) if role == "user"]
    if not users:
        raise invalid(param, f"'{param}' has no user message; the last user message is the task.")
    last = users[-1]
    if not out[last][1].strip():
        raise invalid(f"{param}[{last}].content", f"'{param}[{last}].content' is empty; the last user message is "
                      "the task and must say what to do.")
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
    msgs, last = _messages(req.input, "input", _RESPONSES_ROLES, _RESPONSES_PART_TYPES, _RESPONSES_ITEM_KEYS,
                           item_type="message", strings=dict.fromkeys(_RESPONSES_ITEM_STRINGS, True))
    return describe(msgs[last][1], msgs[:last] + msgs[last + 1:], req.instructions)


def chat_description(req: ChatRequest) -> str:
    """The task description for a chat request: the last user message, the rest as context."""
    msgs, last = _messages(req.messages, "messages", _CHAT_ROLES, _CHAT_PART_TYPES, _CHAT_MESSAGE_KEYS,
                           item_type=None, strings={"name": False, "refusal": True})
    return describe(msgs[last][1], msgs[:last] + msgs[last + 1:], None)


def _no_tools(tools: list[Any] | None, tool_choice: Any) -> None:
    if tools:
        raise invalid("tools", "'tools' is not supported: blast-grpc drives the browser with its own tools; "
                      "send the task without tools.", "unsupported_parameter")
    if tool_choice not in (None, "auto", "none"):
        raise invalid("tool_choice", "'tool_choice' must be 'auto' or 'none': blast-grpc takes no client tools.",
                      "unsupported_parameter")


def _user_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    md = dict(metadata or {})
    if len(md) > MAX_USER_METADATA:
        raise invalid("metadata", f"'metadata' has {len(md)} pairs; at most {MAX_USER_METADATA}.")
    return md


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


def responses_spec(req: ResponsesRequest, model: str, previous_task_id: str) -> pb.TaskSpec:
    """The TaskSpec for a validated Responses request."""
    _no_tools(req.tools, req.tool_choice)
    fmt = (req.text or {}).get("format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") != "text"):
        raise invalid("text.format", "Only text output is supported: 'text.format' must be {\"type\": \"text\"}.",
                      "unsupported_parameter")
    metadata = _user_metadata(req.metadata)
    note = _note(api="responses", background=True) if req.background else _note(api="responses")
    return pb.TaskSpec(description=responses_description(req), previous_task_id=previous_task_id, metadata=metadata,
                       cache_control=cache_control(metadata), model=model, client_state=note)


def chat_spec(req: ChatRequest, model: str) -> pb.TaskSpec:
    """The TaskSpec for a validated chat request."""
    _no_tools(req.tools, req.tool_choice)
    if req.n not in (None, 1):
        raise invalid("n", "'n' must be 1: each request runs one browser task.", "unsupported_parameter")
    if req.response_format is not None and req.response_format.get("type") != "text":
        raise invalid("response_format", "Only text output is supported: 'response_format' must be "
                      "{\"type\": \"text\"}.", "unsupported_parameter")
    include_usage(req)  # a bad stream_options is a 400 before anything runs
    metadata = _user_metadata(req.metadata)
    return pb.TaskSpec(description=chat_description(req), metadata=metadata, cache_control=cache_control(metadata),
                       model=model, client_state=_note(api="chat"))


def include_usage(req: ChatRequest) -> bool:
    """Whether a streamed chat reply ends with a usage chunk (``stream_options.include_usage``)."""
    opts = req.stream_options or {}
    value = opts.get("include_usage", False)
    if not isinstance(value, bool):
        raise invalid("stream_options.include_usage", "Invalid type for 'stream_options.include_usage': "
                      "expected a boolean.", "invalid_type")
    return value


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
    prev = req.previous_response_id
    previous_task_id = ""
    if prev is not None:
        previous_task_id = task_id_of(prev)
        if not previous_task_id.strip():
            raise invalid("previous_response_id", f"'previous_response_id' {prev[:50]!r} names no response; "
                          "omit it or send the id of a response.")
    return Submission(req, model, responses_spec(req, model, previous_task_id))


def chat_submission(body: Any, models: list[str]) -> Submission[ChatRequest]:
    """Check a decoded ``POST /v1/chat/completions`` body and build its task (see
    ``responses_submission``)."""
    req = parse_body(ChatRequest, body)
    model = check_model(req.model, models)
    return Submission(req, model, chat_spec(req, model))


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

