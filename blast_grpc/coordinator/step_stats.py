"""Step latency for ``GetMetrics``: how many steps the workers reported and how long they took.

A step's time is what its worker measured (``timing_ms`` in the step's ``detail``: observe,
model call, act), so waiting in the queue or for the cost budget does not count. The two
numbers are counters since the engine started; a client (the dashboard's plot) takes the
mean latency over a window as the change of seconds over the change of steps.
"""

from __future__ import annotations

import json

from .._proto.blast.v1 import blast_pb2 as pb


class StepStats:
    def __init__(self) -> None:
        self.steps = 0
        self.seconds = 0.0

    def add(self, step: pb.TaskStep) -> None:
        """Count one reported step; one without timing (a timed-out or lost step) counts no time."""
        self.steps += 1
        try:
            timing = json.loads(step.detail).get("timing_ms", {}) if step.detail else {}
            self.seconds += sum(float(v) for v in timing.values()) / 1000
        except (ValueError, AttributeError, TypeError):
            pass  # a detail the worker did not write as JSON: the step counts, its time does not
