"""What LLM calls cost, and holding new calls back while over ``max_cost_per_minute/hour``.

Each limit is a token bucket: it holds at most the limit and refills at the limit's
rate (limit/60 per second, or limit/3600). Every call's cost, priced from
``settings.model_prices`` when its usage arrives, is taken out; a new call may start
only while every bucket is above zero. So spending averages at most the limit per
minute (or hour), a burst may spend up to one full limit, and a call that overdraws
makes the next ones wait until the overdraft is paid back::

    level ▲ limit ─────╮      ╭──────
          │            ╰╮    ╱ refill at limit/60 per second
        0 ┼─────────────┼──╱──────────  calls wait while level <= 0
          │             ╰╱  (a call's cost is taken when its usage arrives)
"""

from __future__ import annotations

import logging
import time

from .._proto.blast.v1 import blast_pb2 as pb
from ..config import Config, model_name

log = logging.getLogger("blast_grpc.budget")


class _Bucket:
    def __init__(self, limit: float, period_s: float, name: str) -> None:
        self.limit, self.rate, self.name = limit, limit / period_s, name
        self.level, self.t = limit, time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.limit, self.level + (now - self.t) * self.rate)
        self.t = now

    def charge(self, cost: float) -> None:
        self._refill()
        self.level -= cost

    def wait_s(self) -> float:
        self._refill()
        return 0.0 if self.level > 0 else (-self.level / self.rate) + 0.01


class Budget:
    def __init__(self, config: Config) -> None:
        c, s = config.constraints, config.settings
        self.prices = {model_name(k): v for k, v in s.model_prices.items()}
        self._buckets = []
        if c.max_cost_per_minute is not None:
            self._buckets.append(_Bucket(c.max_cost_per_minute, 60.0, "constraints.max_cost_per_minute"))
        if c.max_cost_per_hour is not None:
            self._buckets.append(_Bucket(c.max_cost_per_hour, 3600.0, "constraints.max_cost_per_hour"))
        self._unpriced: set[str] = set()
        self.spent = 0.0

    def price(self, u: pb.Usage) -> float:
        """The cost of ``u`` in USD (0 for a model with no price, logged once)."""
        p = self.prices.get(model_name(u.model))
        if p is None:
            if u.model not in self._unpriced:
                self._unpriced.add(u.model)
                log.warning("no price for model %r in settings.model_prices: its calls count as free", u.model)
            return 0.0
        return (u.prompt_tokens * p.input_per_1m + u.completion_tokens * p.output_per_1m) / 1e6

    def charge(self, cost: float) -> None:
        self.spent += cost
        for b in self._buckets:
            b.charge(cost)

    def wait(self) -> tuple[float, str]:
        """How long a new call must wait now, and which limit holds it (0 and '' when none)."""
        waits = [(b.wait_s(), b.name) for b in self._buckets]
        return max(waits, default=(0.0, ""))
