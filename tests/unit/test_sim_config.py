"""Scenario-file validation, latency configuration and the fault queue."""

from __future__ import annotations

from pathlib import Path

import pytest

from blast_grpc.sim.faults import Fault, FaultError, FaultQueue, parse_fault_list, parse_faults_body
from blast_grpc.sim.latency import LatencyError, LatencyModel
from blast_grpc.sim.scenarios import SHIPPED_DIR, ScenarioError, load_scenarios, parse_document


def _scenario(**over):
    s = {"name": "s", "task": "t", "rules": [{"do": {"go_back": {}}}]}
    s.update(over)
    return {"scenarios": [s]}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"scenario": []}, "unknown key 'scenario'"),
        (_scenario(task="(unclosed"), "scenarios[0] (s).task: invalid regex"),
        (_scenario(rules=[]), "rules: must be a non-empty list"),
        (_scenario(delay=-1), "delay: must be a number of seconds >= 0"),
        (_scenario(rules=[{"do": {"fly": {}}}]), "unknown action 'fly'"),
        (_scenario(rules=[{"do": {"click": {}}}]), "give exactly one of 'element' (regex) or 'index'"),
        (_scenario(rules=[{"do": {"done": {"success": True}}}]), "do.done: missing 'text'"),
        (_scenario(rules=[{"do": {"done": {"text": "x", "success": "yes"}}}]), "success: must be true or false"),
        (_scenario(rules=[{"do": {"scroll": {"direction": "left"}}}]), "must be 'up' or 'down'"),
        (_scenario(rules=[{"when": {"color": "red"}, "do": {"go_back": {}}}]), "unknown key 'color'"),
        (_scenario(rules=[{"when": {"step_min": "3"}, "do": {"go_back": {}}}]), "step_min: must be an integer"),
        (_scenario(rules=[{"do": {"go_to_url": {"url": "{nowhere}"}}}]), "unknown variable {nowhere}"),
        # A group captured later (text is evaluated after url) cannot be used earlier.
        (_scenario(rules=[{"when": {"url": "{g}", "text": "(?P<g>x)"}, "do": {"go_back": {}}}]),
         "when.url: unknown variable {g}"),
        # Groups inside `not` are never captured.
        (_scenario(rules=[{"when": {"not": {"text": "(?P<g>x)"}}, "do": {"go_to_url": {"url": "{g}"}}}]),
         "unknown variable {g}"),
        ({"extractors": [{"query": "q"}]}, "needs 'query' (regex over QUERY) and 'answer'"),
        ({"extractors": [{"query": "q", "find": "(?P<a>x)", "answer": "{b}"}]}, "answer: unknown variable {b}"),
    ],
)
def test_invalid_documents_are_rejected_with_the_field_named(doc, message: str) -> None:
    with pytest.raises(ScenarioError) as exc:
        parse_document(doc, "f.yaml")
    assert message in str(exc.value)
    assert str(exc.value).startswith("f.yaml")


def test_valid_variables_from_task_groups_and_earlier_conditions() -> None:
    doc = _scenario(task="(?P<who>\\w+)", rules=[
        {"when": {"url": "(?P<u>.+)", "text": "{u} {who}"}, "do": {"done": {"text": "{u} {who} {step} {start_url}"}},
         "thought": "{task}"}])
    s = parse_document(doc, "ok.yaml").scenarios[0]
    assert s.rules[0].tool == "done" and set(s.task.groupindex) == {"who"}


def test_shipped_scenarios_load() -> None:
    sset = load_scenarios()
    names = [s.name for s in sset.scenarios]
    assert {"gorilla-one-continent", "article-secret-code", "order-form"} <= set(names)
    assert [e.name for e in sset.extractors][:1] == ["secret-river-code"]
    assert (SHIPPED_DIR / "demo_site.yaml").exists()


