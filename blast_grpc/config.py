"""The engine's configuration: BLAST's ``settings`` and ``constraints`` keys plus ours.

Loaded from YAML and validated before any process or browser starts. Every
model forbids unknown keys, so a typo stops start-up with a one-line message that
names the key (``ConfigError``). The README documents each key; ``config.yaml``
at the repository root holds the defaults.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config.yaml"

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and what is wrong."""


def parse_size(value: str | int | float) -> int:
    """Turn ``"8GB"``, ``"512MiB"``, ``"2G"`` or a byte count into bytes."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError("must be a positive size")
        return int(value)
    if not isinstance(value, str):
        raise ValueError("must be a size like '8GB'")
    m = _SIZE.match(value)
    if not m:
        raise ValueError(f"{value!r} is not a size like '8GB' or '512MB'")
    number, unit = float(m.group(1)), m.group(2).upper()
    base = 1024 if "I" in unit else 1000
    scale = base ** "BKMGT".index(unit[0]) if unit and unit[0] in "KMGT" else 1
    size = int(number * scale)
    if size <= 0:
        raise ValueError("must be a positive size")
    return size


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Endpoint(_Strict):
    """Where one model is served: any OpenAI-compatible endpoint."""

    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"


class Price(_Strict):
    """USD per million tokens."""

    input_per_1m: float = Field(ge=0)
    output_per_1m: float = Field(ge=0)


def _default_prices() -> dict[str, Price]:
    table = {"gpt-4.1": (2.0, 8.0), "gpt-4.1-mini": (0.4, 1.6), "gpt-4.1-nano": (0.1, 0.4),
             "gpt-4o": (2.5, 10.0), "gpt-4o-mini": (0.15, 0.6)}
    return {m: Price(input_per_1m=i, output_per_1m=o) for m, (i, o) in table.items()}


ResourceType = Literal["image", "media", "font"]
DEFAULT_BLOCKED: tuple[ResourceType, ...] = ("media", "font")


class Settings(_Strict):
    """How the engine runs (BLAST's ``settings`` plus serving options)."""

    # BLAST's keys
    persist_cache: bool = False
    logs_dir: str | None = "blast-logs"
    secrets_file_path: str = "secrets.env"
    server_port: int = Field(8000, ge=0, le=65535)
    web_port: int = Field(3000, ge=0, le=65535)
    local_browser_path: str = "auto"
    blastai_log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    browser_use_log_level: Literal["debug", "info", "warning", "error", "critical"] = "warning"
    # each process's file in logs_dir is rotated at this size, keeping this many old files
    log_file_max_bytes: int = 10_000_000
    log_file_backups: int = Field(5, ge=1, le=100)
    # serving
    host: str = "127.0.0.1"
    grpc_port: int = Field(50051, ge=0, le=65535)
    metrics_port: int | None = Field(9464, ge=0, le=65535)
    workers: int = Field(2, ge=0, le=64)  # 0: only remote workers (worker_listen)
    runtime_dir: str | None = None
    gateway: bool = True
    gateway_host: str = "127.0.0.1"
    api_keys: list[str] = Field(default_factory=list)
    # The coordinator accepts gRPC messages up to 8 MiB; a larger HTTP body could not pass through.
    max_request_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=8 * 1024 * 1024)
    # Slow clients: a request's headers must arrive within gateway_header_timeout_s, and its
    # body may pause at most gateway_body_timeout_s; at most gateway_max_connections are open.
    gateway_header_timeout_s: float = Field(10.0, gt=0)
    gateway_body_timeout_s: float = Field(30.0, gt=0)
    gateway_max_connections: int = Field(800, ge=4)
    # The web dashboard (blast_grpc/dashboard) on web_port, bound like the gateway on gateway_host.
    # With dashboard_screenshots each step carries a small JPEG of the page, at most
    # dashboard_screenshots_per_task of them and dashboard_screenshot_bytes_per_task bytes per task.
    dashboard: bool = True
    dashboard_screenshots: bool = False
    dashboard_screenshots_per_task: int = Field(50, ge=1, le=1000)
    dashboard_screenshot_bytes_per_task: int = Field(1_000_000, ge=10_000, le=50_000_000)
    # agent loop
    max_steps: int = Field(25, ge=1, le=500)
    step_timeout_s: float = Field(60.0, gt=0)
    action_timeout_s: float = Field(10.0, gt=0)
    observation_max_chars: int = Field(6000, ge=200)
    observation_max_elements: int = Field(500, ge=10, le=5000)
    max_tabs: int = Field(8, ge=1, le=32)
    # What a page may not load while the model reads text only (worker/resources.py): saves
    # Chromium's CPU and memory; ignored with constraints.allow_vision. [] loads everything.
    # Not images by default: an <img> without a set size collapses when blocked, and a page's
    # clickable icons then vanish from the observation (MiniWoB++'s email-inbox trash icons).
    blocked_resource_types: list[ResourceType] = Field(default_factory=lambda: list(DEFAULT_BLOCKED))
    # Directory whose files upload_file may put into file inputs; None: the tool is not offered.
    upload_dir: str | None = None
    max_task_chars: int = Field(100_000, ge=1)
    planner: bool = True
    cache_results: bool = True
    cache_plans: bool = True
    cache_path: str = "blast-cache/cache.sqlite"
    task_db_path: str | None = "blast-state/tasks.sqlite"
    # Finished task trees are forgotten (memory and task database) after this long, or when
    # there are more records than max_task_records (oldest first).
    task_retention_s: float = Field(7 * 24 * 3600.0, gt=0)
    max_task_records: int = Field(100_000, ge=1)
    max_queued_tasks: int = Field(1000, ge=1)
    allow_loopback: bool = False
    allow_link_local: bool = False
    allow_private_networks: bool = False
    warm_contexts: int = Field(1, ge=0, le=32)
    # The warm pool grows to recent bursts of tasks up to this (worker/contexts.py); <= warm_contexts: fixed.
    warm_contexts_max: int = Field(4, ge=0, le=32)
    context_memory_estimate: int = 40_000_000
    memory_sample_s: float = Field(0.5, gt=0)
    context_keep_alive_s: float = Field(120.0, ge=0)
    max_kept_contexts: int = Field(8, ge=0, le=1000)
    max_subtasks_per_task: int = Field(50, ge=1, le=1000)
    # First-of-N (coordinator/hedge.py): start every copy at once, or the extra copies only
    # when the first runs longer than hedge_quantile of recent latencies.
    first_of_n_mode: Literal["race", "hedged"] = "race"
    hedge_quantile: float = Field(0.8, gt=0, lt=1)
    hedge_min_samples: int = Field(8, ge=1, le=200)
    subtask_wait_timeout_s: float = Field(600.0, gt=0)
    # A task waiting for a person (ask_human, PauseTask) fails when nobody answers within this.
    human_response_timeout_s: float = Field(900.0, gt=0)
    chunk_chars: int = Field(20_000, ge=500)
    chunk_overlap_chars: int = Field(500, ge=0)
    extraction_processes: int = Field(2, ge=1, le=64)
    # extract_content: chunk calls in flight at once per worker (all its tasks share them), the
    # smallest chunk a page is cut into to fill them, retries of a failed chunk, biggest page read.
    max_parallel_chunk_calls: int = Field(16, ge=1, le=1024)
    min_chunk_chars: int = Field(12_000, ge=200)
    chunk_retries: int = Field(1, ge=0, le=5)
    extraction_max_page_bytes: int = Field(8_000_000, ge=1000)
    # LLM
    llm_endpoints: dict[str, Endpoint] = Field(default_factory=dict)
    llm_timeout_s: float = Field(60.0, gt=0)
    llm_max_retries: int = Field(3, ge=0, le=20)
    # Model answers travel on in gRPC messages (4 MiB at most) and events: refuse bigger ones at the source.
    llm_max_answer_bytes: int = Field(1024 * 1024, ge=1024, le=3 * 1024 * 1024)
    model_prices: dict[str, Price] = Field(default_factory=_default_prices)
    # worker supervision
    worker_start_timeout_s: float = Field(60.0, gt=0)
    worker_restart_backoff_s: float = Field(0.5, ge=0)
    worker_restart_backoff_max_s: float = Field(30.0, ge=0)
    task_retries_on_worker_death: int = Field(1, ge=0, le=10)
    drain_timeout_s: float = Field(30.0, ge=0)
    # remote workers (coordinator/registry.py, worker/remote.py): README "Adding a host"
    worker_listen: str | None = None  # "HOST:PORT" remote workers join at; None: local workers only
    worker_token: str | None = None  # or BLAST_WORKER_TOKEN; required when worker_listen is set
    worker_tls_cert: str | None = None  # PEM: the certificate each side serves (coordinator and remote workers)
    worker_tls_key: str | None = None
    worker_tls_ca: str | None = None  # PEM: the CA the other side's certificate must chain to
    worker_heartbeat_s: float = Field(2.0, gt=0)
    worker_heartbeat_timeout_s: float = Field(10.0, gt=0)
    worker_max_contexts: int = Field(8, ge=1, le=1000)  # browser contexts a remote worker runs at once


    @field_validator("context_memory_estimate", "log_file_max_bytes", "extraction_max_page_bytes",
                     "dashboard_screenshot_bytes_per_task", mode="before")
    @classmethod
    def _estimate(cls, v: Any) -> int:
        return parse_size(v)

    @model_validator(mode="after")
    def _worker_tls(self) -> Settings:
        if (self.worker_tls_cert is None) != (self.worker_tls_key is None):
            raise ValueError("settings.worker_tls_cert and settings.worker_tls_key go together: set both or neither")
        if self.workers == 0 and self.worker_listen is None:
            raise ValueError("settings.workers is 0 and settings.worker_listen is not set: no worker could ever "
                             "run a task")
        if self.worker_heartbeat_timeout_s <= self.worker_heartbeat_s:
            raise ValueError(f"settings.worker_heartbeat_timeout_s ({self.worker_heartbeat_timeout_s}) must be longer "
                             f"than settings.worker_heartbeat_s ({self.worker_heartbeat_s})")
        return self

    @model_validator(mode="after")
    def _chunks(self) -> Settings:
        if self.chunk_overlap_chars >= self.chunk_chars:
            raise ValueError(f"chunk_overlap_chars ({self.chunk_overlap_chars}) must be smaller than "
                             f"chunk_chars ({self.chunk_chars})")
        return self


