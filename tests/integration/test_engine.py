"""The engine end to end: real coordinator, real workers, real Chromium, simulated model."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from blast_grpc import Client, Engine
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.demo_site.facts import ARTICLE_CODE, GORILLAS, order_code
from blast_grpc.demo_site.server import DemoSite

from ..conftest import Sim, engine_overrides

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]


def kinds(events: list[pb.TaskEvent]) -> list[str]:
    return [str(e.WhichOneof("kind")) for e in events]


async def test_task_reads_the_answer_from_the_page(client: Client, site: DemoSite) -> None:
    events = [ev async for ev in client.run(f"On {site.url}index.html find the largest gorilla in Asia", stream=True)]
    k = kinds(events)
    assert k[:3] == ["scheduled", "started", "plan"] and k[-1] == "completed", k
    assert set(k[3:-1]) == {"step"}, k
    assert events[2].plan.text  # the planner wrote something
    seqs = [e.seq for e in events]
    assert seqs == list(range(1, len(events) + 1))
    assert all(e.task_id == events[0].task_id for e in events)
    done = events[-1].completed
    assert done.success and GORILLAS["Asia"].name in done.result
    # the agent visited the continent page, and the record agrees with the stream
    assert any("asia.html" in e.step.url for e in events if e.HasField("step"))
    task = await client.get_task(events[0].task_id)
    assert task.state == pb.TASK_STATE_COMPLETED and task.result == done.result
    assert task.last_seq == len(events) and task.steps == len(k) - 4
    assert any(u.requests > 0 and u.prompt_tokens > 0 for u in task.usage)


async def test_long_page_is_read_with_extract_content(client: Client, site: DemoSite) -> None:
    task = await client.run(f"Find the secret river code in the article at {site.url}article.html")
    assert task.state == pb.TASK_STATE_COMPLETED, task.error
    assert ARTICLE_CODE in task.result


async def test_form_is_filled_and_submitted(client: Client, site: DemoSite) -> None:
    task = await client.run(f'Place an order for item "teapot" in size large at {site.url}form.html '
                            "and report the confirmation code")
    assert task.state == pb.TASK_STATE_COMPLETED and task.success, (task.error, task.result)
    assert f"confirmation code {order_code('teapot', 'large')}" in task.result


async def test_watcher_resumes_without_losing_or_repeating_events(client: Client, site: DemoSite) -> None:
    task = await client.submit(f"Slowly tour Europe from {site.url}index.html")
    first: list[pb.TaskEvent] = []
    async for ev in client.watch(task.task_id):
        first.append(ev)
        if ev.HasField("step"):
            break  # disconnect mid-task
    assert not (await client.get_task(task.task_id)).state == pb.TASK_STATE_COMPLETED
    rest = [ev async for ev in client.watch(task.task_id, from_seq=first[-1].seq + 1)]
    seen = [e.seq for e in first + rest]
    assert seen == list(range(1, len(seen) + 1)), seen
    assert rest[-1].HasField("completed")
    everything = [ev async for ev in client.watch(task.task_id, from_seq=1)]
    assert [e.SerializeToString() for e in everything] == [e.SerializeToString() for e in first + rest]


async def _wait_for(predicate, timeout: float, interval: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(interval)
    return await predicate()


async def test_cancel_during_a_step_closes_the_context(client: Client, site: DemoSite) -> None:
    task = await client.submit(f"Slowly tour Africa from {site.url}index.html")
    async for ev in client.watch(task.task_id):
        if ev.HasField("step"):
            break

    async def context_open() -> bool:
        m = await client.metrics()
        return any(task.task_id in w.open_contexts for w in m.workers)

    assert await context_open()
    # How fast a cancel frees the context is measured in `make bench` (first_of_n: "contexts
    # released after the win"); here only that it happens.
    cancelled = await client.cancel(task.task_id, "test says stop")
    assert cancelled.state == pb.TASK_STATE_CANCELLED and cancelled.error == "test says stop"
    assert await _wait_for(lambda: _negate(context_open), 2.0), "the context stayed open"
    last = [ev async for ev in client.watch(task.task_id, from_seq=cancelled.last_seq)]
    assert last[-1].HasField("cancelled")


async def _negate(fn):  # type: ignore[no-untyped-def]
    return not await fn()


async def test_bad_requests_get_clear_statuses(client: Client) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await client.submit("   ")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "description" in (e.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await client.submit("x" * 1_000_001)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "max_task_chars" in (e.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await client.submit("find it", initial_url="file:///etc/passwd")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "initial_url" in (e.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await client.get_task("task_nope")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as e:
        _ = [ev async for ev in client.watch("task_nope")]
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    done = await client.run("sim task that matches no scenario at all")
    assert done.state == pb.TASK_STATE_COMPLETED and not done.success
    with pytest.raises(grpc.aio.AioRpcError) as e:
        _ = [ev async for ev in client.watch(done.task_id, from_seq=-3)]
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as e:
        _ = [ev async for ev in client.watch(done.task_id, from_seq=done.last_seq + 5)]
    assert e.value.code() == grpc.StatusCode.OUT_OF_RANGE
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await client.cancel(done.task_id)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # and the engine still serves
    assert (await client.get_metrics())["tasks"]["completed"] >= 1


async def test_model_faults_are_retried_and_corrected(client: Client, site: DemoSite, sim: Sim) -> None:
    before = sim.stats()
    sim.inject("http_429", "malformed_tool_json")
    task = await client.run(f"On {site.url}index.html find the largest gorilla in Oceania")
    assert task.state == pb.TASK_STATE_COMPLETED and task.success, task.error
    assert GORILLAS["Oceania"].name in task.result
    after = sim.stats()
    for kind in ("http_429", "malformed_tool_json"):
        assert after["faults_injected"].get(kind, 0) - before["faults_injected"].get(kind, 0) == 1, kind


async def test_killed_worker_is_replaced_and_its_task_retried(sim: Sim, site: DemoSite) -> None:
    import os
    import signal

    async with Engine.create(overrides=engine_overrides(sim)) as eng:
        c = eng.client
        task = await c.submit(f"Slowly tour Oceania from {site.url}index.html")
        worker_id = ""
        async for ev in c.watch(task.task_id):
            if ev.HasField("started"):
                worker_id = ev.started.worker_id
            if ev.HasField("step"):
                break
        m = await c.metrics()
        victim = next(w for w in m.workers if w.worker_id == worker_id)
        os.kill(victim.pid, signal.SIGKILL)
        t0 = time.monotonic()
        events = [ev async for ev in c.watch(task.task_id)]
        assert time.monotonic() - t0 < 10
        final = await c.get_task(task.task_id)
        waiting = [e.waiting.reason for e in events if e.HasField("waiting")]
        assert waiting and "died" in waiting[0] and worker_id in waiting[0], (final, [str(e) for e in events[-3:]])
        starts = [e.started.worker_id for e in events if e.HasField("started")]
        assert len(starts) == 2 and starts[1] != worker_id
        assert final.state == pb.TASK_STATE_COMPLETED and final.attempts == 2

        async def pool_full():  # type: ignore[no-untyped-def]
            ws = (await c.metrics()).workers
            return len(ws) == 2 and all(w.state == pb.WORKER_STATE_READY for w in ws) and ws

        workers = await _wait_for(pool_full, 15)
        assert workers, "the pool did not return to 2 ready workers"
        assert {w.worker_id: w.restarts for w in workers}[worker_id] == 1
        assert next(w for w in workers if w.worker_id == worker_id).pid != victim.pid
    assert eng.proc.returncode == 0
