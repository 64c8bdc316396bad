"""A coordinator that dies and comes back keeps its finished tasks and accounts for the rest.

Logs are appended to, never rewritten: a client that saw seq 1..k of a task before the
kill continues with ``WatchTask(from_seq=k+1)`` and gets the task's end; a task that was
still queued runs after the restart.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import grpc
import httpx
import pytest

from blast_grpc import Engine
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.coordinator.persist import REQUEUED, RESTARTED
from blast_grpc.demo_site.facts import GORILLAS
from blast_grpc.demo_site.server import DemoSite

from ..conftest import Sim, engine_overrides

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]


async def test_tasks_survive_a_coordinator_crash(sim: Sim, site: DemoSite, tmp_path: Path) -> None:
    overrides = engine_overrides(sim, {"max_concurrent_browsers": 1}, workers=1,
                                 task_db_path=str(tmp_path / "tasks.sqlite"), gateway=True, server_port=0)
    eng = await Engine.create(overrides=overrides)
    try:
        done = await eng.client.run(f"On {site.url}index.html find the largest gorilla in Asia")
        assert done.state == pb.TASK_STATE_COMPLETED
        events_before = [ev async for ev in eng.client.watch(done.task_id)]
        slow = await eng.client.submit(f"Slowly tour Europe from {site.url}index.html")
        seen: list[pb.TaskEvent] = []
        async for ev in eng.client.watch(slow.task_id):
            seen.append(ev)
            if ev.HasField("step"):
                break
        # The only browser slot is taken: this one waits in the queue.
        queued = await eng.client.submit(f"On {site.url}index.html find the largest gorilla in Europe")
        queued_seen = await _first_events(eng, queued.task_id, 1)
        assert [e.WhichOneof("kind") for e in queued_seen] == ["scheduled"]
        os.kill(eng.proc.pid, signal.SIGKILL)  # no drain, no goodbye
        await eng.proc.wait()
    finally:
        await eng.stop()

    async with Engine.create(overrides=overrides) as again:
        c = again.client
        kept = await c.get_task(done.task_id)
        assert kept.state == pb.TASK_STATE_COMPLETED and GORILLAS["Asia"].name in kept.result
        replay = [ev async for ev in c.watch(done.task_id)]
        assert [e.SerializeToString() for e in replay] == [e.SerializeToString() for e in events_before]
        lost = await c.get_task(slow.task_id)
        assert lost.state == pb.TASK_STATE_FAILED and lost.error == RESTARTED
        # The log was kept and the end appended: from_seq = last seen + 1 gives it.
        k = seen[-1].seq
        rest = [ev async for ev in c.watch(slow.task_id, from_seq=k + 1)]
        assert rest[0].seq == k + 1
        assert rest[-1].HasField("failed") and rest[-1].failed.error == RESTARTED
        whole = [ev async for ev in c.watch(slow.task_id)]
        assert [e.SerializeToString() for e in whole[:k]] == [e.SerializeToString() for e in seen]
        # The queued task was queued again and runs; its watcher continues its log.
        after = [ev async for ev in c.watch(queued.task_id, from_seq=2)]
        kinds = [e.WhichOneof("kind") for e in after]
        assert after[0].seq == 2 and after[0].waiting.reason == REQUEUED, after[0]
        assert kinds[1:3] == ["scheduled", "started"], kinds
        assert after[-1].HasField("completed") and GORILLAS["Europe"].name in after[-1].completed.result
        assert {t.task_id for t in await c.list_tasks()} >= {done.task_id, slow.task_id}
        assert again.gateway_url
        async with httpx.AsyncClient(base_url=again.gateway_url, timeout=10) as http:
            body = (await http.get(f"/v1/responses/resp_{done.task_id}")).json()
        assert body["status"] == "completed" and GORILLAS["Asia"].name in str(body["output"])
        # and the engine works as before
        fresh = await asyncio.wait_for(c.run(f"On {site.url}index.html find the largest gorilla in Africa"), 60)
        assert fresh.state == pb.TASK_STATE_COMPLETED


async def _first_events(eng: Engine, task_id: str, n: int) -> list[pb.TaskEvent]:
    out: list[pb.TaskEvent] = []
    async for ev in eng.client.watch(task_id):
        out.append(ev)
        if len(out) == n:
            break
    return out


async def test_finished_tasks_are_forgotten_after_the_retention_time(sim: Sim, tmp_path: Path) -> None:
    overrides = engine_overrides(sim, workers=1, task_db_path=str(tmp_path / "tasks.sqlite"), task_retention_s=1)
    async with Engine.create(overrides=overrides) as eng:
        done = await eng.client.run("say hello")
        assert done.state == pb.TASK_STATE_COMPLETED

        async def forgotten() -> bool:
            try:
                await eng.client.get_task(done.task_id)
            except grpc.aio.AioRpcError as exc:
                return exc.code() == grpc.StatusCode.NOT_FOUND
            return False

        deadline = asyncio.get_running_loop().time() + 90  # generous: the check runs every second
        while not await forgotten():
            assert asyncio.get_running_loop().time() < deadline, "the finished task was never forgotten"
            await asyncio.sleep(0.2)
    async with Engine.create(overrides=overrides) as again:  # and it is gone from the database too
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await again.client.get_task(done.task_id)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
