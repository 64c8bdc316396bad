"""What the templates show, computed from the engine's records: pure functions, no I/O.

A task row (``task_row``) sums the task's whole tree (``tree_usage``: subtasks and racing
copies) for its model calls and cost. An event (``event_fragment``) becomes the HTML the
task page's SSE stream sends: out-of-band swaps (``hx-swap-oob``) that put each piece in
its place in the tree, so one stream keeps every node of the tree up to date::

    <div id="node-T">                   one per task of the tree; a subtask's node goes
      <span id="state-T">               into its parent's #children-P when it is launched
      <span id="cancel-T">              (emptied when T ends)
      <div id="plan-T">, <ol id="steps-T">
      <div id="children-T">, <div id="result-T">
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment

from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.states import TERMINAL_STATES

MAX_TEXT = 4000  # characters of a thought, result or answer shown; the rest is cut with a note


def state_name(state: int) -> str:
    return str(pb.TaskState.Name(state)).removeprefix("TASK_STATE_").lower()  # type: ignore[arg-type]


def clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more characters)"


def duration_s(task: pb.Task, now: float | None = None) -> float | None:
    """Seconds from start to finish (or to now while it runs); None before it started."""
    if not task.HasField("started_at"):
        return None
    end = task.finished_at.ToMicroseconds() / 1e6 if task.HasField("finished_at") else (now or time.time())
    return max(0.0, end - task.started_at.ToMicroseconds() / 1e6)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


@dataclass
class TaskRow:
    task_id: str
    description: str
    state: str
    done: bool
    queue_position: int
    worker_id: str
    duration: str
    model_calls: int
    cost_usd: float
    subtasks: int
    result: str
    error: str


def task_row(task: pb.Task, now: float | None = None) -> TaskRow:
    return TaskRow(
        task_id=task.task_id,
        description=clip(task.spec.description, 200),
        state=state_name(task.state),
        done=task.state in TERMINAL_STATES,
        queue_position=task.queue_position,
        worker_id=task.worker_id,
        duration=fmt_duration(duration_s(task, now)),
        model_calls=sum(u.requests for u in task.tree_usage),
        cost_usd=sum(u.cost_usd for u in task.tree_usage),
        subtasks=len(task.subtask_ids),
        result=clip(task.result, 300),
        error=clip(task.error, 300),
    )


def thumbnail_url(step: pb.TaskStep) -> str:
    """The step's thumbnail as a data URL ("" without one): it is a few KB and goes with its step."""
    if not step.thumbnail:
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(step.thumbnail).decode()


def event_fragment(env: Environment, ev: pb.TaskEvent) -> str:
    """The out-of-band HTML that shows ``ev`` in the task page's tree ("" for nothing to show)."""
    kind = ev.WhichOneof("kind")
    ctx: dict[str, Any] = {"ev": ev, "task_id": ev.task_id, "kind": kind, "clip": clip}
    if kind == "step":
        ctx["thumb"] = thumbnail_url(ev.step)
    elif kind == "subtask_launched":
        ctx["child"] = {"task_id": ev.subtask_launched.subtask_id, "description": ev.subtask_launched.description,
                        "copy_no": ev.subtask_launched.copy, "state": "queued", "done": False}
    elif kind is None:
        return ""
    return env.get_template("_event.html").render(ctx)
