"""Metrics in BLAST's shape, the coordinator's telemetry and its Prometheus rendering (no processes)."""

from __future__ import annotations

import json

from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client.parser import text_string_to_metric_families

from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc._proto.blast.worker.v1 import worker_pb2 as wpb
from blast_grpc.blast_metrics import blast_metrics
from blast_grpc.coordinator.prometheus import GIB, render
from blast_grpc.coordinator.reflection import V1_PACKAGE, _v1_file
from blast_grpc.coordinator.tasks import TaskStore
from blast_grpc.coordinator.telemetry import Telemetry
from blast_grpc.llm import UsageMeter
from gateway.ops_routes import wants_text

# blastai 0.1.6, blastai/engine.py Engine.get_metrics(): its whole return value.
BLAST_KEYS = {"tasks", "concurrent_browsers", "memory_usage_gb", "total_cost"}
BLAST_TASK_KEYS = {"scheduled", "running", "completed"}


def _snapshot() -> pb.GetMetricsResponse:
    return pb.GetMetricsResponse(
        tasks=pb.TaskCounts(scheduled=2, running=1, completed=5, failed=1),
        concurrent_browsers=1, memory_usage_gb=1.23656, total_cost_usd=0.12545, queued=2,
        usage=[pb.Usage(model="gpt-4.1", prompt_tokens=100, completion_tokens=10, requests=3, cost_usd=0.1,
                        llm_seconds=1.004),
               pb.Usage(model="gpt-4.1-mini", prompt_tokens=50, completion_tokens=5, requests=2, cost_usd=0.02545,
                        llm_seconds=0.5)],
        finished=pb.TaskCounts(completed=7, failed=1, cancelled=2), execution_seconds=12.3456,
        workers=[pb.WorkerInfo(worker_id="w1", state=pb.WORKER_STATE_READY, open_contexts=["t"], warm_contexts=1)],
    )


def test_blast_metrics_has_blasts_keys_units_and_rounding() -> None:
    m = blast_metrics(_snapshot())
    assert set(m) >= BLAST_KEYS and set(m["tasks"]) >= BLAST_TASK_KEYS
    assert m["tasks"]["completed"] == 5 and m["concurrent_browsers"] == 1
    assert m["memory_usage_gb"] == 1.24 and m["total_cost"] == 0.13  # round(_, 2), as BLAST
    assert (m["prompt_tokens"], m["completion_tokens"], m["total_tokens"]) == (150, 15, 165)
    assert m["llm_calls"] == 5 and m["llm_seconds"] == 1.5 and m["execution_seconds"] == 12.35
    assert m["tasks_finished"] == {"completed": 7, "failed": 1, "cancelled": 2}
    assert m["usage"]["gpt-4.1-mini"]["requests"] == 2
    json.dumps(m)  # what /metrics serves


def test_render_separates_gauges_from_counters_and_uses_bytes() -> None:
    body, content_type = render(_snapshot())
    assert content_type.startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert {s.labels["state"]: s.value for s in families["blast_tasks"].samples} == {"scheduled": 2, "running": 1}
    assert families["blast_tasks"].type == "gauge" and families["blast_queued_tasks"].samples[0].value == 2
    assert families["blast_memory_usage_bytes"].samples[0].value == round(1.23656 * GIB)
    assert "blast_cost_usd" not in families  # the total is the sum of blast_llm_cost_usd_total
    assert {s.name for s in families["blast_llm_cost_usd"].samples} == {"blast_llm_cost_usd_total"}
    assert "blast_worker_open_contexts" not in families  # blast_worker_contexts{kind="task"} says it
    om, om_type = render(_snapshot(), accept="application/openmetrics-text; version=1.0.0")
    assert om_type.startswith("application/openmetrics-text") and om.decode().endswith("# EOF\n")


