"""The worker's long-lived loops belong to a ``TaskSet``; its per-task clean-ups do not.

With fakes for the browser and its contexts: a crash of the kept-context janitor or of
an extraction pool's background start sets the owner's ``failed`` (the worker then exits
``EXIT_LOOP_CRASHED``, see tests/faults/test_loop_crash.py for the real process), while a
clean-up that fails is logged with its traceback and the rest carry on.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, cast

import pytest

from blast_grpc.config import config_from_dict
from blast_grpc.extraction import ExtractionPool
from blast_grpc.extraction.errors import ExtractionError
from blast_grpc.supervise import CRASH_ENV, CRASH_ONCE_ENV, InjectedCrash, TaskSet, fault_point
from blast_grpc.worker.contexts import IdleContexts
from blast_grpc.worker.exits import EXIT_BROWSER_LOST, EXIT_LOOP_CRASHED, exit_reason

WAIT_S = 30.0  # a deadline so a broken test fails instead of hanging; never asserted on


class FakeContext:
    def __init__(self) -> None:
        self.closed = asyncio.Event()

    async def close(self) -> None:
        self.closed.set()


async def _nothing(*_: Any) -> None:
    return None


def idle_contexts(tasks: TaskSet, keep_alive_s: float = 60.0) -> IdleContexts:
    # warm=0: no refill, so the fake browser and egress are never asked for a context.
    return IdleContexts(cast(Any, object()), 0, keep_alive_s, _nothing, cast(Any, object()), tasks=tasks)


def test_an_injected_crash_happens_once_across_processes_when_asked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fault_point("janitor")  # not asked: nothing happens
    monkeypatch.setenv(CRASH_ENV, "janitor")
    fault_point("other-loop")
    for _ in range(2):  # without the once-file, every call crashes
        with pytest.raises(InjectedCrash, match="'janitor'"):
            fault_point("janitor")
    monkeypatch.setenv(CRASH_ONCE_ENV, str(tmp_path / "once"))
    with pytest.raises(InjectedCrash):
        fault_point("janitor")
    fault_point("janitor")  # the file exists: a restarted process runs on
    assert (tmp_path / "once").exists()


def test_the_loop_crash_exit_code_has_its_own_meaning() -> None:
    assert EXIT_LOOP_CRASHED != EXIT_BROWSER_LOST
    assert "loop" in (exit_reason(EXIT_LOOP_CRASHED) or "")


@pytest.mark.asyncio
async def test_a_crashed_janitor_fails_the_workers_taskset_with_its_traceback(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    tasks = TaskSet()
    idle = idle_contexts(tasks)
    kept = FakeContext()
    await idle.keep("t1", cast(Any, kept))
    monkeypatch.setenv(CRASH_ENV, "kept-context-janitor")
    with caplog.at_level(logging.CRITICAL, logger="blast_grpc.supervise"):
        idle.start()
        await asyncio.wait_for(tasks.failed.wait(), WAIT_S)
    assert tasks.crash.startswith("kept-context-janitor: InjectedCrash")
    record = next(r for r in caplog.records if "kept-context-janitor crashed" in r.getMessage())
    assert record.exc_info is not None and isinstance(record.exc_info[1], InjectedCrash)
    await idle.close()  # closing after the crash still closes what was kept
    assert kept.closed.is_set()
    await tasks.aclose()


@pytest.mark.asyncio
async def test_the_janitor_closes_expired_contexts_and_keeps_running() -> None:
    tasks = TaskSet()
    idle = idle_contexts(tasks, keep_alive_s=0.01)
    idle.start()
    first, second = FakeContext(), FakeContext()
    await idle.keep("t1", cast(Any, first))
    await asyncio.wait_for(first.closed.wait(), WAIT_S)
    await idle.keep("t2", cast(Any, second))  # a later tick still expires
    await asyncio.wait_for(second.closed.wait(), WAIT_S)
    assert idle.kept_count == 0 and not tasks.failed.is_set()
    await idle.close()
    await tasks.aclose()


@pytest.mark.asyncio
async def test_a_failed_clean_up_is_logged_with_its_traceback_and_the_worker_carries_on(
        caplog: pytest.LogCaptureFixture) -> None:
    tasks = TaskSet()
    idle = idle_contexts(tasks)
    done = asyncio.Event()

    async def broken() -> None:
        raise RuntimeError("closing the context failed")

    async def fine() -> None:
        done.set()

    with caplog.at_level(logging.ERROR, logger="blast_grpc.worker"):
        idle.adopt(broken(), "keep-context-t1")
        idle.adopt(fine(), "keep-context-t2")
        await idle.close()  # waits for adopted clean-ups
    assert done.is_set() and not tasks.failed.is_set()
    record = next(r for r in caplog.records if "keep-context-t1" in r.getMessage())
    assert record.exc_info is not None and "closing the context failed" in str(record.exc_info[1])


@pytest.mark.asyncio
async def test_an_extraction_start_that_fails_as_expected_is_logged_and_a_bug_fails_the_taskset(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    config = config_from_dict({})
    called = asyncio.Event()

    async def cannot_start() -> None:
        called.set()  # the pool's handler logs in this same step, before the test resumes
        raise ExtractionError("the extraction processes failed to start (test)")

    tasks = TaskSet()
    pool = ExtractionPool(config, "tloops1", 1, tasks)
    monkeypatch.setattr(pool, "start", cannot_start)
    with caplog.at_level(logging.ERROR):
        pool.start_soon()
        await asyncio.wait_for(called.wait(), WAIT_S)
        await pool.close()
    assert not tasks.failed.is_set()
    assert any("failed to start (test)" in r.getMessage() for r in caplog.records)

    async def bug() -> None:
        raise AssertionError("a bug in the start")

    tasks = TaskSet()
    pool = ExtractionPool(config, "tloops2", 1, tasks)
    monkeypatch.setattr(pool, "start", bug)
    pool.start_soon()
    await asyncio.wait_for(tasks.failed.wait(), WAIT_S)
    assert tasks.crash.startswith("extraction-warmup-tloops2: AssertionError: a bug in the start")
    await pool.close()
    await tasks.aclose()
