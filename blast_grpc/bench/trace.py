"""Running tasks for measurement: engine overrides, and event traces with receive times.

A ``Trace`` is every event of one top-level task's stream (its subtasks' and racing
copies' events included), each with the engine's timestamp (``TaskEvent.time``, set
by the coordinator when it records the event) and the wall-clock time this process
received it. Both clocks are the same machine's ``time.time()``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .._proto.blast.v1 import blast_pb2 as pb
from ..client import Client
from ..states import TERMINAL_EVENTS


def engine_overrides(sim_base_url: str, *, model: str, mini: str = "bench-mini",
                     constraints: dict[str, Any] | None = None, **settings: Any) -> dict[str, Any]:
    """Overrides for ``Engine.create``: loopback, free ports, quiet logs, the sim for every model."""
    s: dict[str, Any] = {
        "grpc_port": 0,
        "metrics_port": None,
        "workers": 2,
        "max_steps": 80,
        "llm_endpoints": {"default": {"base_url": sim_base_url}},
        "llm_timeout_s": 60,
        "llm_max_retries": 2,
        "allow_loopback": True,
        "blastai_log_level": "warning",
        "context_keep_alive_s": 0,  # finished tasks free their context at once (memory, open_contexts)
        "drain_timeout_s": 5,
        "worker_restart_backoff_s": 0.2,
    }
    s.update(settings)
    c: dict[str, Any] = {"llm_model": model, "llm_model_mini": mini}
    c.update(constraints or {})
    return {"settings": s, "constraints": c}


def ev_time(ev: pb.TaskEvent) -> float:
    """The engine's timestamp of an event, in seconds since the epoch."""
    return float(ev.time.seconds) + ev.time.nanos / 1e9


@dataclass
class Trace:
    """One top-level task's stream. ``submitted`` is the wall time just before the RPC."""

    submitted: float
    events: list[tuple[float, pb.TaskEvent]] = field(default_factory=list)

    @property
    def root(self) -> str:
        return self.events[0][1].task_id if self.events else ""

    @property
    def end(self) -> pb.TaskEvent | None:
        """The top-level task's terminal event, if the stream reached it."""
        for _, ev in reversed(self.events):
            if ev.task_id == self.root and ev.WhichOneof("kind") in TERMINAL_EVENTS:
                return ev
        return None

    @property
    def ok(self) -> bool:
        end = self.end
        return end is not None and end.HasField("completed") and end.completed.success

    @property
    def error(self) -> str:
        end = self.end
        if end is None:
            return "the stream ended without a terminal event"
        kind = end.WhichOneof("kind")
        if kind == "completed":
            return "" if end.completed.success else f"gave up: {end.completed.result[:200]}"
        return f"{kind}: {(end.failed.error if kind == 'failed' else end.cancelled.reason)[:200]}"

    @property
    def received_end(self) -> float:
        """When the terminal event reached this process."""
        for t, ev in reversed(self.events):
            if ev.task_id == self.root and ev.WhichOneof("kind") in TERMINAL_EVENTS:
                return t
        return self.events[-1][0] if self.events else self.submitted

    def latency(self) -> float:
        """Client-side task latency: submit → terminal event received."""
        return self.received_end - self.submitted

    def engine_span(self) -> float:
        """Engine-side task latency: the root's first event → its terminal event."""
        end = self.end
        return ev_time(end) - ev_time(self.events[0][1]) if end is not None and self.events else 0.0

    def of(self, task_id: str, kind: str | None = None) -> list[tuple[float, pb.TaskEvent]]:
        return [(t, ev) for t, ev in self.events
                if ev.task_id == task_id and (kind is None or ev.WhichOneof("kind") == kind)]

    def task_ids(self, kind: str = "started") -> list[str]:
        """Ids of the tasks of the tree that have an event of ``kind``, in order."""
        seen: list[str] = []
        for _, ev in self.events:
            if ev.WhichOneof("kind") == kind and ev.task_id not in seen:
                seen.append(ev.task_id)
        return seen

    def step_gaps(self, task_id: str) -> list[tuple[float, pb.TaskEvent]]:
        """Per step of ``task_id``: (engine time since the previous step, or since the plan /
        start for step 1; the step event). The first gap includes the initial navigation
        and the planner call, so callers usually skip it."""
        out: list[tuple[float, pb.TaskEvent]] = []
        prev: float | None = None
        for _, ev in self.of(task_id):
            kind = ev.WhichOneof("kind")
            if kind in ("started", "plan"):
                prev = ev_time(ev)
            elif kind == "step":
                if prev is not None:
                    out.append((ev_time(ev) - prev, ev))
                prev = ev_time(ev)
        return out


async def run_traced(client: Client, task: str, **kw: Any) -> Trace:
    """Run a task through ``RunTask`` and record every event of its stream."""
    trace = Trace(time.time())
    async for ev in client.run(task, stream=True, **kw):
        trace.events.append((time.time(), ev))
        if ev.task_id == trace.root and not ev.parent_task_id and ev.WhichOneof("kind") in TERMINAL_EVENTS:
            break
    return trace


def llm_requests(task: pb.Task) -> int:
    """LLM calls of the task and all its subtasks and copies."""
    return sum(u.requests for u in task.tree_usage)