class AllowParallelism(_Strict):
    task: bool = True
    data: bool = True
    first_of_n: bool = False


class Constraints(_Strict):
    """Limits and features, with BLAST's key names."""

    max_memory: int | None = None
    max_concurrent_browsers: int = Field(20, ge=1, le=1000)
    allow_parallelism: AllowParallelism = Field(default_factory=AllowParallelism)
    max_parallelism_nesting_depth: int = Field(1, ge=0, le=10)
    first_of_n_num_copies: int = Field(3, ge=1, le=16)
    llm_model: str = "openai:gpt-4.1"
    llm_model_mini: str = "openai:gpt-4.1-mini"
    max_cost_per_minute: float | None = Field(None, gt=0)
    max_cost_per_hour: float | None = Field(None, gt=0)
    allowed_domains: list[str] | None = None
    allow_vision: bool = False
    require_headless: bool = True
    share_browser_process: bool = True
    require_patchright: bool = False
    require_human_in_loop: bool = False

    @field_validator("max_memory", mode="before")
    @classmethod
    def _size(cls, v: Any) -> int | None:
        return None if v is None else parse_size(v)

    @field_validator("llm_model", "llm_model_mini")
    @classmethod
    def _model(cls, v: str) -> str:
        if not model_name(v):
            raise ValueError("must name a model, like 'gpt-4.1' or 'openai:gpt-4.1'")
        return v

    @field_validator("require_headless")
    @classmethod
    def _headless(cls, v: bool) -> bool:
        if not v:
            raise ValueError("only headless browsers are supported (workers have no display)")
        return v

    @field_validator("require_patchright")
    @classmethod
    def _unsupported(cls, v: bool) -> bool:
        if v:
            raise ValueError("is not supported by blast-grpc; set it to false")
        return v


