"""People in the loop over gRPC: ask_human, RespondToTask, PauseTask, GetTaskScreenshot.

A dedicated engine (``constraints.require_human_in_loop``: the model is offered
``ask_human``) with one worker, real Chromium and the simulated model. The scenarios
(tests/sim/scenarios: ask-the-person, wander-until-told) decide only from what the
engine sends the model, so a result that names the continent a person chose shows
that the answer reached the model. A second engine with a short
``human_response_timeout_s`` checks the timeout.
"""

from __future__ import annotations

from typing import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from blast_grpc import Client, Engine
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.agent.secrets import Secrets
from blast_grpc.demo_site.facts import GORILLAS
from blast_grpc.demo_site.server import DemoSite
from blast_grpc.worker.human_client import ScreenshotWithheld, screenshot
from blast_grpc.worker.session import BrowserSession

from ..conftest import Sim, engine_overrides

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]

JPEG_MAGIC = b"\xff\xd8\xff"
WAITING = pb.TASK_STATE_WAITING_FOR_HUMAN


def _human_engine(sim: Sim, **settings: object) -> dict[str, object]:
    return engine_overrides(sim, {"require_human_in_loop": True}, workers=1, max_steps=30, **settings)


@pytest_asyncio.fixture(scope="module")
async def human_engine(sim: Sim) -> AsyncIterator[Engine]:
    eng = await Engine.create(overrides=_human_engine(sim, human_response_timeout_s=600))
    try:
        yield eng
    finally:
        await eng.stop()


@pytest.fixture
def hclient(human_engine: Engine) -> Client:
    return human_engine.client


async def _until(client: Client, task_id: str, kind: str) -> pb.TaskEvent:
    """The task's first event of ``kind`` (its own, not a subtask's)."""
    async for ev in client.watch(task_id):
        if ev.WhichOneof("kind") == kind and ev.task_id == task_id:
            return ev
    raise AssertionError(f"task {task_id} ended without a {kind} event: {(await client.get_task(task_id)).error}")


async def _end(client: Client, task_id: str) -> pb.Task:
    async for _ in client.watch(task_id):
        pass
    return await client.get_task(task_id)


async def test_ask_human_answer_reaches_the_model(hclient: Client, site: DemoSite) -> None:
    task = await hclient.submit(f"Ask a person which continent to look up at {site.url}index.html",
                                initial_url=f"{site.url}index.html")
    asked = await _until(hclient, task.task_id, "input_required")
    assert asked.input_required.kind == "question"
    assert "Which continent" in asked.input_required.question
    assert asked.input_required.url.endswith("index.html")
    waiting = await hclient.get_task(task.task_id)
    assert waiting.state == WAITING
    listed = await hclient.stub.ListTasks(pb.ListTasksRequest(state=WAITING))
    assert task.task_id in [t.task_id for t in listed.tasks]
    assert {t.state for t in listed.tasks} == {WAITING}

    # The page the task left (its context is parked): a real JPEG.
    shot = await hclient.screenshot(task.task_id)
    assert shot.jpeg.startswith(JPEG_MAGIC) and len(shot.jpeg) > 1000
    assert shot.url.endswith("index.html")

    answered = await hclient.respond(task.task_id, "Let's do Oceania, please.")
    assert answered.state == pb.TASK_STATE_RUNNING
    with pytest.raises(grpc.aio.AioRpcError) as err:  # answered already: not waiting any more
        await hclient.respond(task.task_id, "Asia")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    done = await _end(hclient, task.task_id)
    assert done.state == pb.TASK_STATE_COMPLETED, done.error
    assert done.success
    assert done.result == f"The person chose Oceania: its largest gorilla is {GORILLAS['Oceania'].name}."
    kinds = [ev.WhichOneof("kind") async for ev in hclient.watch(task.task_id)]
    assert kinds.index("input_required") < kinds.index("human_responded") < kinds.index("completed")
    responded = [ev async for ev in hclient.watch(task.task_id) if ev.WhichOneof("kind") == "human_responded"]
    assert [ev.human_responded.answer for ev in responded] == ["Let's do Oceania, please."]


