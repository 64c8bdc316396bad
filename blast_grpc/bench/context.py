"""What every workload gets: the seed, quick or full mode, a work directory and the site.

``BenchContext.sim(...)`` starts a simulated model with a workload's own latency
models; ``BenchContext.engine(...)`` starts an engine pointed at it. Both are
context managers, so everything a workload starts is stopped when it leaves.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

from ..config import Settings
from ..engine import Engine
from .servers import SimProcess, TimedSite
from .sitegen import BenchSite
from .trace import engine_overrides


@dataclass
class BenchContext:
    seed: int
    quick: bool
    workdir: Path
    site: TimedSite
    pages: BenchSite
    log_dir: Path | None = None  # engine and sim stderr go here (else: inherited)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def url(self, path: str) -> str:
        """The absolute URL of a generated page."""
        return self.site.url + path

    @contextlib.contextmanager
    def sim(self, name: str, latency: dict[str, Any], scenario_dirs: list[Path] | None = None,
            policies: list[str] | None = None) -> Iterator[SimProcess]:
        """A simulated model with ``latency`` (model name → spec), seeded with the run's seed
        (the bench scenarios unless ``scenario_dirs``; scripted ``policies`` by name)."""
        with SimProcess(self.workdir / "sim", latency, self.seed, scenario_dirs=scenario_dirs, name=name,
                        log=self._log_file(name), policies=policies) as sim:
            yield sim

    def _log_file(self, name: str) -> Path | None:
        if self.log_dir is None:
            return None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self.log_dir / f"{name}.log"

    @contextlib.asynccontextmanager
    async def engine(self, sim: SimProcess, *, model: str, mini: str = "bench-mini",
                     constraints: dict[str, Any] | None = None, **settings: Any) -> AsyncIterator[Engine]:
        """An engine (coordinator + workers + Chromium) whose models are served by ``sim``.

        The engine starts from the defaults plus these overrides (never the repository's
        ``config.yaml``). Caching is off (when this engine has the cache keys) unless
        ``settings`` say otherwise, so repeated tasks really run; the cache file lives in
        the work dir.
        The engine's stderr goes to the log directory, if there is one.
        """
        n = next(self._ids)
        defaults = {"cache_results": False, "cache_plans": False,
                    "cache_path": str(self.workdir / f"cache-{n}" / "cache.sqlite")}
        for key, value in defaults.items():
            if key in Settings.model_fields and key not in settings:
                settings[key] = value
        overrides = engine_overrides(sim.base_url, model=model, mini=mini, constraints=constraints, **settings)
        log = self._log_file(f"engine-{sim.name}")
        base = self.workdir / "engine-base.yaml"  # defaults only: the repository's config.yaml is not read
        base.write_text("{}\n", encoding="utf-8")
        with _stderr_to(log):  # the engine's processes inherit the bench's stderr at spawn
            eng = await Engine.create(str(base), overrides=overrides, timeout=180)
        async with eng:
            yield eng


@contextlib.contextmanager
def _stderr_to(path: Path | None) -> Iterator[None]:
    """Point file descriptor 2 at ``path`` (appending) for the block; a no-op for None."""
    if path is None:
        yield
        return
    saved = os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)


def constant(seconds: float) -> dict[str, Any]:
    """A latency spec: every reply takes ``seconds`` before its first token, then arrives at once."""
    return {"ttft": {"dist": "constant", "seconds": round(float(seconds), 6)}}


def lognormal(median: float, sigma: float) -> dict[str, Any]:
    return {"ttft": {"dist": "lognormal", "median": float(median), "sigma": float(sigma)}}
