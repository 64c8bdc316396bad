"""Request bodies of the OpenAI endpoints, as typed pydantic models: the one definition of
what the gateway accepts, from which both validation and the OpenAPI document
(``openapi.py``) are derived.

Only what blast-grpc can honour is accepted: unknown parameters are rejected by name (as
OpenAI does); parameters that tune a model's sampling (``temperature``,
``max_output_tokens``, ...) are type-checked, then ignored, because the engine drives its
own models. Every limit is a constraint here (``MAX_*`` below) and nowhere else.

Unions are tagged by a function of the raw value (``Discriminator``), never tried member
by member, so a bad value gets exactly one error, at the exact place::

    input ── a string ("~text") ───────────────────────────── the task
          └─ an array ("~items") of items, tagged by their "type" (default "message"):
               "message"   ResponsesMessage {role, content, id?, status?, phase?}
               "reasoning" ReasoningItem    (an earlier response's progress; skipped)
             content ── a string ─ an array of parts tagged by "type" ─ null (assistant only)
                                   "input_text" | "output_text"  {text}

Tags start with ``~`` so that ``errors.from_validation`` can drop them from an error's
location: ``input.~items.0.~message.content`` is reported as ``input[0].content``.
Rules a schema cannot state (the last user message is the task and must not be blank;
only an assistant message may have null content) are checked in ``submission.py``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from .errors import ApiError, from_validation

MAX_METADATA_PAIRS = 16  # the coordinator's limits (TaskSpec.metadata)
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
MAX_MODEL_CHARS = 256

# Custom error types (see errors.from_validation): a value of the wrong JSON type for a union,
# and an item or content part whose "type" the gateway does not take.
INVALID_TYPE = "invalid_type"
UNSUPPORTED_TYPE = "unsupported_type"

Role = Literal["user", "system", "developer", "assistant"]


class _Body(BaseModel):
    """A request object: strict JSON types, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class _Echoed(BaseModel):
    """An object clients echo back from earlier replies (with keys we do not use): strict
    types for what we read, other keys ignored."""

    model_config = ConfigDict(extra="ignore", strict=True)


def _tag_by_type(tags: dict[str, str], default: str | None = None) -> Any:
    """A discriminator on an object's ``type`` (``default`` when it has none); a value that is
    not an object gets the first tag, so it fails as "not an object" at its own place."""
    first = next(iter(tags.values()))

    def tag(value: Any) -> str | None:
        if not isinstance(value, dict):
            return first
        kind = value.get("type", default)
        # A "type" that is not a string (a list, an object) names no tag: an unsupported type.
        return tags.get(kind) if isinstance(kind, str) else None
    return tag


def _tag_by_json_type(value: Any) -> str | None:
    if isinstance(value, str):
        return "~text"
    if isinstance(value, list):
        return "~list"
    if value is None:
        return "~null"
    return None


# --- content -----------------------------------------------------------------------------

class InputText(_Echoed):
    type: Literal["input_text"]
    text: StrictStr


class OutputText(_Echoed):
    """An assistant's text, as an earlier response returned it (annotations and logprobs are ignored)."""

    type: Literal["output_text"]
    text: StrictStr


ResponsesPart = Annotated[
    Annotated[InputText, Tag("~input_text")] | Annotated[OutputText, Tag("~output_text")],
    Discriminator(_tag_by_type({"input_text": "~input_text", "output_text": "~output_text"}),
                  custom_error_type=UNSUPPORTED_TYPE,
                  custom_error_message="blast-grpc accepts text only (input_text, output_text)"),
]


class ChatText(_Echoed):
    type: Literal["text"]
    text: StrictStr


_CONTENT_NOTE = "Text, or a list of text parts (null only for an assistant message)."
_CONTENT_TYPES = Discriminator(_tag_by_json_type, custom_error_type=INVALID_TYPE,
                               custom_error_message="expected a string or an array of text parts")
ResponsesContent = Annotated[
    Annotated[StrictStr, Tag("~text")] | Annotated[list[ResponsesPart], Tag("~list")] | Annotated[None, Tag("~null")],
    _CONTENT_TYPES, Field(description=_CONTENT_NOTE)]
