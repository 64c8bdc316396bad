"""Chat Completions through the gateway, driven by the official SDK."""

from __future__ import annotations

import openai
import pytest

from blast_grpc import Client
from blast_grpc.demo_site.facts import GORILLAS
from blast_grpc.demo_site.server import DemoSite

from .conftest import gorilla_task

MODEL = "gpt-4.1-mini"


def test_streamed_chat_yields_the_answer_and_a_usage_chunk(oai: openai.OpenAI, site: DemoSite) -> None:
    chunks = list(oai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": gorilla_task(site, "South America")}],
        stream=True, stream_options={"include_usage": True}))
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert all(c.model == MODEL for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert GORILLAS["South America"].name in text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.prompt_tokens > 0 and last.usage.completion_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_streamed_chat_without_include_usage_has_no_usage_chunk(oai: openai.OpenAI, site: DemoSite) -> None:
    chunks = list(oai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": gorilla_task(site, "Africa")}], stream=True))
    assert all(c.choices and c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert GORILLAS["Africa"].name in "".join(c.choices[0].delta.content or "" for c in chunks)


@pytest.mark.asyncio
async def test_chat_without_streaming(aoai: openai.AsyncOpenAI, client: Client, site: DemoSite) -> None:
    done = await aoai.chat.completions.create(model=MODEL, messages=[
        {"role": "system", "content": "You are a careful browsing assistant."},
        {"role": "user", "content": [{"type": "text", "text": gorilla_task(site, "Europe")}]},
    ])
    assert done.object == "chat.completion" and done.model == MODEL
    choice = done.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    assert GORILLAS["Europe"].name in (choice.message.content or "")
    # The usage is the task tree's, as the engine recorded it.
    task = await client.get_task(done.id.removeprefix("chatcmpl-"))
    assert done.usage is not None
    assert done.usage.prompt_tokens == sum(u.prompt_tokens for u in task.tree_usage) > 0
    assert done.usage.completion_tokens == sum(u.completion_tokens for u in task.tree_usage) > 0
    # The system message went to the engine as context, the user message as the task.
    assert "careful browsing assistant" in task.spec.description
    assert task.spec.description.endswith(f"Task: {gorilla_task(site, 'Europe')}")
