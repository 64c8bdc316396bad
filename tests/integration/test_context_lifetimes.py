"""Browser contexts do not pile up: many short tasks leave Chromium's processes and the open
contexts flat, kept contexts are bounded (``max_kept_contexts``) and every open context is counted.

Two private engines (their settings differ from the session engine's): one that closes every
finished task's context at once (``context_keep_alive_s: 0``), one that keeps at most three per
worker. Each runs a warm-up batch, notes the count of Chromium processes once the workers are idle,
runs several times more tasks the same way and checks the count came back to at most that.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

import httpx
import psutil
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from blast_grpc import Client, Engine
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.demo_site.server import DemoSite

from ..conftest import Sim, engine_overrides
from ..faults.conftest import wait_for

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]

PARALLEL = 16
WARM_UP = 32
MORE = 128  # with the clean-up bug about one context in three stayed open: ~40 more renderers
SETTLE_S = 120.0  # generous: renderers of closed contexts exit on their own, on a loaded machine


def chromium_processes(engine: Engine) -> list[psutil.Process]:
    """Every live Chromium process (browser, zygotes, renderers, helpers) under the engine."""
    out = []
    with contextlib.suppress(psutil.Error):
        for p in psutil.Process(engine.proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "chrom" in p.name() and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
    return out


async def run_batch(c: Client, site: DemoSite, n: int) -> None:
    gate = asyncio.Semaphore(PARALLEL)

    async def one(i: int) -> None:
        async with gate:
            task = await c.run(f"Report the title of {site.url}{('asia', 'europe', 'africa')[i % 3]}.html")
            assert task.state == pb.TASK_STATE_COMPLETED and task.success, (task.error, task.result)

    await asyncio.gather(*(one(i) for i in range(n)))


async def idle_workers(c: Client, warm: int, kept_max: int) -> pb.GetMetricsResponse | None:
    """The metrics once no task holds a context and every worker has refilled its warm ones."""
    m = await c.metrics()
    if m.tasks.running or m.queued or m.concurrent_browsers:
        return None
    if not all(w.state == pb.WORKER_STATE_READY and not w.status_problem and w.warm_contexts == warm
               and w.kept_contexts <= kept_max for w in m.workers):
        return None
    # Chromium's own count of open contexts: each is a task's, a warm or a kept one (no leak).
    if m.open_contexts != sum(len(w.open_contexts) + w.warm_contexts + w.kept_contexts for w in m.workers):
        return None
    return m


@pytest_asyncio.fixture(scope="module")
async def closing(sim: Sim) -> AsyncIterator[Engine]:
    overrides = engine_overrides(sim, {"allow_parallelism": {"data": False}}, context_keep_alive_s=0,
                                 warm_contexts=1, warm_contexts_max=1, planner=False)  # counted exactly
    async with Engine.create(overrides=overrides) as eng:
        yield eng


@pytest.mark.timeout(600)
async def test_with_keep_alive_zero_every_finished_context_is_closed(closing: Engine, site: DemoSite) -> None:
    c = closing.client
    await run_batch(c, site, WARM_UP)
    await wait_for(lambda: idle_workers(c, warm=1, kept_max=0), "idle workers after the warm-up", SETTLE_S)
    baseline = len(chromium_processes(closing))

    await run_batch(c, site, MORE)
    m = await wait_for(lambda: idle_workers(c, warm=1, kept_max=0), "idle workers after the tasks", SETTLE_S)
    assert m.tasks.completed >= WARM_UP + MORE
    assert m.open_contexts == len(m.workers)  # one warm context each, nothing else
    assert all(w.kept_contexts == 0 and not w.open_contexts for w in m.workers)

    async def flat() -> bool:
        return len(chromium_processes(closing)) <= baseline

    await wait_for(flat, f"Chromium's process count to come back to {baseline} "
                         f"(now {len(chromium_processes(closing))})", SETTLE_S, interval=0.5)


@pytest_asyncio.fixture(scope="module")
async def keeping(sim: Sim) -> AsyncIterator[Engine]:
    overrides = engine_overrides(sim, {"allow_parallelism": {"data": False}}, workers=1, context_keep_alive_s=600,
                                 max_kept_contexts=3, warm_contexts=1, warm_contexts_max=1, planner=False)
    async with Engine.create(overrides=overrides) as eng:
        yield eng


@pytest.mark.timeout(600)
async def test_kept_contexts_are_bounded_least_recently_kept_first_and_counted(keeping: Engine,
                                                                              site: DemoSite) -> None:
    c = keeping.client
    await run_batch(c, site, WARM_UP)
    m = await wait_for(lambda: idle_workers(c, warm=1, kept_max=3), "an idle worker after the warm-up", SETTLE_S)
    assert m.workers[0].kept_contexts == 3  # the bound is reached, not just respected
    baseline = len(chromium_processes(keeping))

    await run_batch(c, site, MORE // 2)
    m = await wait_for(lambda: idle_workers(c, warm=1, kept_max=3), "an idle worker after the tasks", SETTLE_S)
    (w,) = m.workers
    assert w.kept_contexts == 3 and w.warm_contexts == 1
    assert m.open_contexts == 4 and (await c.get_metrics())["open_contexts"] == 4

    assert keeping.metrics_url
    async with httpx.AsyncClient() as http:
        text = (await http.get(keeping.metrics_url)).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    kinds = {s.labels["kind"]: s.value for s in families["blast_worker_contexts"].samples}
    assert kinds == {"task": 0, "warm": 1, "kept": 3}
    assert families["blast_open_contexts"].samples[0].value == 4

    async def flat() -> bool:
        return len(chromium_processes(keeping)) <= baseline

    await wait_for(flat, f"Chromium's process count to come back to {baseline} "
                         f"(now {len(chromium_processes(keeping))})", SETTLE_S, interval=0.5)

    # The three most recent tasks are kept: a follow-up to one continues in its context (its
    # cookie is there); a follow-up to an evicted one starts fresh.
    first = await c.run(f"Report the cookies seen at {site.url}_cookies?set=evicted")
    recent = await c.run(f"Report the cookies seen at {site.url}_cookies?set=kept")
    await run_batch(c, site, 2)  # three kept now: recent and these two; first was evicted
    follow_recent = await c.run(f"Report the cookies seen at {site.url}_cookies", previous_task_id=recent.task_id)
    assert follow_recent.success and "kept=1" in follow_recent.result, follow_recent.result
    follow_first = await c.run(f"Report the cookies seen at {site.url}_cookies", previous_task_id=first.task_id)
    assert follow_first.success and "evicted=1" not in follow_first.result, follow_first.result
