"""A client that goes away cancels its task — unless it asked for ``background``."""

from __future__ import annotations

import openai
import pytest

from blast_grpc import Client
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.demo_site.server import DemoSite
from blast_grpc.states import TERMINAL_STATES

from .conftest import apoll, slow_task

pytestmark = pytest.mark.asyncio

MODEL = "gpt-4.1"
ENDED = TERMINAL_STATES


async def ended(client: Client, task_id: str) -> pb.Task:
    """The task's record once it has ended (or the last one read, after a deadline)."""
    return await apoll(lambda: client.get_task(task_id), lambda t: t.state in ENDED)


async def test_closing_a_response_stream_cancels_the_task(aoai: openai.AsyncOpenAI, client: Client,
                                                          site: DemoSite) -> None:
    stream = await aoai.responses.create(model=MODEL, input=slow_task(site), stream=True)
    rid = ""
    async for ev in stream:
        if ev.type == "response.created":
            rid = ev.response.id
        if ev.type == "response.reasoning_summary_part.done":
            break  # the task is under way
    await stream.close()
    task_id = rid.removeprefix("resp_")
    assert (await client.get_task(task_id)).state != pb.TASK_STATE_COMPLETED
    task = await ended(client, task_id)
    assert task.state == pb.TASK_STATE_CANCELLED, pb.TaskState.Name(task.state)
    assert "closed" in task.error


async def test_closing_a_chat_stream_cancels_the_task(aoai: openai.AsyncOpenAI, client: Client,
                                                      site: DemoSite) -> None:
    stream = await aoai.chat.completions.create(model=MODEL, stream=True,
                                                messages=[{"role": "user", "content": slow_task(site)}])
    first = await stream.__anext__()  # the assistant role: the task is submitted
    await stream.close()
    task = await ended(client, first.id.removeprefix("chatcmpl-"))
    assert task.state == pb.TASK_STATE_CANCELLED, pb.TaskState.Name(task.state)


async def test_giving_up_on_a_blocking_request_cancels_the_task(aoai: openai.AsyncOpenAI, client: Client,
                                                                site: DemoSite) -> None:
    marker = f"disconnect-{id(aoai)}"
    with pytest.raises(openai.APITimeoutError):
        await aoai.responses.create(model=MODEL, input=slow_task(site), metadata={"case": marker}, timeout=1.0)
    mine = [t for t in await client.list_tasks(limit=50) if t.spec.metadata.get("case") == marker]
    assert len(mine) == 1
    task = await ended(client, mine[0].task_id)
    assert task.state == pb.TASK_STATE_CANCELLED, pb.TaskState.Name(task.state)


async def test_closing_a_background_stream_leaves_the_task_running(aoai: openai.AsyncOpenAI, client: Client,
                                                                   site: DemoSite) -> None:
    stream = await aoai.responses.create(model=MODEL, input=slow_task(site), stream=True, background=True)
    created = await stream.__anext__()
    assert created.type == "response.created" and created.response.background is True
    await stream.close()
    task = await ended(client, created.response.id.removeprefix("resp_"))
    assert task.state == pb.TASK_STATE_COMPLETED and "Europe" in task.result
    got = await aoai.responses.retrieve(created.response.id)
    assert got.status == "completed" and "Europe" in got.output_text