def test_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="scenario directory not found"):
        load_scenarios([tmp_path / "missing"])
    (tmp_path / "bad.yaml").write_text("scenarios: [\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match="bad.yaml: not valid YAML"):
        load_scenarios([tmp_path])
    (tmp_path / "bad.yaml").unlink()
    dup = "scenarios:\n  - {name: gorilla-one-continent, task: x, rules: [{do: {go_back: {}}}]}\n"
    (tmp_path / "dup.yaml").write_text(dup, encoding="utf-8")
    with pytest.raises(ScenarioError, match="duplicate scenario name 'gorilla-one-continent'"):
        load_scenarios([SHIPPED_DIR, tmp_path])


def test_extra_directories_add_scenarios_in_order(tmp_path: Path) -> None:
    (tmp_path / "mine.yml").write_text(
        "scenarios:\n  - {name: mine, task: 'largest gorilla', rules: [{do: {go_back: {}}}]}\n", encoding="utf-8")
    sset = load_scenarios([tmp_path, SHIPPED_DIR])
    found = sset.match("find the largest gorilla in Asia")
    assert found is not None and found[0].name == "mine"  # earlier directory wins


def test_latency_sampling_is_seeded_and_per_model() -> None:
    cfg = {"default": {"ttft": {"dist": "constant", "seconds": 0.05}, "tokens_per_second": 200},
           "big": {"ttft": {"dist": "lognormal", "median": 0.5, "sigma": 0.4}, "tokens_per_second": 50}}
    a, b = LatencyModel.from_config(cfg, seed=7), LatencyModel.from_config(cfg, seed=7)
    seq_a = [a.sample("big", 100).ttft for _ in range(5)]
    # Interleaving another model's requests does not change "big"'s samples.
    seq_b = []
    for _ in range(5):
        b.sample("other", 10)
        seq_b.append(b.sample("big", 100).ttft)
    assert seq_a == seq_b and len(set(seq_a)) == 5
    assert seq_a != [LatencyModel.from_config(cfg, seed=8).sample("big", 100).ttft for _ in range(5)]
    assert a.sample("big", 100).generation == pytest.approx(2.0)
    t = a.sample("unlisted", 400)
    assert (t.ttft, t.generation) == (0.05, pytest.approx(2.0))
    assert a.models() == ["big"]
    instant = LatencyModel().sample("x", 1000)
    assert (instant.ttft, instant.generation) == (0.0, 0.0)


def test_prefill_time_grows_with_prompt_tokens() -> None:
    cfg = {"mini": {"ttft": {"dist": "constant", "seconds": 0.1}, "input_tokens_per_second": 10_000}}
    model = LatencyModel.from_config(cfg)
    assert model.sample("mini", 10).ttft == pytest.approx(0.1)
    assert model.sample("mini", 10, prompt_tokens=5_000).ttft == pytest.approx(0.6)
    assert model.sample("other", 10, prompt_tokens=5_000).ttft == 0.0  # no term without the key


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"m": {"input_tokens_per_second": -5}}, "m.input_tokens_per_second: must be >= 0"),
        ({"m": {"ttft": {"dist": "gamma"}}}, "m.ttft.dist: must be 'constant' or 'lognormal'"),
        ({"m": {"ttft": {"dist": "lognormal"}}}, "m.ttft.median: required"),
        ({"m": {"ttft": {"dist": "constant", "seconds": -1}}}, "m.ttft.seconds: must be >= 0"),
        ({"m": {"tokens_per_second": "fast"}}, "m.tokens_per_second: must be a number"),
        ({"m": {"ttft": 0.5}}, "m.ttft: must be a mapping"),
        ({"m": {"speed": 1}}, "unknown key 'speed'"),
        (["m"], "must be a mapping of model name"),
    ],
)
def test_latency_errors_name_the_field(cfg, message: str) -> None:
    with pytest.raises(LatencyError) as exc:
        LatencyModel.from_config(cfg, source="lat.yaml")
    assert message in str(exc.value)


def test_latency_file(tmp_path: Path) -> None:
    f = tmp_path / "lat.yaml"
    f.write_text("default: {ttft: {dist: constant, seconds: 0.2}, tokens_per_second: 100}\n", encoding="utf-8")
    assert LatencyModel.from_file(f).sample("x", 50).ttft == 0.2
    with pytest.raises(LatencyError, match="cannot read latency file"):
        LatencyModel.from_file(tmp_path / "nope.yaml")


def test_fault_parsing() -> None:
    assert parse_fault_list("http_429, stall,,") == [Fault("http_429"), Fault("stall")]
    with pytest.raises(FaultError, match="unknown fault kind 'boom'"):
        parse_fault_list("http_429,boom")
    faults = parse_faults_body({"faults": [{"kind": "http_500"}, "stall", {"kind": "stall", "model": "b"}],
                                "model": "a"})
    assert faults == [Fault("http_500", "a"), Fault("stall", "a"), Fault("stall", "b")]
    with pytest.raises(FaultError) as exc:
        parse_faults_body({"faults": [{"kind": "nope"}]})
    assert exc.value.param == "faults[0].kind" and "nope" in str(exc.value)
    with pytest.raises(FaultError, match="faults must be a list"):
        parse_faults_body({"faults": "http_429"})


def test_fault_queue_respects_model_and_request_kind() -> None:
    q = FaultQueue([Fault("no_tool_call"), Fault("http_429", "big"), Fault("http_500")])
    # Extraction requests skip agent-only faults; "small" skips big's fault.
    assert q.take("small", "extract") == Fault("http_500")
    assert q.take("small", "extract") is None
    assert q.take("big", "extract") == Fault("http_429", "big")
    assert q.take("small", "agent") == Fault("no_tool_call")
    assert q.pending() == []
