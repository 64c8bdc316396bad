"""The metrics panel's history and its small plots (server-rendered SVG sparklines).

``Sampler`` asks the coordinator for ``GetMetrics`` every ``interval_s`` while someone
looks at the panel (a panel request in the last ``IDLE_AFTER_S``; otherwise it waits, so
an unwatched dashboard costs the engine nothing) and keeps the last ``size`` samples.
Rates come from differences of the engine's counters between samples: cost per minute
from ``total_cost_usd``, mean step latency from ``step_seconds`` / ``steps``.
The sampler's loop is owned by the app's lifespan (``app.py``), which cancels it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

import grpc
from markupsafe import Markup

from blast_grpc._proto.blast.v1 import blast_pb2 as pb

log = logging.getLogger("gateway.dashboard")

IDLE_AFTER_S = 60.0


@dataclass
class Sample:
    t: float
    running: int
    queued: int
    browsers: int
    memory_gb: float
    cost_usd: float
    steps: int
    step_seconds: float


@dataclass
class Series:
    """One plot: its label, unit, latest value and points (oldest first)."""

    key: str
    label: str
    unit: str
    values: list[float]

    @property
    def latest(self) -> str:
        if not self.values:
            return "–"
        v = self.values[-1]
        return f"{v:.0f}" if self.unit == "" else f"{v:.3g} {self.unit}"

    def svg(self, width: int = 180, height: int = 36) -> Markup:
        return sparkline(self.values, width, height, self.label)


def sparkline(values: list[float], width: int, height: int, title: str) -> Markup:
    """A polyline of ``values`` scaled to the box (0 at the bottom); an empty box without points."""
    pad = 2
    top = max(values, default=0.0) or 1.0
    n = len(values)
    points = " ".join(
        f"{pad + (i * (width - 2 * pad) / max(n - 1, 1)):.1f},{height - pad - v / top * (height - 2 * pad):.1f}"
        for i, v in enumerate(values))
    line = f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{points}"/>' if n else ""
    return Markup(f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
                  f'role="img"><title>{Markup.escape(title)}</title>{line}</svg>')


def series(samples: list[Sample]) -> list[Series]:
    """The panel's plots from the samples (rates need two samples)."""
    pairs = list(zip(samples, samples[1:], strict=False))
    cost_per_min = [max(0.0, (b.cost_usd - a.cost_usd) / max(b.t - a.t, 1e-6) * 60) for a, b in pairs]
    latency: list[float] = []
    for a, b in pairs:  # between samples without a step the last latency holds (no step, no news)
        latency.append((b.step_seconds - a.step_seconds) / (b.steps - a.steps) if b.steps > a.steps
                       else latency[-1] if latency else 0.0)
    return [
        Series("running", "running tasks", "", [s.running for s in samples]),
        Series("queued", "queued tasks", "", [s.queued for s in samples]),
        Series("browsers", "browsers (task contexts)", "", [s.browsers for s in samples]),
        Series("memory", "memory", "GB", [s.memory_gb for s in samples]),
        Series("cost", "cost per minute", "$/min", cost_per_min),
        Series("latency", "step latency", "s", latency),
    ]


class Sampler:
    def __init__(self, fetch: Callable[[], Awaitable[pb.GetMetricsResponse]], interval_s: float = 2.0,
                 size: int = 90) -> None:
        self.fetch = fetch
        self.interval_s = interval_s
        self.samples: collections.deque[Sample] = collections.deque(maxlen=size)
        self.problem = ""  # why the last sample failed ("" when it did not)
        self._last_view = 0.0
        self._viewed = asyncio.Event()

    def viewed(self) -> None:
        """Someone looks at the panel: keep (or start) sampling."""
        self._last_view = time.monotonic()
        self._viewed.set()

    async def sample(self) -> None:
        try:
            m = await self.fetch()
        except grpc.aio.AioRpcError as exc:
            self.problem = f"the engine did not answer GetMetrics: {exc.code().name}: {exc.details()}"
            return
        self.problem = ""
        self.samples.append(Sample(time.monotonic(), m.tasks.running, m.queued, m.concurrent_browsers,
                                   m.memory_usage_gb, m.total_cost_usd, m.steps, m.step_seconds))

    async def run(self) -> None:
        while True:
            if time.monotonic() - self._last_view > IDLE_AFTER_S:
                self._viewed.clear()
                await self._viewed.wait()
            await self.sample()
            await asyncio.sleep(self.interval_s)
