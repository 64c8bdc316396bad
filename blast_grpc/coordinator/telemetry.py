"""What the coordinator counts and times since its process started: the Prometheus counters
and histograms, and the running totals ``GetMetrics`` reports beside its current figures.

``metrics.collect_metrics`` takes a snapshot of *current* state (tasks held, queue, open
browsers, memory): those are gauges. What only ever grows, or is a distribution of
durations, cannot be read off current state (finished records are forgotten after
``settings.task_retention_s``), so it is recorded here as it happens:

=====================================  ===========================================================
``blast_tasks_finished_total{state}``  tasks (subtasks included) that ended, by end state
``blast_task_duration_seconds``        start to end of each task that ran; ``kind`` = task | subtask
``blast_task_queue_wait_seconds``      submission to first start; ``kind`` as above
``blast_step_duration_seconds``        one agent step: observe + model + act (replayed steps too)
``blast_observation_duration_seconds`` reading the page for one step
``blast_llm_request_duration_seconds`` one answered model call, by ``model`` (agent and planner)
=====================================  ===========================================================

The step and observation times come from the ``timing_ms`` the worker puts in each step's
``detail``; model latencies from the worker's usage updates (``UsageDelta.calls``). Copies of
a first-of-N task count as subtasks. The scheduler owns one ``Telemetry`` and feeds it; the
coordinator hooks ``track`` to every new task record.
"""

from __future__ import annotations

import json
import logging
from typing import Iterable, Iterator

from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from .._proto.blast.v1 import blast_pb2 as pb
from .._proto.blast.worker.v1 import worker_pb2 as wpb
from .tasks import TaskRecord

log = logging.getLogger("blast_grpc.telemetry")

END_STATES: dict[int, str] = {pb.TASK_STATE_COMPLETED: "completed", pb.TASK_STATE_FAILED: "failed",
              pb.TASK_STATE_CANCELLED: "cancelled"}
KINDS = ("task", "subtask")
# Seconds; a browser task takes seconds to minutes, a model call tenths to tens of seconds.
TASK_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 60)
OBSERVE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5)
LLM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 60)


def _seconds(ts_from: Timestamp, ts_to: Timestamp) -> float:
    return max(0.0, (ts_to.ToNanoseconds() - ts_from.ToNanoseconds()) / 1e9)


class Telemetry:
    """Counters and histograms since the coordinator started; ``collectors()`` exposes them."""

    def __init__(self) -> None:
        self.finished = dict.fromkeys(END_STATES.values(), 0)
        self.execution_seconds = 0.0  # top-level tasks, start to end
        # Steps reported and the seconds the workers measured for them (GetMetrics' steps and
        # step_seconds: the dashboard's step latency is the change of one over the other).
        self.steps = 0
        self.step_seconds = 0.0
        # registry=None: each scrape registers these in a registry of its own (prometheus.render).
        self.task_duration = Histogram("blast_task_duration_seconds", "Time from a task's start to its end",
                                       ["kind"], buckets=TASK_BUCKETS, registry=None)
        self.queue_wait = Histogram("blast_task_queue_wait_seconds", "Time from a task's submission to its start",
                                    ["kind"], buckets=WAIT_BUCKETS, registry=None)
        self.step_time = Histogram("blast_step_duration_seconds", "One agent step: observe, model call, actions",
                                   buckets=STEP_BUCKETS, registry=None)
        self.observe_time = Histogram("blast_observation_duration_seconds", "Reading the page for one step",
                                      buckets=OBSERVE_BUCKETS, registry=None)
        self.llm_time = Histogram("blast_llm_request_duration_seconds", "One answered model call, by model",
                                  ["model"], buckets=LLM_BUCKETS, registry=None)
        for kind in KINDS:  # every series exists from the start, at zero
            self.task_duration.labels(kind)
            self.queue_wait.labels(kind)

    # --- fed by the coordinator and the scheduler ---------------------------------
    def started(self, rec: TaskRecord) -> None:
        """A task's first attempt started (``rec.started_at`` is set)."""
        if rec.started_at is not None:
            self.queue_wait.labels(_kind(rec)).observe(_seconds(rec.created_at, rec.started_at))

    def step(self, step: pb.TaskStep) -> None:
        self.steps += 1
        if not step.detail:  # a step that timed out or reports a lost worker: nothing was timed
            return
        try:
            timing = json.loads(step.detail).get("timing_ms") or {}
            parts = {k: float(timing[k]) / 1000 for k in ("observe", "llm", "act")}
        except (ValueError, KeyError, TypeError, AttributeError):
            log.debug("step %d has no usable timing_ms in its detail", step.number)
            return
        self.step_seconds += sum(parts.values())
        self.step_time.observe(sum(parts.values()))
        self.observe_time.observe(parts["observe"])

    def llm_calls(self, calls: Iterable[wpb.LlmCall]) -> None:
        for c in calls:
            self.llm_time.labels(c.model).observe(c.seconds)

    def ended(self, rec: TaskRecord) -> None:
        """Count ``rec``'s end (an ``on_finished`` observer of the task store)."""
        state = END_STATES.get(rec.state)
        if state is None:
            return
        self.finished[state] += 1
        if rec.started_at is None or rec.finished_at is None:  # cancelled while queued, a cache hit
            return
        took = _seconds(rec.started_at, rec.finished_at)
        self.task_duration.labels(_kind(rec)).observe(took)
        if rec.parent is None:
            self.execution_seconds += took

    # --- read --------------------------------------------------------------------
    def finished_counts(self) -> pb.TaskCounts:
        return pb.TaskCounts(**self.finished)

    def collectors(self) -> list[Collector]:
        return [_FinishedCollector(self), self.task_duration, self.queue_wait, self.step_time, self.observe_time,
                self.llm_time]


def _kind(rec: TaskRecord) -> str:
    return "task" if rec.parent is None else "subtask"


class _FinishedCollector(Collector):
    """``blast_tasks_finished_total{state}`` and ``blast_task_execution_seconds_total``."""

    def __init__(self, t: Telemetry) -> None:
        self.t = t

    def collect(self) -> Iterator[Metric]:
        done = CounterMetricFamily("blast_tasks_finished", "Tasks (subtasks included) that ended, by end state",
                                   labels=["state"])
        for state, n in self.t.finished.items():
            done.add_metric([state], n)
        yield done
        yield CounterMetricFamily("blast_task_execution_seconds", "Seconds top-level tasks ran, start to end",
                                  value=self.t.execution_seconds)