class Config(_Strict):
    settings: Settings = Field(default_factory=Settings)
    constraints: Constraints = Field(default_factory=Constraints)

    def endpoint_for(self, model: str) -> Endpoint:
        """The endpoint serving ``model`` (a name as in ``llm_model``)."""
        name = model_name(model)
        eps = self.settings.llm_endpoints
        return eps.get(model) or eps.get(name) or eps.get("default") or Endpoint()

    def task_model(self, requested: str) -> str | None:
        """The configured model a ``TaskSpec.model`` names (spelled as in ``llm_model``): ``""``
        is ``llm_model``; ``llm_model`` or ``llm_model_mini``, with or without the provider
        prefix, is itself; ``None`` for any other name (only configured models have endpoints)."""
        c = self.constraints
        if not requested:
            return c.llm_model
        return next((m for m in (c.llm_model, c.llm_model_mini) if requested in (m, model_name(m))), None)

    def for_task(self, requested: str) -> Config:
        """This config with ``constraints.llm_model`` set to the model a task asked for
        (``TaskSpec.model``, already checked by the coordinator); itself when it asked for none."""
        model = self.task_model(requested)
        if model is None or model == self.constraints.llm_model:
            return self
        return self.model_copy(update={"constraints": self.constraints.model_copy(update={"llm_model": model})})

    def llm_problem(self) -> str | None:
        """Why no LLM call can succeed, or None when every model has an endpoint."""
        for key in ("llm_model", "llm_model_mini"):
            model = getattr(self.constraints, key)
            ep = self.endpoint_for(model)
            if ep.base_url is None and not os.environ.get(ep.api_key_env):
                return (
                    f"no LLM endpoint for constraints.{key}={model!r}: set {ep.api_key_env} or "
                    f"settings.llm_endpoints.{model_name(model)}.base_url "
                    "(run `make demo` to try the engine offline with the simulated model)"
                )
        return None


def model_name(model: str) -> str:
    """``'openai:gpt-4.1'`` → ``'gpt-4.1'``: BLAST's provider prefix is accepted and dropped."""
    return model.split(":", 1)[1] if ":" in model else model


def _format_error(exc: ValidationError, source: str) -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{source}: unknown key {key!r}"
    msg = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    shown = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"{source}: {key}: {msg}{shown}"


def load_config(path: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read and validate a config file (the default ``config.yaml`` when ``path`` is None;
    ``"-"`` reads it from standard input, so a config holding API keys need not be on disk).

    ``overrides`` is merged over the file, key by key, before validation.
    """
    src = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    from_stdin = path is not None and str(path) == "-"
    if from_stdin:
        src = Path("<stdin>")
    try:
        raw = yaml.safe_load(sys.stdin.read() if from_stdin else src.read_text()) if from_stdin or src.exists() else {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{src}: not valid YAML: {exc}".splitlines()[0]) from exc
    if path is not None and not from_stdin and not src.exists():
        raise ConfigError(f"{src}: config file not found")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{src}: the top level must be a mapping with 'settings' and 'constraints'")
    if overrides:
        raw = _merge(raw, overrides)
    return config_from_dict(raw, source=str(src))


def config_from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source)) from exc


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out
