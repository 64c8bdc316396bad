"""Limits, scheduling, browser-state isolation and metrics, against real processes."""

from __future__ import annotations

import asyncio
import uuid
from typing import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from blast_grpc import Client, Engine
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.demo_site.facts import GORILLAS
from blast_grpc.demo_site.server import DemoSite

from ..conftest import Sim, engine_overrides

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]


@pytest_asyncio.fixture(scope="module")
async def two_browsers(sim: Sim) -> AsyncIterator[Engine]:
    constraints = {"max_concurrent_browsers": 2, "allowed_domains": ["127.0.0.1"]}
    async with Engine.create(overrides=engine_overrides(sim, constraints)) as eng:
        yield eng


async def test_fan_out_under_two_browsers_completes_without_exceeding_them(two_browsers: Engine,
                                                                           site: DemoSite) -> None:
    c = two_browsers.client
    samples: list[int] = []
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            samples.append((await c.metrics()).concurrent_browsers)
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    try:
        task = await asyncio.wait_for(c.run(f"On {site.url}index.html find the largest gorilla in each continent"), 120)
    finally:
        done.set()
        await sampler
    assert task.state == pb.TASK_STATE_COMPLETED and task.success, task.error
    assert all(g.name in task.result for g in GORILLAS.values())
    assert len(task.subtask_ids) == len(GORILLAS) > 2
    assert samples and max(samples) <= 2, max(samples)
    assert max(samples) == 2  # the limit was used, not just respected


async def test_pages_outside_allowed_domains_are_never_loaded(two_browsers: Engine, site: DemoSite) -> None:
    c = two_browsers.client
    probe = f"asia.html?probe={uuid.uuid4().hex}"
    outside = site.url.replace("127.0.0.1", "localhost") + probe
    task = await c.run(f"Report the title of {outside}")
    assert not task.success
    events = [ev async for ev in c.watch(task.task_id)]
    refusals = [e.step.result for e in events if e.HasField("step") and "refused" in e.step.result]
    assert refusals and "allowed_domains" in refusals[0]
    assert not any(probe in path for path in site.access_log())
    inside = await c.run(f"Report the title of {site.url}asia.html")
    assert inside.success and "Asia" in inside.result


async def test_local_files_and_metadata_addresses_are_refused(two_browsers: Engine) -> None:
    c = two_browsers.client
    for target in ("file:///etc/passwd", "http://169.254.169.254/latest/meta-data/"):
        task = await c.run(f"Open {target} and report what it says")
        events = [ev async for ev in c.watch(task.task_id)]
        assert not task.success
        assert any("refused" in e.step.result for e in events if e.HasField("step")), target


async def test_tasks_share_no_cookies_unless_one_continues_the_other(client: Client, site: DemoSite) -> None:
    name = "c" + uuid.uuid4().hex[:8]
    first = await client.run(f"Report the cookies seen at {site.url}_cookies?set={name}")
    assert first.success and "none" in first.result
    fresh = await client.run(f"Report the cookies seen at {site.url}_cookies")
    assert fresh.success and name not in fresh.result and "none" in fresh.result
    follow = await client.run(f"Report the cookies seen at {site.url}_cookies", previous_task_id=first.task_id)
    assert follow.success and f"{name}=1" in follow.result
    assert follow.worker_id == first.worker_id


@pytest_asyncio.fixture(scope="module")
async def tight_memory(sim: Sim) -> AsyncIterator[Engine]:
    async with Engine.create(overrides=engine_overrides(sim, {"max_memory": "1MB"}, memory_sample_s=0.1)) as eng:
        yield eng


async def test_over_max_memory_a_second_task_waits_for_the_first(tight_memory: Engine, site: DemoSite) -> None:
    c = tight_memory.client
    first = await c.submit(f"Slowly tour Asia from {site.url}index.html")
    second = await c.submit(f"On {site.url}index.html find the largest gorilla in Europe")
    third = await c.submit(f"On {site.url}index.html find the largest gorilla in Africa")
    assert (await c.get_task(third.task_id)).queue_position == 2
    a = [ev async for ev in c.watch(first.task_id)]
    b = [ev async for ev in c.watch(second.task_id)]
    waiting = [e.waiting.reason for e in b if e.HasField("waiting")]
    assert waiting and "max_memory" in waiting[0]
    started = next(e for e in b if e.HasField("started"))
    assert started.time.ToNanoseconds() >= a[-1].time.ToNanoseconds(), "the second task started before the first ended"
    assert b[-1].HasField("completed") and GORILLAS["Europe"].name in b[-1].completed.result
    last = [ev async for ev in c.watch(third.task_id)]
    assert last[-1].HasField("completed")


async def test_prometheus_metrics_match_get_metrics(engine: Engine, client: Client, site: DemoSite) -> None:
    assert engine.metrics_url
    assert (await client.run(f"On {site.url}index.html find the largest gorilla in Asia")).state == pb.TASK_STATE_COMPLETED
    async with httpx.AsyncClient() as http:
        text = (await http.get(engine.metrics_url)).text
    grpc_m = await client.metrics()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    # Gauges say what is now; what ended is a counter (it never goes down when records are forgotten).
    assert families["blast_tasks"].type == "gauge"
    assert {s.labels["state"] for s in families["blast_tasks"].samples} == {"scheduled", "running"}
    finished = {s.labels["state"]: s.value for s in families["blast_tasks_finished"].samples}
    assert families["blast_tasks_finished"].type == "counter"
    assert grpc_m.finished.completed >= finished["completed"] > 0  # other tests' tasks may end in between
    tokens = {(s.labels["model"], s.labels["kind"]): s.value for s in families["blast_llm_tokens"].samples}
    later = {u.model: u.prompt_tokens for u in grpc_m.usage}  # read after the scrape: as many or more
    assert tokens and all(0 < n <= later[model] for (model, kind), n in tokens.items() if kind == "prompt")
    assert "blast_cost_usd" not in families and families["blast_llm_cost_usd"].type == "counter"
    ready = {s.labels["worker"]: s.value for s in families["blast_worker_ready"].samples}
    assert ready == {w.worker_id: 1.0 for w in grpc_m.workers}
    mem = families["blast_memory_usage_bytes"].samples[0].value
    assert mem > 0 and abs(mem - grpc_m.memory_usage_gb * 1024**3) < 0.5 * mem  # GetMetrics' figure is GiB
    # Histograms: every task that ran has a duration and a queue wait; every step a time.
    def count(name: str, **labels: str) -> float:
        return sum(s.value for s in families[name].samples
                   if s.name == f"{name}_count" and all(s.labels.get(k) == v for k, v in labels.items()))
    assert families["blast_task_duration_seconds"].type == "histogram"
    assert count("blast_task_duration_seconds", kind="task") >= 1
    assert count("blast_task_queue_wait_seconds", kind="task") >= 1
    assert count("blast_step_duration_seconds") >= 1 and count("blast_observation_duration_seconds") >= 1
    assert count("blast_llm_request_duration_seconds", model="gpt-4.1") >= 1
