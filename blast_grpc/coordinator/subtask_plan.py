"""The plan a subtask inherits: its nearest planning ancestor's ``plan`` event.

A subtask does not call the planner (issue 13): the parent already planned the whole
job, and the subtask's own task text says which part of it is its own. The worker gets
the ancestor's plan in ``RunTaskRequest.parent_plan`` and puts it in the system prompt
where its own plan would have gone. A race record (first-of-N) never runs, so it has no
plan: its copies look further up, and the copies of a top-level race (no ancestor
planned) plan for themselves.
"""

from __future__ import annotations

from .tasks import TaskRecord


def inherited_plan(rec: TaskRecord) -> str:
    """The text of the latest plan event of ``rec``'s nearest ancestor that has one ('' if none)."""
    ancestor = rec.parent
    while ancestor is not None:
        for ev in reversed(ancestor.events):
            if ev.task_id == ancestor.task_id and ev.WhichOneof("kind") == "plan":
                return ev.plan.text
        ancestor = ancestor.parent
    return ""
