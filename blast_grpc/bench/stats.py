"""Small statistics: percentiles, the ideal first-of-N distribution, a least-squares line."""

from __future__ import annotations

import math
import random
from typing import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation; NaN for no values."""
    xs = sorted(values)
    if not xs:
        return math.nan
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def lognormal_draw(rng: random.Random, median_s: float, sigma: float) -> float:
    """One draw as the simulated model makes it (``lognormvariate(log(median), sigma)``)."""
    return rng.lognormvariate(math.log(median_s), sigma)


def min_of_n_samples(n: int, calls_per_copy: int, median_s: float, sigma: float, fixed_s: float,
                     samples: int, seed: int) -> list[float]:
    """Monte Carlo of the ideal first-of-N latency.

    Each copy makes ``calls_per_copy`` model calls, each a lognormal draw from the same
    spec as the simulated model's; a copy's time is their sum plus ``fixed_s`` (other
    model calls of constant latency); the race ends when the fastest copy ends.
    """
    rng = random.Random(f"{seed}:min-of-{n}")
    out = []
    for _ in range(samples):
        best = min(sum(lognormal_draw(rng, median_s, sigma) for _ in range(calls_per_copy)) for _ in range(n))
        out.append(best + fixed_s)
    return out


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least squares ``y = a + b·x``; returns ``(a, b)`` (``b`` NaN with fewer than two distinct x)."""
    n = len(xs)
    if n == 0:
        return math.nan, math.nan
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return my, math.nan
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - b * mx, b


def cdf_points(values: Sequence[float]) -> tuple[list[float], list[float]]:
    """Sorted values and their empirical CDF levels, for plotting."""
    xs = sorted(values)
    n = len(xs)
    return xs, [(i + 1) / n for i in range(n)]
