"""When a task has ended: defined once for the coordinator, the workers, the clients and the gateway.

A task ends in one of three states, and its log's last event is of the matching kind
(``TaskEvent.completed`` / ``failed`` / ``cancelled``). Every other state (queued, running,
...) is unfinished, whatever new states are added later.
"""

from __future__ import annotations

from ._proto.blast.v1 import blast_pb2 as pb

# Each terminal state and the TaskEvent kind that announces it.
TERMINAL_KINDS: dict[int, str] = {
    pb.TASK_STATE_COMPLETED: "completed",
    pb.TASK_STATE_FAILED: "failed",
    pb.TASK_STATE_CANCELLED: "cancelled",
}
TERMINAL_STATES = frozenset(TERMINAL_KINDS)
TERMINAL_EVENTS = frozenset(TERMINAL_KINDS.values())


def is_terminal(state: int) -> bool:
    """Whether a task in ``state`` has ended."""
    return state in TERMINAL_STATES


def ends_task(ev: pb.TaskEvent) -> bool:
    """Whether ``ev`` is the terminal event of its own task (``ev.task_id``)."""
    return ev.WhichOneof("kind") in TERMINAL_EVENTS
