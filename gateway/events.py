"""From a task's events to a Response and its stream events, built from the SDK's own types.

``ResponseEvents`` is a deterministic state machine: fed the same task events it
produces the same stream events with the same sequence numbers, so a stream can be
replayed from the coordinator's log (``GET /v1/responses/{id}?stream=true&starting_after=N``).

How progress is shown: each task of the tree (the task itself and every subtask that
appears in its event stream) gets one **reasoning item**, opened at that task's first
visible event. Its plan, each step, each subtask it launches, waits and retries
become **summary text parts** of that item, in order; a subtask's item closes when the
subtask ends. Items of tasks running in parallel may be open at the same time (they
have distinct ``output_index``). When the top-level task ends, every open item is
closed and the answer follows as the **last output item, an assistant message**;
then ``response.completed`` (or ``response.failed`` / ``response.incomplete`` with
status ``cancelled`` — the Responses stream has no ``cancelled`` event).

An agent that gives up (``done(success=False)``) is a **failed** response, not a
completed one: ``status: "failed"`` with ``error.type == "task_unsuccessful"`` (``code``
``server_error``, the nearest of the SDK's closed list) and the agent's explanation in
``error.message``, its answer message still the last output item (marked
``incomplete``), and the stream ends with ``response.failed``. ``incomplete`` would not
fit: its ``incomplete_details.reason`` is a closed list of output limits
(``max_output_tokens``, ``content_filter``, ...), none of which is "the task cannot be done".
An engine failure is ``failed`` with ``error.type == "task_failed"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseError,
    ResponseFailedEvent,
    ResponseIncompleteEvent,
    ResponseInProgressEvent,
    ResponseOutputItem,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseReasoningItem,
    ResponseReasoningSummaryPartAddedEvent,
    ResponseReasoningSummaryPartDoneEvent,
    ResponseReasoningSummaryTextDeltaEvent,
    ResponseReasoningSummaryTextDoneEvent,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
)
from openai.types.responses.response_reasoning_item import Summary
from openai.types.responses.response_reasoning_summary_part_added_event import Part as PartAdded
from openai.types.responses.response_reasoning_summary_part_done_event import Part as PartDone

from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.states import ends_task

from .backend import TaskTree, is_root_end
from .convert import STATUS, Status, Tokens, chunk_text, response_id, response_usage, seconds
from .submission import gateway_note, user_metadata

ItemStatus = Literal["in_progress", "completed", "incomplete"]


@dataclass
class ResponseBase:
    """What a Response echoes of its request; fixed for the response's life."""

    id: str
    created_at: int
    model: str
    instructions: str | None = None
    metadata: dict[str, str] | None = None
    previous_response_id: str | None = None
    background: bool | None = None

    @classmethod
    def of_task(cls, task: pb.Task, default_model: str) -> ResponseBase:
        """Rebuilt from the task record alone (for retrieval)."""
        note = gateway_note(task)
        prev = task.spec.previous_task_id
        return cls(id=response_id(task.task_id), created_at=seconds(task.created_at),
                   model=task.spec.model or default_model,
                   metadata=user_metadata(task) or None, previous_response_id=response_id(prev) if prev else None,
                   background=True if note.get("background") is True else None)


@dataclass
class _Reasoning:
    index: int
    id: str
    parts: list[str] = field(default_factory=list)
    status: ItemStatus = "in_progress"

    def item(self) -> ResponseReasoningItem:
        return ResponseReasoningItem(id=self.id, type="reasoning", status=self.status,
                                     summary=[Summary(text=t, type="summary_text") for t in self.parts])


@dataclass
class _Message:
    index: int
    id: str
    text: str
    status: ItemStatus = "completed"

    def content(self) -> ResponseOutputText:
        return ResponseOutputText(annotations=[], text=self.text, type="output_text")

    def item(self) -> ResponseOutputMessage:
        return ResponseOutputMessage(id=self.id, type="message", role="assistant", status=self.status,
                                     content=[self.content()])


def _step_text(step: pb.TaskStep) -> str:
    where = f" → {step.url}" if step.url else ""
    if step.thought:
        return f"Step {step.number}: {step.thought}\n{step.action}{where}"
    return f"Step {step.number}: {step.action}{where}"


