"""The gateway as a drop-in for the OpenAI SDK: an agent that gives up, ``model``, BLAST's
``cache_control``, and a task's life tied to its request (RunTask), driven by the official
``openai`` package.

The caching checks need an engine with the result and plan caches on (the session engine
has them off), so they get a module engine and gateway of their own; the rest use the
shared ones.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path
from typing import AsyncIterator, Iterator

import grpc
import openai
import pytest
import pytest_asyncio

from blast_grpc import Client, Engine
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.demo_site.facts import GORILLAS
from blast_grpc.demo_site.server import DemoSite

from ..conftest import Sim, engine_overrides, stop_process
from .conftest import Gateway, apoll, error_body, gorilla_task, slow_task, start_gateway

MODELS = ["gpt-4.1", "gpt-4.1-mini"]  # the default config's constraints.llm_model and llm_model_mini
GIVE_UP = "Recite a poem about the sea"  # no scenario matches: the simulated agent gives up
ENDED = (pb.TASK_STATE_COMPLETED, pb.TASK_STATE_FAILED, pb.TASK_STATE_CANCELLED)
DEADLINE_S = 90.0  # generous; never a timing claim


def task_of(response_id: str) -> str:
    return response_id.removeprefix("resp_").removeprefix("chatcmpl-")


# --- an agent that gives up (done(success=False)) ------------------------------------------

def test_an_agent_that_gives_up_is_a_failed_response(oai: openai.OpenAI) -> None:
    resp = oai.responses.create(model="gpt-4.1", input=GIVE_UP)
    assert resp.status == "failed", resp.status
    assert resp.error is not None and resp.error.type == "task_unsuccessful" and resp.error.code == "server_error"
    assert resp.error.message.startswith("The agent could not do the task: ")
    # Its explanation is still the last output item, marked incomplete, and in the error.
    answer = resp.output[-1]
    assert answer.type == "message" and answer.status == "incomplete"
    assert resp.output_text and resp.output_text in resp.error.message
    assert resp.usage is not None and resp.usage.total_tokens > 0
    # Retrieval says the same.
    got = oai.responses.retrieve(resp.id)
    assert (got.status, got.error, got.output_text) == ("failed", resp.error, resp.output_text)


def test_a_streamed_give_up_ends_with_response_failed(oai: openai.OpenAI) -> None:
    events = list(oai.responses.create(model="gpt-4.1", input=GIVE_UP, stream=True))
    assert events[0].type == "response.created"
    last = events[-1]
    assert last.type == "response.failed", [e.type for e in events[-3:]]
    assert last.response.error is not None and last.response.error.type == "task_unsuccessful"
    assert not any(e.type == "response.completed" for e in events)
    # A replay of the stream ends the same way.
    replay = list(oai.responses.retrieve(last.response.id, stream=True))
    assert replay[-1].type == "response.failed" and replay[-1].response.error == last.response.error


def test_a_chat_give_up_is_an_error_not_a_stop(oai: openai.OpenAI) -> None:
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": GIVE_UP}]
    with pytest.raises(openai.InternalServerError) as e:
        oai.chat.completions.create(model="gpt-4.1", messages=messages)
    body = error_body(e.value)
    assert body["code"] == "task_unsuccessful" and body["message"].startswith("The agent could not do the task: ")
    assert e.value.response.headers["x-should-retry"] == "false"
    # Streamed: the role chunk, then the error in-band, which the SDK raises; never finish_reason "stop".
    seen: list[openai.types.chat.ChatCompletionChunk] = []
    with pytest.raises(openai.APIError) as streamed:
        for chunk in oai.chat.completions.create(model="gpt-4.1", messages=messages, stream=True):
            seen.append(chunk)
    assert "could not do the task" in streamed.value.message
    assert seen and all(c.choices[0].finish_reason is None for c in seen if c.choices)


# --- model --------------------------------------------------------------------------------

def test_models_lists_the_configured_models(oai: openai.OpenAI) -> None:
    assert [m.id for m in oai.models.list()] == MODELS
    assert oai.models.retrieve("gpt-4.1-mini").id == "gpt-4.1-mini"


def test_an_unknown_model_is_refused_naming_the_allowed_ones(oai: openai.OpenAI) -> None:
    for create in (lambda: oai.responses.create(model="gpt-5-turbo", input="find it"),
                   lambda: oai.chat.completions.create(model="gpt-5-turbo",
                                                       messages=[{"role": "user", "content": "find it"}])):
        with pytest.raises(openai.BadRequestError) as e:
            create()
        body = error_body(e.value)
        assert body["param"] == "model" and body["code"] == "model_not_found"
        assert "'gpt-5-turbo'" in body["message"] and all(m in body["message"] for m in MODELS)


@pytest.mark.asyncio
async def test_the_model_asked_for_drives_the_task(aoai: openai.AsyncOpenAI, client: Client,
                                                   site: DemoSite) -> None:
    mini = await aoai.responses.create(model="gpt-4.1-mini", input=gorilla_task(site, "Asia"))
    full = await aoai.responses.create(model="gpt-4.1", input=gorilla_task(site, "Asia"))
    for resp, model in ((mini, "gpt-4.1-mini"), (full, "gpt-4.1")):
        assert resp.status == "completed" and GORILLAS["Asia"].name in resp.output_text
        task = await client.get_task(task_of(resp.id))
        assert task.spec.model == model and resp.model == model
        # The agent's own calls (plan, steps) went to that model.
        assert {u.model for u in task.usage if u.requests} == {model}, [(u.model, u.requests) for u in task.usage]
    chat = await aoai.chat.completions.create(model="gpt-4.1-mini",
                                              messages=[{"role": "user", "content": gorilla_task(site, "Africa")}])
    task = await client.get_task(task_of(chat.id))
    assert chat.model == "gpt-4.1-mini" and {u.model for u in task.usage if u.requests} == {"gpt-4.1-mini"}


@pytest.mark.asyncio
async def test_the_engine_refuses_an_unconfigured_model(client: Client) -> None:
    # gRPC clients are held to the same list as the gateway.
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await client.submit("find it", model="gpt-5-turbo")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "spec.model" in (e.value.details() or "") and "gpt-4.1-mini" in (e.value.details() or "")


# --- the user's metadata is the user's ------------------------------------------------------

@pytest.mark.asyncio
async def test_metadata_is_kept_exactly_as_sent(aoai: openai.AsyncOpenAI, client: Client, site: DemoSite) -> None:
    # All 16 pairs are the user's: the gateway keeps its own note in TaskSpec.client_state.
    metadata = {f"k{i}": f"v{i}" for i in range(16)}
    resp = await aoai.responses.create(model="gpt-4.1", input=gorilla_task(site, "Europe"), metadata=metadata,
                                       background=True)
    task = await client.get_task(task_of(resp.id))
    assert dict(task.spec.metadata) == metadata and '"background":true' in task.spec.client_state
    done = await apoll(lambda: aoai.responses.retrieve(resp.id), lambda r: r.status not in ("queued", "in_progress"))
    assert done.status == "completed" and done.metadata == metadata and done.background is True
    with pytest.raises(openai.BadRequestError) as e:
        await aoai.responses.create(model="gpt-4.1", input="find it", metadata={**metadata, "k16": "x"})
    assert error_body(e.value)["param"] == "metadata"


# --- RunTask: the task lives as long as its request ----------------------------------------

@pytest.mark.asyncio
async def test_a_gateway_killed_mid_task_takes_its_task_with_it(engine: Engine, site: DemoSite,
                                                                tmp_path: Path) -> None:
    gw = start_gateway(engine.address, tmp_path, "doomed")
    try:
        async with openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0,
                                      timeout=DEADLINE_S) as oai:
            stream = await oai.responses.create(model="gpt-4.1", input=slow_task(site), stream=True)
            task_id = ""
            async for ev in stream:
                if ev.type == "response.created":
                    task_id = task_of(ev.response.id)
                if ev.type == "response.reasoning_summary_part.done":
                    break  # the task is under way
            assert (await engine.client.get_task(task_id)).state == pb.TASK_STATE_RUNNING
            gw.proc.send_signal(signal.SIGKILL)  # no clean-up code runs in the gateway
            await asyncio.to_thread(gw.proc.wait, DEADLINE_S)
    finally:
        stop_process(gw.proc)
    task = await apoll(lambda: engine.client.get_task(task_id), lambda t: t.state in ENDED, timeout=DEADLINE_S)
    assert task.state == pb.TASK_STATE_CANCELLED, pb.TaskState.Name(task.state)
    assert "RunTask" in task.error


# --- cache_control ---------------------------------------------------------------------------

@pytest_asyncio.fixture(scope="module")
async def caching_engine(sim: Sim, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Engine]:
    path = tmp_path_factory.mktemp("gateway-cache") / "cache.sqlite"
    overrides = engine_overrides(sim, workers=1, cache_results=True, cache_plans=True, cache_path=str(path))
    async with Engine.create(overrides=overrides) as eng:
        yield eng


@pytest.fixture(scope="module")
def caching_gateway(caching_engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(caching_engine.address, tmp_path_factory.mktemp("gateway-cache"), "caching")
    try:
        yield gw
    finally:
        stop_process(gw.proc)


def model_calls(sim: Sim) -> int:
    return int(sim.stats()["requests_total"])


@pytest.mark.asyncio
async def test_cache_control_in_metadata_skips_the_caches(caching_gateway: Gateway, caching_engine: Engine,
                                                          sim: Sim, site: DemoSite) -> None:
    site.motto = "Swing from the highest branch"
    task = f"Read the motto at {site.url}_motto?run={uuid.uuid4().hex[:8]}"
    async with openai.AsyncOpenAI(base_url=f"{caching_gateway.url}/v1", api_key="unused", max_retries=0,
                                  timeout=DEADLINE_S) as oai:
        first = await oai.responses.create(model="gpt-4.1", input=task)
        assert first.status == "completed" and "highest branch" in first.output_text
        assert first.usage is not None and first.usage.total_tokens > 0

        # The same input again: the result cache answers, with no model call and zero usage.
        before = await asyncio.to_thread(model_calls, sim)
        again = await oai.responses.create(model="gpt-4.1", input=task)
        assert again.output_text == first.output_text and again.usage is not None and again.usage.total_tokens == 0
        assert (await caching_engine.client.get_task(task_of(again.id))).cached
        assert await asyncio.to_thread(model_calls, sim) == before

        # Another model's answer is not this one's: the caches are kept per model.
        other = await oai.responses.create(model="gpt-4.1-mini", input=task)
        assert other.status == "completed" and other.usage is not None and other.usage.total_tokens > 0
        assert not (await caching_engine.client.get_task(task_of(other.id))).cached
        before = await asyncio.to_thread(model_calls, sim)

        # Skipping both caches does the work again: the model is called, the usage counts it.
        site.motto = "Never drop the banana"
        fresh = await oai.responses.create(model="gpt-4.1", input=task,
                                           metadata={"cache_control": "no-cache, no-cache-plan"})
        assert fresh.status == "completed" and "banana" in fresh.output_text, fresh.output_text
        assert fresh.usage is not None and fresh.usage.total_tokens > 0 and fresh.metadata == {
            "cache_control": "no-cache, no-cache-plan"}
        record = await caching_engine.client.get_task(task_of(fresh.id))
        assert list(record.spec.cache_control) == ["no-cache", "no-cache-plan"] and not record.cached
        assert record.replayed_steps == 0 and await asyncio.to_thread(model_calls, sim) > before

        # Chat takes the same key; an unknown directive is a 400 naming it.
        chat = await oai.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": task}],
                                                 metadata={"cache_control": "no-cache"})
        assert not (await caching_engine.client.get_task(task_of(chat.id))).cached
        with pytest.raises(openai.BadRequestError) as e:
            await oai.responses.create(model="gpt-4.1", input=task, metadata={"cache_control": "no-cache,max-age=0"})
        body = error_body(e.value)
        assert body["param"] == "metadata.cache_control" and "'max-age=0'" in body["message"]
