"""The model endpoint misbehaves: down, stalling, 500s, garbage tool calls. Bounded retries, then a clear failure.

The strict engine has ``llm_timeout_s: 4`` and ``llm_max_retries: 1``: one model call is
tried twice, each attempt cut off after 4 s. Faults are queued in the session's simulated
model (``clean_sim`` empties the queue around each test); the first request of a task is
the planner's, the next ones the agent's.
"""

from __future__ import annotations

import socket
import time
from typing import AsyncIterator

import pytest
import pytest_asyncio

from blast_grpc import Engine
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.demo_site.facts import GORILLAS
from blast_grpc.demo_site.server import DemoSite
from blast_grpc.sim.faults import HUGE_ANSWER_BYTES

from ..conftest import Sim, engine_overrides
from .conftest import NO_HANG_S, STRICT, StrictEngine, now, wait_for, watch_all

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]

MODEL = "gpt-4.1"
TRIED = "(tried 2 times; settings.llm_max_retries = 1)"


def gorilla(site: DemoSite, continent: str) -> str:
    return f"On {site.url}index.html find the largest gorilla in {continent}"


async def run_bounded(eng: StrictEngine | Engine, task: str) -> pb.Task:
    t0 = time.monotonic()
    done = await eng.client.run(task)
    assert time.monotonic() - t0 < NO_HANG_S, f"the task took {time.monotonic() - t0:.0f}s"
    return done


async def test_a_stalled_model_call_is_cut_off_and_retried(strict: StrictEngine, clean_sim: Sim,
                                                           site: DemoSite) -> None:
    clean_sim.inject("stall", model=MODEL)
    done = await run_bounded(strict, gorilla(site, "Asia"))
    assert done.state == pb.TASK_STATE_COMPLETED and done.success, done.error
    assert GORILLAS["Asia"].name in done.result
    stats = clean_sim.stats()
    assert stats["faults_injected"] == {"stall": 1}
    # The engine hung up on the stalled request (the model is not left holding it).
    await wait_for(now(lambda: clean_sim.stats()["stalled_now"] == 0), "the stalled request to be dropped")


async def test_a_model_that_never_answers_fails_the_task_clearly(strict: StrictEngine, clean_sim: Sim) -> None:
    clean_sim.inject("stall", "stall", model=MODEL)
    done = await run_bounded(strict, "Say hello")
    assert done.state == pb.TASK_STATE_FAILED
    assert done.error == f"model {MODEL!r} did not answer within settings.llm_timeout_s = 4s {TRIED}"
    assert clean_sim.stats()["faults_injected"] == {"stall": 2}


async def test_one_http_500_is_retried(strict: StrictEngine, clean_sim: Sim, site: DemoSite) -> None:
    clean_sim.inject("http_500", model=MODEL)
    done = await run_bounded(strict, gorilla(site, "Europe"))
    assert done.state == pb.TASK_STATE_COMPLETED and done.success, done.error
    assert clean_sim.stats()["faults_injected"] == {"http_500": 1}


async def test_http_500s_after_the_retries_fail_the_task_clearly(strict: StrictEngine, clean_sim: Sim) -> None:
    clean_sim.inject("http_500", "http_500", "http_500", model=MODEL)
    done = await run_bounded(strict, "Say hello")
    assert done.state == pb.TASK_STATE_FAILED
    assert done.error.startswith(f"model {MODEL!r} answered HTTP 500: ") and done.error.endswith(TRIED), done.error
    assert "injected fault http_500" in done.error
    assert clean_sim.stats()["faults_injected"] == {"http_500": 2}  # two attempts, no more
    assert [f["kind"] for f in httpx_pending(clean_sim)] == ["http_500"]


