"""Workload 3: first-of-N races with lognormal step latency.

A top-level task runs as N racing copies (``allow_parallelism.first_of_n``,
``first_of_n_num_copies = N``). Each copy opens an item chain of 2 pages and needs 2
model calls (click Next, then done); the planner is off, so a copy's model time is the
sum of 2 lognormal draws (median ``median_s``, ``sigma``) and the race ends with the
fastest copy. Ideal: the distribution of that minimum, by Monte Carlo from the same
latency model (same spec and draw function as the simulated model). Races run one at a
time, ``pause_s`` apart; p50 and p95 of the task latency (submit → answer received) are
compared with the ideal's.

After each race, the losing copies are cancelled; their contexts count as released when
they leave every worker's open contexts (polled every few ms through the workers'
``GetStatus``, the source of ``GetMetrics.workers[].open_contexts``), measured from the
race's ``completed`` event. A context already gone at the first poll counts with the
first poll's time (an upper bound).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Any

import grpc

from ..._proto.blast.worker.v1 import worker_pb2 as wpb
from ..._proto.blast.worker.v1 import worker_pb2_grpc as wgrpc
from ...engine import Engine
from ..context import BenchContext, lognormal
from ..results import Row, WorkloadResult
from ..stats import median, min_of_n_samples, percentile
from ..trace import Trace, ev_time, run_traced

NAME = "first_of_n"
STEPS = 2  # model calls per copy


@dataclass
class Params:
    ns: list[int]
    tasks: int
    median_s: float = 0.3
    sigma: float = 0.5
    mc_samples: int = 20_000
    release_timeout_s: float = 10.0
    pause_s: float = 0.5  # between races, so the warm contexts a race used are replaced

    @classmethod
    def for_mode(cls, quick: bool) -> Params:
        if quick:
            return cls(ns=[2], tasks=3, mc_samples=2000)
        return cls(ns=[1, 2, 3, 5], tasks=12)


class WorkerWatch:
    """Direct ``GetStatus`` calls to each worker: which task contexts are open right now."""

    def __init__(self, addresses: list[str]) -> None:
        self._channels = [grpc.aio.insecure_channel(a) for a in addresses]
        self._stubs = [wgrpc.WorkerServiceStub(c) for c in self._channels]

    @classmethod
    async def of(cls, eng: Engine) -> WorkerWatch:
        m = await eng.client.metrics()
        return cls([w.address for w in m.workers if w.address])

    async def open_contexts(self) -> set[str]:
        replies = await asyncio.gather(*(s.GetStatus(wpb.GetStatusRequest(), timeout=2) for s in self._stubs),
                                       return_exceptions=True)
        out: set[str] = set()
        for r in replies:
            if isinstance(r, wpb.GetStatusResponse):
                out.update(r.open_contexts)
        return out

    async def wait_closed(self, ids: set[str], timeout: float, poll_s: float = 0.005) -> float | None:
        """Wall time at which none of ``ids`` is open any more (None on timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not (await self.open_contexts()) & ids:
                return time.time()
            await asyncio.sleep(poll_s)
        return None

    async def close(self) -> None:
        for c in self._channels:
            await c.close()


async def _race(ctx: BenchContext, eng: Engine, watch: WorkerWatch, item: int,
                timeout: float) -> dict[str, Any]:
    url = ctx.url(ctx.pages.chain_start(STEPS, item))
    trace: Trace = await run_traced(eng.client, f"On {url} find the code of item {item}", initial_url=url)
    out: dict[str, Any] = {"latency_s": trace.latency(), "engine_span_s": trace.engine_span(),
                           "ok": trace.ok, "error": trace.error}
    end = trace.end
    if end is None or not trace.root:
        return out
    task = await eng.client.get_task(trace.root)
    losers = {t for t in task.subtask_ids if t != task.winner_task_id}
    if losers:
        closed = await watch.wait_closed(losers, timeout)
        out["release_s"] = None if closed is None else closed - ev_time(end)
        out["losers"] = len(losers)
    return out


async def run(ctx: BenchContext) -> WorkloadResult:
    p = Params.for_mode(ctx.quick)
    res = WorkloadResult(NAME)
    res.series["params"] = asdict(p)
    runs: dict[int, list[dict[str, Any]]] = {}
    with ctx.sim(NAME, {"bench-race": lognormal(p.median_s, p.sigma)}) as sim:
        for n in p.ns:
            constraints = {"allow_parallelism": {"task": False, "data": False, "first_of_n": n > 1},
                           "first_of_n_num_copies": n}
            async with ctx.engine(sim, model="bench-race", planner=False, constraints=constraints) as eng:
                watch = await WorkerWatch.of(eng)
                try:
                    await _race(ctx, eng, watch, 1, p.release_timeout_s)  # warm-up
                    runs[n] = []
                    for i in range(p.tasks):
                        await asyncio.sleep(p.pause_s)
                        runs[n].append(await _race(ctx, eng, watch, 1 + i % 16, p.release_timeout_s))
                finally:
                    await watch.close()
    res.series["runs"] = {str(n): r for n, r in runs.items()}
    cdfs: dict[str, Any] = {}
    for n, rs in runs.items():
        ideal = min_of_n_samples(n, STEPS, p.median_s, p.sigma, 0.0, p.mc_samples, ctx.seed)
        ok = [r["latency_s"] for r in rs if r["ok"]]
        failed = len(rs) - len(ok)
        note = f"{failed} of {len(rs)} failed: {next(r['error'] for r in rs if not r['ok'])}" if failed else ""
        params = {"N": n, "tasks": len(rs), "steps": STEPS, "median": f"{p.median_s:g}s", "sigma": p.sigma}
        for q in (50, 95):
            res.rows.append(Row(NAME, f"task latency p{q}", params, percentile(ok, q) if ok else None,
                                percentile(ideal, q), "s", note=note))
        rel = [r["release_s"] for r in rs if r.get("release_s") is not None]
        if n > 1:
            missing = sum(1 for r in rs if r.get("losers") and r.get("release_s") is None)
            rnote = f"{missing} races whose losers kept a context > {p.release_timeout_s:g}s" if missing else \
                f"{sum(r.get('losers', 0) for r in rs)} cancelled copies"
            res.rows.append(Row(NAME, "cancelled copies: contexts released after the win, p50", {"N": n},
                                median(rel) * 1000 if rel else None, None, "ms", note=rnote))
            res.rows.append(Row(NAME, "cancelled copies: contexts released after the win, max", {"N": n},
                                max(rel) * 1000 if rel else None, None, "ms"))
        cdfs[str(n)] = {"measured": sorted(ok), "ideal": sorted(ideal[:: max(1, len(ideal) // 500)])}
    res.series["cdf"] = cdfs
    return res
