"""Small conversions shared by the endpoints: ids, statuses, usage, timestamps, text chunks.

Ids are lossless: a response id is ``resp_`` + the task id and a chat completion id
is ``chatcmpl-`` + the task id, so any id the gateway hands out can be turned back
into the task it names without a lookup table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator, Literal

from google.protobuf.timestamp_pb2 import Timestamp
from openai.types.completion_usage import CompletionUsage
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails, ResponseUsage

from blast_grpc._proto.blast.v1 import blast_pb2 as pb

RESPONSE_PREFIX = "resp_"
CHAT_PREFIX = "chatcmpl-"

Status = Literal["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"]

STATUS: dict[int, Status] = {
    pb.TASK_STATE_UNSPECIFIED: "queued",
    pb.TASK_STATE_QUEUED: "queued",
    pb.TASK_STATE_RUNNING: "in_progress",
    pb.TASK_STATE_COMPLETED: "completed",
    pb.TASK_STATE_FAILED: "failed",
    pb.TASK_STATE_CANCELLED: "cancelled",
    pb.TASK_STATE_WAITING_FOR_HUMAN: "in_progress",  # a turn that ends at a question shows "completed" (human.py)
}

TERMINAL_STATES = (pb.TASK_STATE_COMPLETED, pb.TASK_STATE_FAILED, pb.TASK_STATE_CANCELLED)


@dataclass(frozen=True)
class Tokens:
    """Tokens summed over a task tree's usage entries."""

    prompt: int = 0
    completion: int = 0

    @property
    def total(self) -> int:
        return self.prompt + self.completion


def response_id(task_id: str) -> str:
    """The response id of a task."""
    return RESPONSE_PREFIX + task_id


def task_id_of(response_id: str) -> str:
    """The task a response id names (an id without the prefix is taken as a task id)."""
    return response_id.removeprefix(RESPONSE_PREFIX)


def chat_id(task_id: str) -> str:
    """The chat completion id of a task."""
    return CHAT_PREFIX + task_id


def seconds(ts: Timestamp) -> int:
    """Unix seconds of a protobuf timestamp (0 when unset)."""
    return int(ts.seconds)


def response_usage(tokens: Tokens) -> ResponseUsage:
    """Token usage in the Responses API's shape."""
    return ResponseUsage(
        input_tokens=tokens.prompt,
        input_tokens_details=InputTokensDetails(cached_tokens=0, cache_write_tokens=0),
        output_tokens=tokens.completion,
        output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
        total_tokens=tokens.total,
    )


def completion_usage(tokens: Tokens) -> CompletionUsage:
    """Token usage in the Chat Completions API's shape."""
    return CompletionUsage(prompt_tokens=tokens.prompt, completion_tokens=tokens.completion,
                           total_tokens=tokens.total)


def tree_tokens(task: pb.Task) -> Tokens:
    """Tokens of the task's whole tree: ``Task.tree_usage`` (the task, its subtasks and their
    racing copies, every model), as the coordinator sums it."""
    return Tokens(prompt=sum(u.prompt_tokens for u in task.tree_usage),
                  completion=sum(u.completion_tokens for u in task.tree_usage))


_WORDS = re.compile(r"\S+\s*|\s+")


def chunk_text(text: str, size: int = 64) -> Iterator[str]:
    """``text`` in pieces of about ``size`` characters, split after whitespace.

    The engine hands over the answer whole; streaming it in pieces keeps the deltas the
    size clients expect. The split is deterministic, so a replayed stream is identical.
    """
    piece = ""
    for word in _WORDS.findall(text):
        if piece and len(piece) + len(word) > size:
            yield piece
            piece = ""
        piece += word
    if piece:
        yield piece
