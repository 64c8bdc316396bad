"""A long-lived loop of the coordinator that crashes stops the process, loudly, and loses nothing.

The crash is injected with ``BLAST_TEST_CRASH_LOOP`` (``blast_grpc/supervise.py``): the
dispatcher raises when it is about to start a task. The coordinator must log the
traceback and exit non-zero (so a supervisor restarts it) instead of carrying on with a
queue nobody serves; the task database keeps the task, and the restarted engine runs it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from blast_grpc import Engine
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.demo_site.facts import GORILLAS
from blast_grpc.demo_site.server import DemoSite
from blast_grpc.supervise import CRASH_ENV

from ..conftest import Sim, engine_overrides
from .conftest import NO_HANG_S, stderr_to

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]


async def test_a_crashed_dispatcher_stops_the_coordinator_with_its_traceback(
        sim: Sim, site: DemoSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = engine_overrides(sim, workers=1, task_db_path=str(tmp_path / "tasks.sqlite"))
    log = tmp_path / "engine.log"
    monkeypatch.setenv(CRASH_ENV, "scheduler")
    with stderr_to(log):
        eng = await Engine.create(overrides=overrides)
    monkeypatch.delenv(CRASH_ENV)
    try:
        task = await eng.client.submit(f"On {site.url}index.html find the largest gorilla in Asia")
        code = await asyncio.wait_for(eng.proc.wait(), NO_HANG_S)
    finally:
        await eng.stop()
    assert code == 1
    text = log.read_text(errors="replace")
    assert "scheduler crashed" in text and "Traceback (most recent call last)" in text
    assert "InjectedCrash: crash injected into 'scheduler'" in text

    # Nothing submitted was lost: the next start runs the task that never started.
    async with Engine.create(overrides=overrides) as again:
        events = [ev async for ev in again.client.watch(task.task_id)]
        assert (await again.client.get_task(task.task_id)).state == pb.TASK_STATE_COMPLETED
    assert events[-1].HasField("completed"), events[-1]
    assert GORILLAS["Asia"].name in events[-1].completed.result
    assert any(e.HasField("started") for e in events)