def _progress_text(ev: pb.TaskEvent) -> str | None:
    """The summary text an event adds to its task's reasoning item, if any."""
    kind = ev.WhichOneof("kind")
    if kind == "plan":
        return f"Plan: {ev.plan.text}"
    if kind == "step":
        return _step_text(ev.step)
    if kind == "subtask_launched":
        return f"Subtask {ev.subtask_launched.subtask_id}: {ev.subtask_launched.description}"
    if kind == "waiting":
        return f"Waiting: {ev.waiting.reason}"
    if kind == "started" and ev.started.attempt > 1:
        return f"Restarted on worker {ev.started.worker_id} (attempt {ev.started.attempt})"
    if kind == "completed":
        return f"Result: {ev.completed.result}"
    if kind == "failed":
        return f"Failed: {ev.failed.error}"
    if kind == "cancelled":
        return f"Cancelled: {ev.cancelled.reason}"
    return None


class ResponseEvents:
    """Turns one task's event stream into Responses stream events and snapshots."""

    def __init__(self, base: ResponseBase, root_task_id: str) -> None:
        self.base = base
        self.tree = TaskTree(root_task_id)
        self.end: pb.TaskEvent | None = None  # the top-level task's terminal event, once seen
        self._seq = 0
        self._items: list[_Reasoning | _Message] = []
        self._reasoning: dict[str, _Reasoning] = {}

    # --- snapshots ----------------------------------------------------------------
    def output(self) -> list[ResponseOutputItem]:
        """The output items as they stand."""
        return [it.item() for it in self._items]

    def snapshot(self, status: Status, tokens: Tokens | None = None, error: ResponseError | None = None,
                 completed_at: int | None = None) -> Response:
        """The Response as it stands, with ``status``."""
        b = self.base
        return Response(
            id=b.id, object="response", created_at=b.created_at, model=b.model, status=status,
            output=self.output(), instructions=b.instructions, metadata=b.metadata,
            previous_response_id=b.previous_response_id, background=b.background,
            parallel_tool_calls=False, tool_choice="auto", tools=[],
            usage=response_usage(tokens) if tokens is not None else None, error=error,
            completed_at=completed_at,
        )

    # --- stream -------------------------------------------------------------------
    def next_seq(self) -> int:
        """The next sequence number (also for an in-band ``error`` event)."""
        seq, self._seq = self._seq, self._seq + 1
        return seq

    def start(self) -> list[ResponseStreamEvent]:
        """``response.created`` and ``response.in_progress``."""
        return [
            ResponseCreatedEvent(type="response.created", sequence_number=self.next_seq(),
                                 response=self.snapshot("in_progress")),
            ResponseInProgressEvent(type="response.in_progress", sequence_number=self.next_seq(),
                                    response=self.snapshot("in_progress")),
        ]

    def feed(self, ev: pb.TaskEvent) -> list[ResponseStreamEvent]:
        """The stream events one task event causes (none after the top-level task ended)."""
        if self.end is not None:
            return []
        self.tree.see(ev)
        root = self.tree.root_id
        kind = ev.WhichOneof("kind")
        out: list[ResponseStreamEvent] = []
        text = _progress_text(ev)
        ends_root = is_root_end(ev, root)
        if text is not None and not (ends_root and kind == "completed"):  # the answer gets its own item
            out += self._add_part(ev.task_id, text)
        if ends_root:
            self.end = ev
            done: ItemStatus = "completed" if kind == "completed" else "incomplete"
            for task_id, r in self._reasoning.items():
                if r.status == "in_progress":
                    out += self._close(r, done if task_id == root else "incomplete")
            if kind == "completed":
                out += self._answer(ev.completed.result, "completed" if ev.completed.success else "incomplete")
        elif ends_task(ev) and ev.task_id in self._reasoning:
            r = self._reasoning[ev.task_id]
            out += self._close(r, "completed" if kind == "completed" else "incomplete")
        return out

    def final(self, root: pb.Task, tokens: Tokens) -> Response:
        """The finished Response; ``root`` is the top-level task's final record."""
        kind = self.end.WhichOneof("kind") if self.end is not None else STATUS[root.state]
        success = self.end.completed.success if self.end is not None and kind == "completed" else root.success
        if kind == "completed" and success:
            return self.snapshot("completed", tokens, completed_at=seconds(root.finished_at) or None)
        if kind == "completed":  # done(success=False): the agent says the task cannot be done
            answer = self.end.completed.result if self.end is not None else root.result
            error = ResponseError(code="server_error", type="task_unsuccessful",
                                  message=f"The agent could not do the task: {answer or 'it gave no reason'}")
            return self.snapshot("failed", tokens, error=error)
        if kind == "failed":
            error = ResponseError(code="server_error", type="task_failed", message=root.error or "the task failed")
            return self.snapshot("failed", tokens, error=error)
        return self.snapshot("cancelled", tokens)

    def finish(self, root: pb.Task, tokens: Tokens) -> list[ResponseStreamEvent]:
        """The terminal stream event, once the top-level task ended."""
        resp = self.final(root, tokens)
        seq = self.next_seq()
        if resp.status == "completed":
            return [ResponseCompletedEvent(type="response.completed", sequence_number=seq, response=resp)]
        if resp.status == "failed":
            return [ResponseFailedEvent(type="response.failed", sequence_number=seq, response=resp)]
        return [ResponseIncompleteEvent(type="response.incomplete", sequence_number=seq, response=resp)]

    # --- items --------------------------------------------------------------------
    def _add_part(self, task_id: str, text: str) -> list[ResponseStreamEvent]:
        out: list[ResponseStreamEvent] = []
        r = self._reasoning.get(task_id)
        if r is None:
            r = _Reasoning(index=len(self._items), id="rs_" + task_id)
            self._reasoning[task_id] = r
            self._items.append(r)
            out.append(ResponseOutputItemAddedEvent(type="response.output_item.added", sequence_number=self.next_seq(),
                                                    output_index=r.index, item=r.item()))
        if r.status != "in_progress":
            return out  # a late event of a task whose item closed already: nothing to add to
        k = len(r.parts)
        r.parts.append(text)
        common: dict[str, Any] = {"item_id": r.id, "output_index": r.index, "summary_index": k}
        out += [
            ResponseReasoningSummaryPartAddedEvent(type="response.reasoning_summary_part.added",
                                                   sequence_number=self.next_seq(),
                                                   part=PartAdded(text="", type="summary_text"), **common),
            ResponseReasoningSummaryTextDeltaEvent(type="response.reasoning_summary_text.delta",
                                                   sequence_number=self.next_seq(), delta=text, **common),
            ResponseReasoningSummaryTextDoneEvent(type="response.reasoning_summary_text.done",
                                                  sequence_number=self.next_seq(), text=text, **common),
            ResponseReasoningSummaryPartDoneEvent(type="response.reasoning_summary_part.done",
                                                  sequence_number=self.next_seq(),
                                                  part=PartDone(text=text, type="summary_text"), **common),
        ]
        return out

    def _close(self, r: _Reasoning, status: ItemStatus) -> list[ResponseStreamEvent]:
        r.status = status
        return [ResponseOutputItemDoneEvent(type="response.output_item.done", sequence_number=self.next_seq(),
                                            output_index=r.index, item=r.item())]

    def _answer(self, text: str, status: ItemStatus) -> list[ResponseStreamEvent]:
        m = _Message(index=len(self._items), id="msg_" + self.tree.root_id, text=text, status=status)
        self._items.append(m)
        common: dict[str, Any] = {"item_id": m.id, "output_index": m.index, "content_index": 0}
        added = ResponseOutputMessage(id=m.id, type="message", role="assistant", status="in_progress", content=[])
        out: list[ResponseStreamEvent] = [
            ResponseOutputItemAddedEvent(type="response.output_item.added", sequence_number=self.next_seq(),
                                         output_index=m.index, item=added),
            ResponseContentPartAddedEvent(type="response.content_part.added", sequence_number=self.next_seq(),
                                          part=ResponseOutputText(annotations=[], text="", type="output_text"),
                                          **common),
        ]
        for piece in chunk_text(text):
            out.append(ResponseTextDeltaEvent(type="response.output_text.delta", sequence_number=self.next_seq(),
                                              delta=piece, logprobs=[], **common))
        out += [
            ResponseTextDoneEvent(type="response.output_text.done", sequence_number=self.next_seq(),
                                  text=text, logprobs=[], **common),
            ResponseContentPartDoneEvent(type="response.content_part.done", sequence_number=self.next_seq(),
                                         part=m.content(), **common),
            ResponseOutputItemDoneEvent(type="response.output_item.done", sequence_number=self.next_seq(),
                                        output_index=m.index, item=m.item()),
        ]
        return out