@pytest.mark.parametrize(("fault", "problem"), [
    ("malformed_tool_json", "the arguments of done are not valid JSON"),
    ("no_tool_call", "you did not call a tool"),
])
async def test_garbage_from_the_model_again_and_again_fails_the_task(strict: StrictEngine, clean_sim: Sim,
                                                                     fault: str, problem: str) -> None:
    clean_sim.inject(fault, fault, fault)
    done = await run_bounded(strict, "Say hello")
    assert done.state == pb.TASK_STATE_FAILED
    assert done.error.startswith("the model made 3 unusable tool calls in step 1: " + problem), done.error
    assert clean_sim.stats()["faults_injected"] == {fault: 3}


async def restarts(strict: StrictEngine) -> list[int]:
    return [w.restarts for w in (await strict.client.metrics()).workers]


async def test_a_5mb_answer_fails_the_task_at_once_and_the_worker_carries_on(strict: StrictEngine, clean_sim: Sim,
                                                                            site: DemoSite) -> None:
    before = await restarts(strict)
    clean_sim.inject("huge_answer", model=MODEL)
    done = await run_bounded(strict, "Say hello")
    assert done.state == pb.TASK_STATE_FAILED
    size = int(done.error.split(" sent a ")[-1].split("-byte")[0].replace(",", ""))
    assert HUGE_ANSWER_BYTES < size < HUGE_ANSWER_BYTES + 2000, done.error  # the whole body, JSON and all
    assert done.error == (f"the model {MODEL} at {clean_sim.base_url} sent a {size:,}-byte answer; answers over "
                          "settings.llm_max_answer_bytes = 1,048,576 bytes are refused")
    stats = clean_sim.stats()
    assert stats["faults_injected"] == {"huge_answer": 1} and stats["by_kind"]["agent"] == 1, stats  # not retried
    assert len(await watch_all(strict.client, done.task_id)) < 10  # one attempt: no worker restart, no rerun
    # The worker channel survived: same worker, no restart, and the next task completes there.
    assert await restarts(strict) == before
    again = await run_bounded(strict, gorilla(site, "Asia"))
    assert again.state == pb.TASK_STATE_COMPLETED and again.success, again.error


async def test_a_non_json_answer_names_the_model_and_endpoint(strict: StrictEngine, clean_sim: Sim) -> None:
    clean_sim.inject("non_json", model=MODEL)
    done = await run_bounded(strict, "Say hello")
    assert done.state == pb.TASK_STATE_FAILED
    assert done.error.startswith(f"the model {MODEL} at {clean_sim.base_url} returned a non-JSON body (HTTP 200, "
                                 "text/html"), done.error
    assert "not a chat completion: '<!DOCTYPE html>" in done.error and "internal error" not in done.error
    assert clean_sim.stats()["requests_total"] == 1


def httpx_pending(sim: Sim) -> list[dict[str, str]]:
    import httpx

    return list(httpx.get(f"{sim.root}/sim/faults").json()["pending"])


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed when the block ends: nothing listens there


@pytest_asyncio.fixture(scope="module")
async def unreachable(sim: Sim) -> AsyncIterator[tuple[Engine, str]]:
    """An engine whose model endpoint is a closed port (one worker, no extraction readers)."""
    url = f"http://127.0.0.1:{closed_port()}/v1"
    overrides = engine_overrides(sim, {"allow_parallelism": {"data": False}}, workers=1, warm_contexts=0, **STRICT)
    overrides["settings"]["llm_endpoints"] = {"default": {"base_url": url}}
    async with Engine.create(overrides=overrides) as eng:
        yield eng, url


async def test_an_endpoint_that_is_down_fails_the_task_clearly(unreachable: tuple[Engine, str],
                                                                site: DemoSite) -> None:
    eng, url = unreachable
    done = await run_bounded(eng, gorilla(site, "Africa"))
    assert done.state == pb.TASK_STATE_FAILED
    assert done.error.startswith(f"model {MODEL!r} cannot be reached at {url}/: "), done.error
    assert done.error.endswith(TRIED)
    # The engine itself is fine: it answers, and its worker is ready for the next task.
    metrics = await eng.client.metrics()
    assert metrics.tasks.failed == 1 and [w.state for w in metrics.workers] == [pb.WORKER_STATE_READY]