ChatContent = Annotated[
    Annotated[StrictStr, Tag("~text")] | Annotated[list[ChatText], Tag("~list")] | Annotated[None, Tag("~null")],
    _CONTENT_TYPES, Field(description=_CONTENT_NOTE)]


# --- Responses input items ------------------------------------------------------------------

class ResponsesMessage(_Body):
    """A message of ``input`` (``type`` may be left out). ``id``, ``status`` and ``phase`` are
    accepted (clients echo them back from earlier responses) and ignored."""

    type: Literal["message"] | None = None
    role: Role
    content: ResponsesContent
    id: StrictStr | None = None
    status: StrictStr | None = None
    phase: StrictStr | None = None


class ReasoningItem(_Echoed):
    """An earlier response's reasoning item passed back as input: skipped (its answer
    message carries what matters)."""

    type: Literal["reasoning"]


InputItem = Annotated[
    Annotated[ResponsesMessage, Tag("~message")] | Annotated[ReasoningItem, Tag("~reasoning")],
    Discriminator(_tag_by_type({"message": "~message", "reasoning": "~reasoning"}, default="message"),
                  custom_error_type=UNSUPPORTED_TYPE,
                  custom_error_message="blast-grpc accepts messages (role and text content) and reasoning items only"),
]

ResponsesInput = Annotated[
    Annotated[StrictStr, Tag("~text"), Field(min_length=1)] | Annotated[list[InputItem], Tag("~list"), Field(min_length=1)],
    Discriminator(_tag_by_json_type, custom_error_type=INVALID_TYPE,
                  custom_error_message="expected a string or an array of messages"),
]


# --- shared parameters -----------------------------------------------------------------------

def _no_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if tools:
        raise PydanticCustomError("unsupported_parameter", "'tools' is not supported: blast-grpc drives the browser "
                                  "with its own tools; send the task without tools")
    return tools


MODEL_DESCRIPTION = ("The model that drives the browsing agent: one of the engine's models (GET /v1/models); "
                     "any other name is refused. Default: the first of those.")
CACHE_CONTROL_KEY = "cache_control"  # the metadata key that carries BLAST's cache directives
CACHE_DIRECTIVES = ("no-cache", "no-store", "no-cache-plan", "no-store-plan")

Model = Annotated[StrictStr | None, Field(min_length=1, max_length=MAX_MODEL_CHARS, description=MODEL_DESCRIPTION)]
Metadata = Annotated[
    dict[Annotated[StrictStr, Field(max_length=MAX_METADATA_KEY)],
         Annotated[StrictStr, Field(max_length=MAX_METADATA_VALUE)]] | None,
    Field(max_length=MAX_METADATA_PAIRS, description=(
        f"String pairs kept with the task, returned as sent (at most {MAX_METADATA_PAIRS}; keys of at most "
        f"{MAX_METADATA_KEY} and values of at most {MAX_METADATA_VALUE} characters). `{CACHE_CONTROL_KEY}` also "
        f"sets BLAST's cache directives, comma-separated: {', '.join(CACHE_DIRECTIVES)} (e.g. `no-cache` runs the "
        "task even when the result cache has its answer)."))]
Tools = Annotated[list[dict[str, Any]] | None, AfterValidator(_no_tools), Field(
    json_schema_extra={"maxItems": 0},
    description="Not supported: blast-grpc drives the browser with its own tools. Only an empty list is accepted.")]
ToolChoice = Annotated[Literal["auto", "none"] | None, Field(description="Only `auto` or `none`: no client tools.")]
Store = Annotated[StrictBool | None, Field(description="Accepted for compatibility: the engine keeps every task.")]

_IGNORED = "Accepted and ignored: the engine picks and drives its own models."
Number = Annotated[StrictFloat | None, Field(description=_IGNORED)]  # a JSON integer is a float too
Count = Annotated[StrictInt | None, Field(description=_IGNORED)]
Flag = Annotated[StrictBool | None, Field(description=_IGNORED)]
Text = Annotated[StrictStr | None, Field(description=_IGNORED)]
Object = Annotated[dict[str, Any] | None, Field(description=_IGNORED)]


Stop = Annotated[
    Annotated[Annotated[StrictStr, Tag("~text")] | Annotated[list[StrictStr], Tag("~list")],
              Discriminator(_tag_by_json_type, custom_error_type=INVALID_TYPE,
                            custom_error_message="expected a string or an array of strings")] | None,
    Field(description=_IGNORED)]