async def test_pause_then_instruction_resumes(hclient: Client, site: DemoSite) -> None:
    task = await hclient.submit(f"Wander around {site.url}index.html until told")
    await _until(hclient, task.task_id, "step")

    live = await hclient.screenshot(task.task_id)  # a running task: its live page
    assert live.jpeg.startswith(JPEG_MAGIC)
    assert live.url == f"{site.url}index.html"

    paused = await hclient.pause(task.task_id)
    assert paused.state == WAITING
    asked = await _until(hclient, task.task_id, "input_required")
    assert asked.input_required.kind == "paused"
    assert (await hclient.pause(task.task_id)).state == WAITING  # pausing a paused task is a no-op
    steps_before = (await hclient.get_task(task.task_id)).steps

    await hclient.respond(task.task_id, "Read Europe now.")
    done = await _end(hclient, task.task_id)
    assert done.state == pb.TASK_STATE_COMPLETED, done.error
    assert done.result == f"As told, I read Europe: its largest gorilla is {GORILLAS['Europe'].name}."
    assert done.steps > steps_before


async def test_cancel_a_waiting_task(hclient: Client, site: DemoSite) -> None:
    task = await hclient.submit(f"Ask a person which continent to look up at {site.url}index.html",
                                initial_url=f"{site.url}index.html")
    await _until(hclient, task.task_id, "input_required")
    cancelled = await hclient.cancel(task.task_id, "nobody is around")
    assert cancelled.state == pb.TASK_STATE_CANCELLED
    assert cancelled.error == "nobody is around"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await hclient.respond(task.task_id, "Asia")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # The engine goes on: the next task gets the slot and runs to its end.
    nxt = await hclient.run("say hello")
    assert nxt.state == pb.TASK_STATE_COMPLETED


async def test_refusals_name_the_problem(hclient: Client, site: DemoSite) -> None:
    task = await hclient.submit(f"Wander around {site.url}index.html until told")
    await _until(hclient, task.task_id, "step")
    try:
        for call in (hclient.respond(task.task_id, "Read Asia"),):  # running, not waiting
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "not waiting for a person" in (err.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await hclient.respond(task.task_id, "   ")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "answer is required" in (err.value.details() or "")
    finally:
        await hclient.cancel(task.task_id)
    for call in (hclient.respond("task_nope", "x"), hclient.pause("task_nope"), hclient.screenshot("task_nope")):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    for call in (hclient.pause(task.task_id), hclient.screenshot(task.task_id)):  # ended: no-op / no page
        try:
            result = await call
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
        else:
            assert isinstance(result, pb.Task) and result.state == pb.TASK_STATE_CANCELLED


async def test_unanswered_question_fails_the_task(sim: Sim, site: DemoSite) -> None:
    async with Engine.create(overrides=_human_engine(sim, human_response_timeout_s=1)) as eng:
        task = await eng.client.submit(f"Ask a person which continent to look up at {site.url}index.html",
                                       initial_url=f"{site.url}index.html")
        done = await _end(eng.client, task.task_id)
        assert done.state == pb.TASK_STATE_FAILED
        assert "human_response_timeout_s = 1s" in done.error
        assert "Which continent should I look up" in done.error
        # The engine keeps serving: the slot the waiting task held is free again.
        assert (await eng.client.run("say hello")).state == pb.TASK_STATE_COMPLETED


async def test_no_screenshot_shows_a_secret(tab_session: BrowserSession) -> None:
    """A screenshot cannot be redacted: with secrets, a page showing one (or typed into) gives none."""
    secrets = Secrets({"TOKEN": "hush-5ecret-value"})
    page = tab_session.page
    await page.set_content("<p>Your token is hush-5ecret-value</p>")
    with pytest.raises(ScreenshotWithheld, match="secret value is shown"):
        await screenshot(tab_session, 10, secrets, lambda: False)
    await page.set_content("<p>Nothing to hide here</p><input value='typed'>")
    with pytest.raises(ScreenshotWithheld, match="secret was typed"):
        await screenshot(tab_session, 10, secrets, lambda: True)
    jpeg, _ = await screenshot(tab_session, 10, secrets, lambda: False)
    assert jpeg.startswith(JPEG_MAGIC)
