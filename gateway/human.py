"""People in the loop through the Responses API: ``ask_human`` as a client function call.

When the task (or one of its subtasks) asks a person (an ``input_required`` event of kind
``question``), the response ends there as OpenAI ends one whose model called a client
tool: its last output item is a ``function_call`` named ``ask_human`` with arguments
``{"question": ...}`` and a ``call_id``, and its status is ``completed``. The task itself
waits (``TASK_STATE_WAITING_FOR_HUMAN``). The client answers by creating a response with
``previous_response_id`` and a ``function_call_output`` input item::

    POST /v1/responses {"model": "...", "previous_response_id": "resp_T",
                        "input": [{"type": "function_call_output", "call_id": "call_T_9", "output": "Asia"}]}

which becomes ``RespondToTask`` for the task that asked. That continued response is the
same task's next turn: it shows (and streams) the task's events after the question, up to
the task's end or its next question. A turn is named by its task and the position of the
question it follows in the task's event log, so ids stay lossless and the gateway keeps no
state: ``resp_T`` is the first turn, ``resp_T~9`` the one after the question at seq 9.

A paused task (kind ``paused``, from the gRPC API or the dashboard) does not end a response:
it shows as progress, and the response goes on once someone answers elsewhere.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import grpc
from openai.types.responses import (
    Response,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseFunctionToolCall,
    ResponseOutputItem,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseStreamEvent,
)

from blast_grpc._proto.blast.v1 import blast_pb2 as pb

from .backend import Backend
from .convert import RESPONSE_PREFIX, Tokens, response_id
from .errors import ApiError, from_grpc, invalid
from .events import ResponseBase, ResponseEvents
from .protocol import ResponsesRequest, check_model, gateway_note, parse_body, user_metadata

TOOL_NAME = "ask_human"
TURN_SEP = "~"
_OUTPUT_KEYS = {"type", "call_id", "output", "id", "status"}


def turn_response_id(task_id: str, after_seq: int) -> str:
    """The id of the task's turn after the question at ``after_seq`` (0: the first turn, ``resp_T``)."""
    return response_id(task_id) + (f"{TURN_SEP}{after_seq}" if after_seq else "")


def split_turn(rid: str) -> tuple[str, int]:
    """(task id, seq of the question the turn follows; 0 for the first turn) of a response id."""
    head, sep, tail = rid.removeprefix(RESPONSE_PREFIX).rpartition(TURN_SEP)
    if sep and tail.isdigit() and 0 < len(tail) <= 18:
        return head, int(tail)
    return rid.removeprefix(RESPONSE_PREFIX), 0


def call_id(root_task_id: str, seq: int) -> str:
    return f"call_{root_task_id}_{seq}"


def is_question(ev: pb.TaskEvent) -> bool:
    return ev.WhichOneof("kind") == "input_required" and ev.input_required.kind == "question"


class TurnEvents(ResponseEvents):
    """``ResponseEvents`` for one turn of a task: events up to ``after_seq`` belong to earlier
    turns, and the turn ends at the next question with an ``ask_human`` function call."""

    def __init__(self, base: ResponseBase, root_task_id: str, after_seq: int = 0) -> None:
        super().__init__(base, root_task_id)
        self.after_seq = after_seq
        self._call: ResponseFunctionToolCall | None = None  # the last output item, once asked

    def feed(self, ev: pb.TaskEvent) -> list[ResponseStreamEvent]:
        if self.end is not None:
            return []
        if ev.seq <= self.after_seq:  # an earlier turn's
            self.tree.see(ev)
            return []
        if is_question(ev):
            return self._ask(ev)
        if ev.WhichOneof("kind") == "input_required":  # paused: someone answers elsewhere
            return self._add_part(ev.task_id, f"Paused, waiting for a person: {ev.input_required.question}")
        return super().feed(ev)

    def _ask(self, ev: pb.TaskEvent) -> list[ResponseStreamEvent]:
        self.end = ev
        self.tree.see(ev)
        out: list[ResponseStreamEvent] = []
        for r in self._reasoning.values():
            if r.status == "in_progress":
                out += self._close(r, "completed")
        root = self.tree.root_id
        args = json.dumps({"question": ev.input_required.question})
        item = ResponseFunctionToolCall(type="function_call", id=f"fc_{root}_{ev.seq}", call_id=call_id(root, ev.seq),
                                        name=TOOL_NAME, arguments=args, status="completed")
        index = len(self._items)
        self._call = item
        common: dict[str, Any] = {"item_id": item.id, "output_index": index}
        added = item.model_copy(update={"arguments": "", "status": "in_progress"})
        out += [
            ResponseOutputItemAddedEvent(type="response.output_item.added", sequence_number=self.next_seq(),
                                         output_index=index, item=added),
            ResponseFunctionCallArgumentsDeltaEvent(type="response.function_call_arguments.delta",
                                                    sequence_number=self.next_seq(), delta=args, **common),
            ResponseFunctionCallArgumentsDoneEvent(type="response.function_call_arguments.done",
                                                   sequence_number=self.next_seq(), arguments=args, **common),
            ResponseOutputItemDoneEvent(type="response.output_item.done", sequence_number=self.next_seq(),
                                        output_index=index, item=item),
        ]
        return out

    def output(self) -> list[ResponseOutputItem]:
        return super().output() + ([self._call] if self._call is not None else [])

    def final(self, root: pb.Task, tokens: Tokens) -> Response:
        if self.end is not None and is_question(self.end):
            # What OpenAI answers when the model calls a client tool: completed, the call last.
            return self.snapshot("completed", tokens, completed_at=int(time.time()))
        return super().final(root, tokens)