class TextFormat(_Echoed):
    type: Literal["text"]


class TextConfig(_Echoed):
    """``text``: only text output."""

    format: TextFormat | None = Field(None, description="Only `{\"type\": \"text\"}`.")


class ChatStreamOptions(_Echoed):
    include_usage: StrictBool | None = Field(None, description="End the stream with a usage chunk.")


# --- the bodies ------------------------------------------------------------------------------

class ResponsesRequest(_Body):
    """``POST /v1/responses``."""

    model_config = ConfigDict(title="CreateResponseRequest")

    input: ResponsesInput = Field(description=(
        "The task: a non-blank string, or a list of messages (text only) whose last user message is the task; "
        "the other messages and `instructions` are sent before it as context. `reasoning` items of an earlier "
        "response may be passed back and are skipped."))
    model: Model = None
    instructions: StrictStr | None = Field(None, description="Sent to the engine before the task, as context.")
    previous_response_id: Annotated[StrictStr | None, Field(min_length=1)] = Field(
        None, description="A response to follow up on: the engine gives the task that response's answer as context.")
    metadata: Metadata = None
    stream: StrictBool | None = Field(None, description="Answer with server-sent events as the task runs.")
    background: StrictBool | None = Field(None, description="Answer at once (status `queued`); the task runs on "
                                          "after the connection closes. Poll or stream GET /v1/responses/{id}.")
    store: Store = None
    tools: Tools = None
    tool_choice: ToolChoice = None
    text: TextConfig | None = Field(None, description="Only text output: `format` may only be `{\"type\": \"text\"}`.")
    # Sampling and serving knobs: the engine chooses these itself.
    temperature: Number = None
    top_p: Number = None
    max_output_tokens: Count = None
    max_tool_calls: Count = None
    parallel_tool_calls: Flag = None
    reasoning: Object = None
    include: Annotated[list[StrictStr] | None, Field(description=_IGNORED)] = None
    stream_options: Object = None
    truncation: Text = None
    service_tier: Text = None
    user: Text = None
    safety_identifier: Text = None
    prompt_cache_key: Text = None
    prompt_cache_retention: Text = None
    top_logprobs: Count = None


class ChatMessage(_Body):
    """A message of ``messages``."""

    role: Role
    content: ChatContent
    name: StrictStr | None = None
    refusal: StrictStr | None = None


class ChatRequest(_Body):
    """``POST /v1/chat/completions``."""

    model_config = ConfigDict(title="CreateChatCompletionRequest")

    messages: Annotated[list[ChatMessage], Field(min_length=1)] = Field(description=(
        "The conversation (text only); the last user message is the task, the others are sent before it as "
        "context."))
    model: Model = None
    stream: StrictBool | None = Field(None, description="Answer with server-sent chunks; closing the stream "
                                      "cancels the task.")
    stream_options: ChatStreamOptions | None = None
    metadata: Metadata = None
    store: Store = None
    n: Annotated[StrictInt | None, Field(ge=1, le=1)] = Field(None, description="Only 1: one browsing task per request.")
    tools: Tools = None
    tool_choice: ToolChoice = None
    response_format: TextFormat | None = Field(None, description="Only text output: `{\"type\": \"text\"}`.")
    # Sampling and serving knobs: the engine chooses these itself.
    temperature: Number = None
    top_p: Number = None
    max_tokens: Count = None
    max_completion_tokens: Count = None
    frequency_penalty: Number = None
    presence_penalty: Number = None
    stop: Stop = None
    seed: Count = None
    user: Text = None
    safety_identifier: Text = None
    prompt_cache_key: Text = None
    prompt_cache_retention: Text = None
    reasoning_effort: Text = None
    service_tier: Text = None
    parallel_tool_calls: Flag = None
    logprobs: Flag = None
    top_logprobs: Count = None


T = TypeVar("T", bound=BaseModel)


def parse_body(cls: type[T], body: Any) -> T:
    """Validate a decoded JSON body as ``cls``; a 400 naming the parameter otherwise."""
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    try:
        return cls.model_validate(body)
    except ValidationError as exc:
        raise from_validation(exc) from None