def _ts(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def test_telemetry_counts_ends_and_times_runs() -> None:
    t, store = Telemetry(), TaskStore()
    store.on_finished.append(t.ended)
    top = store.new(pb.TaskSpec(description="top"))
    sub = store.new(pb.TaskSpec(description="sub"), top)
    never = store.new(pb.TaskSpec(description="cancelled while queued"))
    top.created_at, top.started_at = _ts(100), _ts(101.5)
    sub.created_at, sub.started_at = _ts(102), _ts(102.25)
    t.started(top)
    t.started(sub)
    store.finish(sub, pb.TASK_STATE_FAILED, error="x")
    store.finish(top, pb.TASK_STATE_COMPLETED, result="r", success=True)
    store.finish(never, pb.TASK_STATE_CANCELLED, error="c")
    assert t.finished == {"completed": 1, "failed": 1, "cancelled": 1}
    assert t.finished_counts() == pb.TaskCounts(completed=1, failed=1, cancelled=1)
    text = render(pb.GetMetricsResponse(), t.collectors())[0].decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("blast_task_queue_wait_seconds_count", (("kind", "task"),))] == 1
    assert samples[("blast_task_queue_wait_seconds_sum", (("kind", "task"),))] == 1.5
    assert samples[("blast_task_queue_wait_seconds_sum", (("kind", "subtask"),))] == 0.25
    assert samples[("blast_task_duration_seconds_count", (("kind", "task"),))] == 1  # the queued one never ran
    assert samples[("blast_tasks_finished_total", (("state", "cancelled"),))] == 1


def test_telemetry_execution_seconds_are_top_level_run_times() -> None:
    t, store = Telemetry(), TaskStore()
    store.on_finished.append(t.ended)
    top = store.new(pb.TaskSpec(description="top"))
    sub = store.new(pb.TaskSpec(description="sub"), top)
    for rec in (top, sub):
        rec.started_at = _ts(0)
        # finish() stamps finished_at with the clock; a record that started at the epoch ran "now" seconds
        store.finish(rec, pb.TASK_STATE_COMPLETED, result="r", success=True)
    assert top.finished_at is not None
    assert t.execution_seconds == top.finished_at.ToNanoseconds() / 1e9  # the subtask is not added


def test_telemetry_steps_and_model_calls() -> None:
    t = Telemetry()
    detail = json.dumps({"timing_ms": {"observe": 20.0, "llm": 300.0, "act": 80.0}, "chunks": 3})
    t.step(pb.TaskStep(number=1, detail=detail))
    t.step(pb.TaskStep(number=2, detail=""))  # a timed-out step: nothing timed
    t.step(pb.TaskStep(number=3, detail="not json"))
    t.llm_calls([wpb.LlmCall(model="gpt-4.1", seconds=0.3), wpb.LlmCall(model="gpt-4.1", seconds=0.7),
                 wpb.LlmCall(model="gpt-4.1-mini", seconds=0.1)])
    text = render(pb.GetMetricsResponse(), t.collectors())[0].decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("blast_step_duration_seconds_count", ())] == 1
    assert abs(samples[("blast_step_duration_seconds_sum", ())] - 0.4) < 1e-9
    assert abs(samples[("blast_observation_duration_seconds_sum", ())] - 0.02) < 1e-9
    assert samples[("blast_llm_request_duration_seconds_count", (("model", "gpt-4.1"),))] == 2
    assert samples[("blast_llm_request_duration_seconds_count", (("model", "gpt-4.1-mini"),))] == 1


def test_usage_meter_keeps_each_calls_time_until_taken() -> None:
    meter = UsageMeter()
    meter.add("m", 10, 1, seconds=0.5)
    meter.add("m", 10, 1, seconds=0.25)
    meter.add("m", 5, 0, requests=2)  # the extraction pool's: counted, not timed
    delta = meter.take()
    assert delta["m"].requests == 4 and delta["m"].calls == [0.5, 0.25] and delta["m"].seconds == 0.75
    assert meter.take() == {} and meter.total["m"].seconds == 0.75 and meter.total["m"].calls == []


def test_reflection_v1_file_is_v1alpha_renamed() -> None:
    fdp = _v1_file()
    assert fdp.package == V1_PACKAGE and fdp.name == "grpc/reflection/v1/reflection.proto"
    names = [f.type_name for m in fdp.message_type for f in m.field if f.type_name]
    names += [x for s in fdp.service for m in s.method for x in (m.input_type, m.output_type)]
    assert names and all(n.startswith(f".{V1_PACKAGE}.") for n in names)


def test_accept_picks_prometheus_text_only_when_asked() -> None:
    assert wants_text("text/plain")
    assert wants_text("application/openmetrics-text;version=1.0.0;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
    assert not wants_text("") and not wants_text("*/*") and not wants_text("application/json")
    assert not wants_text("application/json, text/plain")  # a JSON client that takes text too: JSON
