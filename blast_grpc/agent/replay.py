"""Recording a run for the recording cache (BLAST's plan cache), and replaying it without the model.

A recording is the plan text and, per step, the tool calls made, the element line
each index-based call targeted, and a hash of the page text the step was decided
on. Replaying step n is allowed only while the page still fits the recording:
every targeted element must read the same at the same index, and a final ``done``
is replayed only on a page whose text is unchanged (so a recorded answer is never
given for a page that now says something else). Subtask tools are never replayed
(their ids differ every run). From the first step that does not fit, the model
takes over, with the replayed steps in its history.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .observe import Observation
from .subtasks import SUBTASK_TOOL_NAMES
from .tools import Action


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _element(obs: Observation, index: Any) -> str | None:
    return obs.element_line(index) if isinstance(index, int) else None


class Recorder:
    def __init__(self) -> None:
        self.plan = ""
        self.steps: list[dict[str, Any]] = []

    def add(self, actions: list[Action], thought: str, obs: Observation) -> None:
        self.steps.append({
            "thought": thought,
            "page": text_hash(obs.text),
            "actions": [{"name": a.name, "args": a.args, "element": _element(obs, a.args.get("index"))}
                        for a in actions],
        })

    def to_json(self) -> str:
        return json.dumps({"version": 1, "plan": self.plan, "steps": self.steps})


class Replayer:
    def __init__(self, recording: str) -> None:
        data = json.loads(recording) if recording else {}
        ok = isinstance(data, dict) and data.get("version") == 1
        self.plan: str = str(data.get("plan", "")) if ok else ""
        self._steps: list[dict[str, Any]] = list(data.get("steps", [])) if ok else []
        self.active = bool(self._steps)

    def next(self, number: int, obs: Observation) -> tuple[list[Action], str] | None:
        """The recorded actions for step ``number`` if they still fit the page; else stop replaying."""
        if not self.active or number > len(self._steps):
            self.active = False
            return None
        step = self._steps[number - 1]
        actions = []
        for i, a in enumerate(step["actions"]):
            name, args = str(a["name"]), dict(a["args"])
            fits = (name not in SUBTASK_TOOL_NAMES
                    and ("index" not in args or _element(obs, args["index"]) == a.get("element"))
                    and (name != "done" or text_hash(obs.text) == step.get("page")))
            if not fits:
                self.active = False
                return None
            actions.append(Action(name, args, f"replay_{number}_{i}"))
        return actions, str(step.get("thought", ""))
