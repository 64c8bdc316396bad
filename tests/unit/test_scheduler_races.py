"""The engine's core without browsers: queue, dispatch, worker death, cancellation, first-of-N
races and the one finished path (``TaskStore.finish``), against fake workers (``fakes.py``).

The scheduler, launcher, store and budget are the real ones; only the workers' gRPC stubs
are stand-ins, so each test runs in milliseconds and waits on events, never on time.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator

import pytest

from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc._proto.blast.worker.v1 import worker_pb2 as wpb
from blast_grpc.config import config_from_dict
from blast_grpc.coordinator.budget import Budget
from blast_grpc.coordinator.launch import Launcher
from blast_grpc.coordinator.scheduler import Scheduler
from blast_grpc.coordinator.tasks import TaskRecord, TaskStore
from blast_grpc.supervise import TaskSet

from .fakes import FakeWorkers

pytestmark = pytest.mark.asyncio
DEADLINE_S = 30.0  # generous: these are in-process and happen at once


@dataclass
class Core:
    store: TaskStore
    scheduler: Scheduler
    launcher: Launcher
    workers: FakeWorkers
    ended: list[TaskRecord]

    def submit(self, description: str, copies: int = 1) -> asyncio.Task[TaskRecord]:
        return asyncio.ensure_future(self.launcher.launch(pb.TaskSpec(description=description), None, copies))


class FakeCache:
    """The result and recording caches as the launcher uses them, in dicts."""

    def __init__(self) -> None:
        self.results: dict[str, str] = {}
        self.recordings: dict[str, str] = {}
        self.writes: list[tuple[str, str]] = []

    async def get_result(self, key: str) -> str | None:
        return self.results.get(key)

    async def get_recording(self, key: str) -> str | None:
        return self.recordings.get(key)

    def put_result(self, key: str, result: str) -> None:
        self.writes.append(("result", result))
        self.results[key] = result

    def put_recording(self, key: str, recording: str) -> None:
        self.writes.append(("recording", recording))
        self.recordings[key] = recording


@asynccontextmanager
async def core(workers: int = 2, *, constraints: dict[str, Any] | None = None,
               settings: dict[str, Any] | None = None, cache: FakeCache | None = None) -> AsyncIterator[Core]:
    config = config_from_dict({"constraints": constraints or {}, "settings": settings or {}})
    store = TaskStore()
    fake = FakeWorkers(workers)
    tasks = TaskSet()
    scheduler = Scheduler(config, store, fake, lambda rec: [], Budget(config), tasks)
    launcher = Launcher(config, store, scheduler, cache)  # type: ignore[arg-type]
    ended: list[TaskRecord] = []
    store.on_finished.append(ended.append)
    scheduler.start()
    try:
        yield Core(store, scheduler, launcher, fake, ended)
    finally:
        await scheduler.stop("test over")
        await tasks.aclose()


async def ended(rec: TaskRecord) -> TaskRecord:
    async def drain() -> None:
        async for _ in rec.watch():
            pass
    await asyncio.wait_for(drain(), DEADLINE_S)
    return rec


def kinds(rec: TaskRecord) -> list[str]:
    return [(ev.WhichOneof("kind") or "") + ("" if ev.task_id == rec.task_id else "@child") for ev in rec.events]


async def test_a_task_runs_on_a_worker_and_its_end_is_its_state() -> None:
    async with core() as c:
        rec = await c.submit("find the capital")
        call = await c.workers.next_call()
        assert call.task_id == rec.task_id and rec.state == pb.TASK_STATE_RUNNING and rec.attempts == 1
        call.step(1)
        call.complete("Paris")
        await ended(rec)
        assert (rec.state, rec.result, rec.success, rec.steps) == (pb.TASK_STATE_COMPLETED, "Paris", True, 1)
        assert kinds(rec) == ["scheduled", "started", "step", "completed"]
        assert rec.worker_id == call.worker_id and rec.started_at is not None and rec.finished_at is not None
        assert c.ended == [rec]


async def test_the_browser_limit_queues_the_rest_in_order() -> None:
    async with core(workers=2, constraints={"max_concurrent_browsers": 2}) as c:
        recs = [await c.submit(f"task {i}") for i in range(3)]
        first = [await c.workers.next_call(), await c.workers.next_call()]
        assert {x.task_id for x in first} == {recs[0].task_id, recs[1].task_id}
        assert c.workers.pending() == 0 and recs[2].state == pb.TASK_STATE_QUEUED
        assert c.scheduler.position(recs[2].task_id) == 1
        first[0].complete("done")
        third = await c.workers.next_call()  # a slot came free
        assert third.task_id == recs[2].task_id and c.scheduler.position(recs[2].task_id) == 0
        for call in (first[1], third):
            call.complete("done")
        for rec in recs:
            assert (await ended(rec)).state == pb.TASK_STATE_COMPLETED


async def test_a_dead_workers_task_is_retried_elsewhere_then_fails_naming_the_worker() -> None:
    async with core(workers=2, settings={"task_retries_on_worker_death": 1}) as c:
        rec = await c.submit("flaky")
        call = await c.workers.next_call()
        dead = next(h for h in c.workers.handles if h.worker_id == call.worker_id)
        dead.last_exit = "killed by SIGKILL"
        dead.died.set()  # the supervisor saw the exit: the reason can say how it died
        call.die()
        retry = await c.workers.next_call()
        assert retry.task_id == rec.task_id and retry.worker_id != call.worker_id
        assert rec.attempts == 2 and retry.request.attempt == 2
        waiting = [ev.waiting.reason for ev in rec.events if ev.HasField("waiting")]
        assert waiting == [f"worker {dead.worker_id} died (killed by SIGKILL) while running the task; "
                           "retrying on another worker"]
        other = next(h for h in c.workers.handles if h.worker_id == retry.worker_id)
        other.last_exit, _ = "exit code 3", other.died.set()
        retry.die()
        await ended(rec)
        assert rec.state == pb.TASK_STATE_FAILED
        assert rec.error == f"worker {other.worker_id} died (exit code 3) while running the task"


async def test_cancel_ends_the_record_at_once_and_cancels_the_workers_call() -> None:
    async with core() as c:
        rec = await c.submit("long")
        call = await c.workers.next_call()
        c.scheduler.cancel(rec, "the user changed their mind")
        assert rec.state == pb.TASK_STATE_CANCELLED and rec.error == "the user changed their mind"
        await asyncio.wait_for(call.cancelled.wait(), DEADLINE_S)
        assert kinds(rec)[-1] == "cancelled" and c.ended == [rec]
        assert not c.store.cancel(rec, "again")  # ends once


async def test_subtasks_go_before_queued_top_level_tasks_and_end_with_their_parent() -> None:
    async with core(workers=1, constraints={"max_concurrent_browsers": 1}) as c:
        parent = await c.submit("parent")
        parent_call = await c.workers.next_call()
        later = await c.submit("later top-level task")
        child = await c.launcher.launch(pb.TaskSpec(description="child"), parent)
        assert c.scheduler.queue == [child, later]  # subtasks unblock a task that holds a browser
        c.scheduler.release(parent)  # the parent waits for its subtask: its slot is free
        child_call = await c.workers.next_call()
        assert child_call.task_id == child.task_id and child.depth == 1
        parent_call.complete("parent gave up waiting", success=False)
        await ended(parent)
        await ended(child)
        assert child.state == pb.TASK_STATE_CANCELLED and child.error == f"its parent task {parent.task_id} ended"
        await asyncio.wait_for(child_call.cancelled.wait(), DEADLINE_S)
        # The finished path: the parent's end is written first (so the child's later end is not in the
        # parent's closed log), then its children end, then the parent's observers hear of it.
        assert kinds(parent)[-1] == "completed" and "cancelled@child" not in kinds(parent)
        assert c.ended.index(child) < c.ended.index(parent)
        later_call = await c.workers.next_call()
        assert later_call.task_id == later.task_id
        later_call.complete("ok")


async def test_first_of_n_winner_takes_the_race_and_the_other_copies_are_cancelled() -> None:
    async with core(workers=3, constraints={"allow_parallelism": {"first_of_n": True}, "first_of_n_num_copies": 3}) as c:
        race = await c.submit("race", copies=c.launcher.copies_for_top_level())
        calls = {}
        for _ in range(3):
            call = await c.workers.next_call()
            calls[call.request.copy] = call
        assert sorted(calls) == [1, 2, 3] and race.is_race and race.state == pb.TASK_STATE_RUNNING
        calls[1].complete("not sure", success=False)  # a copy that gives up never wins
        calls[3].complete("42")
        await ended(race)
        copies = {r.copy: r for r in race.children}
        assert (race.state, race.result, race.winner_task_id) == (pb.TASK_STATE_COMPLETED, "42", copies[3].task_id)
        assert copies[2].state == pb.TASK_STATE_CANCELLED and copies[2].error == "copy 3 of 3 won the race"
        await asyncio.wait_for(calls[2].cancelled.wait(), DEADLINE_S)
        # The loser's cancellation is in the race's log before the race's end, which is last.
        log = kinds(race)
        assert log[-1] == "completed" and log.index("cancelled@child") < len(log) - 1
        # Observers hear of each end once, after what that end caused: the winner's end decided the race.
        assert sorted(c.ended, key=id) == sorted([race, *race.children], key=id)
        assert c.ended.index(copies[2]) < c.ended.index(race) < c.ended.index(copies[3])


async def test_first_of_n_fails_only_when_every_copy_failed_and_says_why() -> None:
    async with core(workers=2, constraints={"allow_parallelism": {"first_of_n": True}, "first_of_n_num_copies": 2}) as c:
        race = await c.submit("race", copies=2)
        calls = [await c.workers.next_call(), await c.workers.next_call()]
        calls[0].fail("page did not load")
        await asyncio.sleep(0)
        assert not race.done  # one copy left
        calls[1].complete("gave up", success=False)
        await ended(race)
        assert race.state == pb.TASK_STATE_FAILED and not race.winner_task_id
        assert race.error.startswith("all 2 copies failed: ")
        assert "page did not load" in race.error and "gave up" in race.error


async def test_cancelling_a_race_cancels_every_copy() -> None:
    async with core(workers=2, constraints={"allow_parallelism": {"first_of_n": True}, "first_of_n_num_copies": 2}) as c:
        race = await c.submit("race", copies=2)
        calls = [await c.workers.next_call(), await c.workers.next_call()]
        c.scheduler.cancel(race, "stop")
        assert race.state == pb.TASK_STATE_CANCELLED
        assert all(r.state == pb.TASK_STATE_CANCELLED for r in race.children)
        for call in calls:
            await asyncio.wait_for(call.cancelled.wait(), DEADLINE_S)


async def test_usage_is_priced_and_charged_to_the_budget_and_the_task() -> None:
    prices = {"sim-model": {"input_per_1m": 2.0, "output_per_1m": 10.0}}
    async with core(settings={"model_prices": prices}) as c:
        rec = await c.submit("costly")
        call = await c.workers.next_call()
        call.usage("sim-model", 1_000_000, 100_000)
        call.complete("ok")
        await ended(rec)
        assert rec.usage["sim-model"].cost_usd == pytest.approx(3.0)
        assert c.scheduler.budget.spent == pytest.approx(3.0)
        assert c.scheduler.usage["sim-model"].prompt_tokens == 1_000_000


async def test_stop_cancels_running_and_queued_tasks_with_the_reason() -> None:
    async with core(workers=1, constraints={"max_concurrent_browsers": 1}) as c:
        running, queued = await c.submit("a"), await c.submit("b")
        await c.workers.next_call()
        await c.scheduler.stop("shutting down")
        assert (running.state, running.error) == (pb.TASK_STATE_CANCELLED, "shutting down")
        assert (queued.state, queued.error) == (pb.TASK_STATE_CANCELLED, "shutting down")


async def test_the_finished_path_caches_a_success_and_the_next_identical_task_is_answered_from_it() -> None:
    cache = FakeCache()
    async with core(cache=cache) as c:
        rec = await c.submit("same task")
        call = await c.workers.next_call()
        assert call.request.replay == ""  # nothing recorded yet
        call.send(wpb.RunTaskResponse(recording='{"steps": []}'))
        call.complete("answer")
        await ended(rec)
        assert cache.writes == [("result", "answer"), ("recording", '{"steps": []}')]
        again = await c.submit("same task")
        assert (again.state, again.result, again.cached) == (pb.TASK_STATE_COMPLETED, "answer", True)
        assert kinds(again) == ["scheduled", "completed"] and c.workers.pending() == 0
        assert len(cache.writes) == 2  # an answer from the cache is not written again


async def test_a_failure_is_not_cached_and_a_recording_is_replayed() -> None:
    cache = FakeCache()
    async with core(cache=cache) as c:
        rec = await c.submit("flaky task")
        call = await c.workers.next_call()
        call.complete("could not", success=False)
        await ended(rec)
        assert cache.writes == []
        cache.recordings[rec.cache_key] = '{"steps": [1]}'
        replayed = await c.submit("flaky task")
        call = await c.workers.next_call()
        assert call.task_id == replayed.task_id and call.request.replay == '{"steps": [1]}'
        call.complete("done")
        await ended(replayed)


async def test_a_races_winner_is_cached_under_the_races_key() -> None:
    cache = FakeCache()
    first_of_n = {"allow_parallelism": {"first_of_n": True}, "first_of_n_num_copies": 2}
    async with core(workers=2, constraints=first_of_n, cache=cache) as c:
        race = await c.submit("race", copies=2)
        calls = [await c.workers.next_call(), await c.workers.next_call()]
        calls[1].send(wpb.RunTaskResponse(recording="r2"))
        calls[1].complete("won")
        await ended(race)
        assert race.recording == "r2" and cache.results == {race.cache_key: "won"}
        assert cache.recordings == {race.cache_key: "r2"}
