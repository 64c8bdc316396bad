"""How long the simulated model takes: time to first token and tokens per second, per model name.

A latency file (YAML) maps model names to specs; ``default`` covers the rest::

    default: {ttft: {dist: constant, seconds: 0.05}, tokens_per_second: 200}
    gpt-4.1: {ttft: {dist: lognormal, median: 0.5, sigma: 0.4}, tokens_per_second: 80}
    gpt-4.1-mini: {ttft: {dist: constant, seconds: 0.1}, input_tokens_per_second: 20000}

``tokens_per_second: 0`` (or omitted) means the reply is generated instantly.
``input_tokens_per_second`` adds prefill time to the first token: the request's prompt
tokens (as counted in ``usage.prompt_tokens``) divided by it; 0 or omitted adds nothing.
Without a file everything is instant, which keeps tests fast. Each model has
its own RNG seeded from ``seed`` and the model name, so one model's samples do
not depend on how its requests interleave with another model's.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class LatencyError(ValueError):
    """The latency configuration is invalid; the message names the field."""


@dataclass(frozen=True)
class LatencySpec:
    """One model's latency: ``dist`` is constant (``seconds``) or lognormal (``median``, ``sigma``)."""

    dist: str = "constant"
    seconds: float = 0.0
    median: float = 0.0
    sigma: float = 0.0
    tokens_per_second: float = 0.0
    input_tokens_per_second: float = 0.0


@dataclass(frozen=True)
class Timing:
    """Sampled delays for one reply, in seconds."""

    ttft: float
    generation: float


INSTANT = LatencySpec()


def _number(value: Any, where: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise LatencyError(f"{where}: must be a number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise LatencyError(f"{where}: must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def parse_spec(raw: Any, where: str) -> LatencySpec:
    """Validate one model's entry."""
    if not isinstance(raw, dict):
        raise LatencyError(f"{where}: must be a mapping with 'ttft' and 'tokens_per_second'")
    extra = set(raw) - {"ttft", "tokens_per_second", "input_tokens_per_second"}
    if extra:
        raise LatencyError(f"{where}: unknown key {sorted(extra)[0]!r}; "
                           "allowed: ttft, tokens_per_second, input_tokens_per_second")
    tps = _number(raw.get("tokens_per_second") or 0, f"{where}.tokens_per_second")
    itps = _number(raw.get("input_tokens_per_second") or 0, f"{where}.input_tokens_per_second")
    ttft = raw.get("ttft") or {"dist": "constant", "seconds": 0}
    if not isinstance(ttft, dict):
        raise LatencyError(f"{where}.ttft: must be a mapping like {{dist: constant, seconds: 0.05}}")
    dist = ttft.get("dist", "constant")
    if dist == "constant":
        extra = set(ttft) - {"dist", "seconds"}
        if extra:
            raise LatencyError(f"{where}.ttft: unknown key {sorted(extra)[0]!r} for dist constant")
        return LatencySpec("constant", seconds=_number(ttft.get("seconds", 0), f"{where}.ttft.seconds"),
                           tokens_per_second=tps, input_tokens_per_second=itps)
    if dist == "lognormal":
        extra = set(ttft) - {"dist", "median", "sigma"}
        if extra:
            raise LatencyError(f"{where}.ttft: unknown key {sorted(extra)[0]!r} for dist lognormal")
        if "median" not in ttft:
            raise LatencyError(f"{where}.ttft.median: required for dist lognormal")
        return LatencySpec("lognormal", median=_number(ttft["median"], f"{where}.ttft.median", positive=True),
                           sigma=_number(ttft.get("sigma", 0), f"{where}.ttft.sigma"), tokens_per_second=tps,
                           input_tokens_per_second=itps)
    raise LatencyError(f"{where}.ttft.dist: must be 'constant' or 'lognormal', got {dist!r}")


class LatencyModel:
    """Samples ``Timing`` per request from per-model specs with seeded RNGs."""

    def __init__(self, specs: dict[str, LatencySpec] | None = None, seed: int = 0) -> None:
        self.specs = dict(specs or {})
        self.seed = seed
        self._rngs: dict[str, random.Random] = {}

    @classmethod
    def from_config(cls, data: Any, seed: int = 0, source: str = "latency") -> LatencyModel:
        """Build from a parsed mapping ``{model: spec, ..., default: spec}``."""
        if data is None:
            return cls(seed=seed)
        if not isinstance(data, dict):
            raise LatencyError(f"{source}: must be a mapping of model name to latency spec")
        return cls({str(k): parse_spec(v, f"{source}: {k}") for k, v in data.items()}, seed)

    @classmethod
    def from_file(cls, path: str | Path, seed: int = 0) -> LatencyModel:
        """Load a latency YAML file."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise LatencyError(f"{path}: cannot read latency file: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise LatencyError(f"{path}: not valid YAML: {exc}") from None
        return cls.from_config(data, seed, str(path))

    def spec_for(self, model: str) -> LatencySpec:
        """The model's own spec, else ``default``, else instant."""
        return self.specs.get(model) or self.specs.get("default") or INSTANT

    def sample(self, model: str, completion_tokens: int, prompt_tokens: int = 0) -> Timing:
        """Delays for one reply of ``completion_tokens`` tokens to a prompt of ``prompt_tokens``."""
        spec = self.spec_for(model)
        rng = self._rngs.get(model)
        if rng is None:
            # Seeding with a string is stable across runs (unlike hash()).
            rng = self._rngs[model] = random.Random(f"{self.seed}:{model}")
        if spec.dist == "lognormal":
            ttft = rng.lognormvariate(math.log(spec.median), spec.sigma)
        else:
            ttft = spec.seconds
        if spec.input_tokens_per_second:
            ttft += prompt_tokens / spec.input_tokens_per_second
        generation = completion_tokens / spec.tokens_per_second if spec.tokens_per_second else 0.0
        return Timing(ttft, generation)

    def models(self) -> list[str]:
        """Model names with their own spec (not ``default``)."""
        return [m for m in self.specs if m != "default"]
