from __future__ import annotations

import os

import pytest

from blast_grpc.config import ConfigError, config_from_dict, load_config, model_name, parse_size


def test_default_config_file_is_valid_and_matches_the_models() -> None:
    c = load_config()
    assert c.constraints.max_concurrent_browsers == 20
    assert c.constraints.allow_parallelism.first_of_n is False
    assert c.settings.server_port == 8000


@pytest.mark.parametrize(("text", "size"), [("8GB", 8_000_000_000), ("512MiB", 512 * 2**20), ("2g", 2_000_000_000),
                                            (1024, 1024), ("1.5GB", 1_500_000_000)])
def test_sizes(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "GB", "-1GB", "8 parsecs", 0, -5])
def test_bad_sizes(bad: str | int) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


def test_blast_provider_prefix_is_accepted() -> None:
    assert model_name("openai:gpt-4.1") == "gpt-4.1" and model_name("gpt-4.1-mini") == "gpt-4.1-mini"


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"settings": {"wrokers": 2}}, "unknown key 'settings.wrokers'"),
        ({"settings": {"workers": 0}}, "settings.workers"),
        ({"settings": {"step_timeout_s": "soon"}}, "settings.step_timeout_s"),
        ({"constraints": {"max_concurrent_browsers": -1}}, "constraints.max_concurrent_browsers"),
        ({"constraints": {"first_of_n_num_copies": 0}}, "constraints.first_of_n_num_copies"),
        ({"constraints": {"llm_model": ""}}, "constraints.llm_model"),
        ({"constraints": {"require_headless": False}}, "constraints.require_headless"),
        ({"constraints": {"max_cost_per_minute": -2}}, "constraints.max_cost_per_minute"),
        ({"settings": {"llm_endpoints": {"x": {"base_ulr": "http://x"}}}}, "settings.llm_endpoints.x.base_ulr"),
    ],
)
def test_bad_values_name_the_key(raw: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        config_from_dict(raw, "cfg.yaml")
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_endpoint_lookup_and_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    c = config_from_dict({})
    assert c.llm_problem() is not None and "OPENAI_API_KEY" in c.llm_problem()  # type: ignore[operator]
    c = config_from_dict({"settings": {"llm_endpoints": {"default": {"base_url": "http://127.0.0.1:1/v1"}}}})
    assert c.llm_problem() is None and c.endpoint_for("openai:gpt-4.1").base_url == "http://127.0.0.1:1/v1"
    monkeypatch.setenv("MY_KEY", "k")
    c = config_from_dict({"settings": {"llm_endpoints": {"gpt-4.1": {"api_key_env": "MY_KEY"},
                                                         "gpt-4.1-mini": {"base_url": "http://h/v1"}}}})
    assert c.llm_problem() is None and os.environ["MY_KEY"] == "k"


def test_missing_file_and_bad_yaml(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("settings: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_a_task_may_name_a_configured_model_only() -> None:
    config = config_from_dict({"constraints": {"llm_model": "openai:gpt-4.1", "llm_model_mini": "openai:gpt-4.1-mini"}})
    assert config.task_model("") == "openai:gpt-4.1"
    assert config.task_model("gpt-4.1-mini") == config.task_model("openai:gpt-4.1-mini") == "openai:gpt-4.1-mini"
    assert config.task_model("gpt-5") is None
    # The worker runs a task on its model by handing the agent this config.
    mini = config.for_task("gpt-4.1-mini")
    assert mini.constraints.llm_model == "openai:gpt-4.1-mini" and config.constraints.llm_model == "openai:gpt-4.1"
    assert config.for_task("") is config and config.for_task("gpt-4.1") is config
