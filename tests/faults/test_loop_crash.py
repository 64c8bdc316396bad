"""A long-lived loop that crashes stops its process, loudly, and loses nothing.

The crash is injected with ``BLAST_TEST_CRASH_LOOP`` (``blast_grpc/supervise.py``).
Coordinator: the dispatcher raises when it is about to start a task. The coordinator must
log the traceback and exit non-zero (so a supervisor restarts it) instead of carrying on
with a queue nobody serves; the task database keeps the task, and the restarted engine
runs it. Worker: the kept-context janitor raises (once, ``BLAST_TEST_CRASH_ONCE``, or the
restarted worker would crash too). The worker must log the traceback and exit with
``EXIT_LOOP_CRASHED``; the coordinator's supervisor starts a new one and the task runs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from blast_grpc import Engine
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.demo_site.facts import GORILLAS
from blast_grpc.demo_site.server import DemoSite
from blast_grpc.supervise import CRASH_ENV, CRASH_ONCE_ENV
from blast_grpc.worker.exits import EXIT_LOOP_CRASHED, exit_reason

from ..conftest import Sim, engine_overrides
from .conftest import NO_HANG_S, stderr_to, wait_for

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]


async def crash_coordinator(overrides: dict[str, Any], loop: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            submit: str | None = None) -> tuple[int, str, list[Any]]:
    """Start a coordinator whose ``loop`` crashes (submitting ``submit`` first, if given) and wait
    for it to exit: (exit code, its log, the submitted task if any)."""
    log = tmp_path / "engine.log"
    monkeypatch.setenv(CRASH_ENV, loop)
    with stderr_to(log):
        eng = await Engine.create(overrides=overrides)
    monkeypatch.delenv(CRASH_ENV)
    submitted = []
    try:
        if submit is not None:
            submitted.append(await eng.client.submit(submit))
        code = await asyncio.wait_for(eng.proc.wait(), NO_HANG_S)
    finally:
        await eng.stop()
    return code, log.read_text(errors="replace"), submitted


def assert_crashed_loudly(code: int, text: str, loop: str) -> None:
    """Exit 1 (so a supervisor restarts it), the loop named, its traceback in the log."""
    assert code == 1
    assert f"{loop} crashed" in text and "Traceback (most recent call last)" in text
    assert f"InjectedCrash: crash injected into '{loop}'" in text


async def test_a_crashed_dispatcher_stops_the_coordinator_with_its_traceback(
        sim: Sim, site: DemoSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = engine_overrides(sim, workers=1, task_db_path=str(tmp_path / "tasks.sqlite"))
    code, text, submitted = await crash_coordinator(
        overrides, "scheduler", tmp_path, monkeypatch, submit=f"On {site.url}index.html find the largest gorilla in Asia")
    assert_crashed_loudly(code, text, "scheduler")
    task = submitted[0]

    # Nothing submitted was lost: the next start runs the task that never started.
    async with Engine.create(overrides=overrides) as again:
        events = [ev async for ev in again.client.watch(task.task_id)]
        assert (await again.client.get_task(task.task_id)).state == pb.TASK_STATE_COMPLETED
    assert events[-1].HasField("completed"), events[-1]
    assert GORILLAS["Asia"].name in events[-1].completed.result
    assert any(e.HasField("started") for e in events)



async def test_a_crashed_worker_loop_exits_the_worker_with_its_code_and_the_task_still_runs(
        sim: Sim, site: DemoSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = engine_overrides(sim, workers=1)
    log = tmp_path / "engine.log"
    crashed = tmp_path / "janitor-crashed"  # created by the one fault point that raises
    # The workers inherit the coordinator's environment, set while it starts.
    monkeypatch.setenv(CRASH_ENV, "kept-context-janitor")
    monkeypatch.setenv(CRASH_ONCE_ENV, str(crashed))
    with stderr_to(log):
        eng = await Engine.create(overrides=overrides)
    monkeypatch.delenv(CRASH_ENV)
    monkeypatch.delenv(CRASH_ONCE_ENV)
    async with eng:
        c = eng.client
        # The janitor wakes once a second (maybe before the engine is even ready): the task
        # runs on the worker that crashes or on its replacement; either way it must complete.
        task = await c.submit(f"On {site.url}index.html find the largest gorilla in Asia")

        async def restarted() -> bool:
            return any(w.restarts >= 1 and w.state == pb.WORKER_STATE_READY for w in (await c.metrics()).workers)

        await wait_for(restarted, "the supervisor to start a new worker after the janitor crashed")
        events = [ev async for ev in c.watch(task.task_id, from_seq=1)]
        assert events[-1].HasField("completed"), events
        assert (await c.get_task(task.task_id)).state == pb.TASK_STATE_COMPLETED
    assert crashed.exists()
    assert GORILLAS["Asia"].name in events[-1].completed.result
    # If the task was running when the worker stopped, it says so and was started again.
    ended = [e.step for e in events if e.HasField("step") and e.step.action == "(worker loop crashed)"]
    if ended:
        assert "kept-context-janitor" in ended[0].result, ended[0]
        assert sum(e.HasField("started") for e in events) >= 2
    text = log.read_text(errors="replace")
    assert "kept-context-janitor crashed" in text and "Traceback (most recent call last)" in text
    assert "InjectedCrash: crash injected into 'kept-context-janitor'" in text
    # The supervisor names the code and what it means (a retried task's reason says the same).
    reason = exit_reason(EXIT_LOOP_CRASHED)
    assert reason is not None and f"exited with code {EXIT_LOOP_CRASHED}: {reason}" in text
    assert text.count("kept-context-janitor crashed") == 1  # the new worker runs on


async def test_a_crashed_orphan_sweeper_stops_the_coordinator_with_its_traceback(
        sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The sweep runs every 2 s from the start.
    code, text, _ = await crash_coordinator(engine_overrides(sim, workers=1), "orphan-sweeper", tmp_path, monkeypatch)
    assert code == 1, text
    assert_crashed_loudly(code, text, "orphan-sweeper")