def _outputs(items: Any) -> list[dict[str, Any]] | None:
    """The input's ``function_call_output`` items, or None when the input is not a tool answer."""
    if not isinstance(items, list) or not any(isinstance(i, dict) and i.get("type") == "function_call_output"
                                              for i in items):
        return None
    for i, item in enumerate(items):
        p = f"input[{i}]"
        if not isinstance(item, dict) or item.get("type") != "function_call_output":
            raise invalid(p, f"'{p}' must be a function_call_output item: a response that answers an "
                          f"{TOOL_NAME} call takes only the answer as input.")
        extra = sorted(set(item) - _OUTPUT_KEYS)
        if extra:
            raise invalid(f"{p}.{extra[0]}", f"Unknown parameter: '{p}.{extra[0]}'.", "unknown_parameter")
        if not isinstance(item.get("call_id"), str) or not item["call_id"]:
            raise invalid(f"{p}.call_id", f"Missing required parameter: '{p}.call_id' (the call_id of the "
                          f"{TOOL_NAME} call).", "missing_required_parameter")
        out = item.get("output")
        if isinstance(out, list) and all(isinstance(x, dict) and x.get("type") == "input_text"
                                         and isinstance(x.get("text"), str) for x in out):
            item = {**item, "output": "\n".join(x["text"] for x in out)}
        elif not isinstance(out, str):
            raise invalid(f"{p}.output", f"Invalid type for '{p}.output': expected a string (the person's "
                          "answer) or an array of input_text parts.", "invalid_type")
        if not item["output"].strip():
            raise invalid(f"{p}.output", f"'{p}.output' is empty: send the person's answer.")
        items[i] = item
    if len(items) != 1:
        raise invalid("input", f"'input' has {len(items)} function_call_output items; a task asks one question "
                      "at a time, so send exactly one.")
    return items


async def _question(backend: Backend, task: pb.Task, after_seq: int) -> pb.TaskEvent | None:
    """The question the turn after ``after_seq`` ended with (None if it has not ended with one)."""
    for ev in await backend.events_so_far(task):
        if ev.seq > after_seq and is_question(ev):
            return ev
        if ev.seq > after_seq and ev.task_id == task.task_id and ev.WhichOneof("kind") in ("completed", "failed",
                                                                                           "cancelled"):
            return None
    return None


async def turn_base(backend: Backend, task: pb.Task, base: ResponseBase, rid: str) -> tuple[ResponseBase, int]:
    """For a retrieved later turn (``resp_T~SEQ``): its base (id, previous turn) and the seq it
    starts after; the first turn's as they are. An id naming no question of the task is a 404."""
    _, after = split_turn(rid)
    if not after:
        return base, 0
    questions = [ev.seq for ev in await backend.events_so_far(task) if is_question(ev)]
    if after not in questions:
        raise ApiError(404, f"No response found with id {rid[:200]!r}.", param="response_id", code="not_found")
    before = [q for q in questions if q < after]
    prev = turn_response_id(task.task_id, before[-1] if before else 0)
    return replace(base, id=turn_response_id(task.task_id, after), previous_response_id=prev), after


async def answer_turn(backend: Backend, body: Any, default_model: str
                      ) -> tuple[ResponsesRequest, pb.Task, TurnEvents] | None:
    """A ``POST /v1/responses`` body that answers an ``ask_human`` call: send the answer to the
    task (``RespondToTask``) and return the request, the task and its next turn's events.
    None when the body is an ordinary request (no ``function_call_output`` in its input)."""
    items = _outputs(body.get("input")) if isinstance(body, dict) else None
    if items is None:
        return None
    req = parse_body(ResponsesRequest, body)
    model = check_model(req.model, default_model)
    if req.tools:
        raise invalid("tools", "'tools' is not supported: the engine offers ask_human itself.",
                      "unsupported_parameter")
    prev = req.previous_response_id
    if not prev:
        raise invalid("previous_response_id", "A function_call_output answers a response's ask_human call: "
                      "send that response's id as 'previous_response_id'.", "missing_required_parameter")
    root_id, after = split_turn(prev)
    try:
        task = await backend.get(root_id)
    except grpc.aio.AioRpcError as exc:
        if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            raise invalid("previous_response_id", f"No response found with id {prev[:200]!r}.") from None
        raise from_grpc(exc) from None
    asked = await _question(backend, task, after)
    if asked is None:
        raise invalid("previous_response_id", f"Response {prev[:200]!r} did not end with an {TOOL_NAME} call; "
                      "only such a response can be continued with a function_call_output.")
    expected = call_id(root_id, asked.seq)
    if items[0]["call_id"] != expected:
        raise invalid("input[0].call_id", f"'input[0].call_id' {items[0]['call_id'][:100]!r} is not the call "
                      f"response {prev[:200]!r} ended with; expected {expected!r}.")
    try:
        await backend.respond(asked.task_id, items[0]["output"])
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
            raise invalid("input[0].call_id", f"The {TOOL_NAME} call {expected!r} is no longer open: "
                          f"{exc.details()}.", "call_not_open") from None
        raise from_grpc(exc, {"answer": "input[0].output"}) from None
    task = await backend.get(root_id)
    note = gateway_note(task)
    base = ResponseBase(id=turn_response_id(root_id, asked.seq), created_at=int(time.time()),
                        model=model if req.model is not None else str(note.get("model") or model),
                        instructions=req.instructions, metadata=user_metadata(task) or None,
                        previous_response_id=prev, background=req.background)
    return req, task, TurnEvents(base, root_id, asked.seq)
