"""Tasks that fail: ``response.failed`` in a Responses stream, a non-retryable error in chat.

The simulated model is told to answer three agent requests in a row without a tool
call; the agent gives up on the first step and the task fails.
"""

from __future__ import annotations

import openai
import pytest

from blast_grpc.demo_site.server import DemoSite

from ..conftest import Sim
from .conftest import error_body, gorilla_task, still_serving

MODEL = "gpt-4.1"
GIVE_UP = ("no_tool_call",) * 3  # MAX_BAD_CALLS_PER_STEP in blast_grpc.agent.loop


def test_a_failed_task_ends_the_stream_with_response_failed(oai: openai.OpenAI, sim: Sim, site: DemoSite) -> None:
    sim.inject(*GIVE_UP)
    events = list(oai.responses.create(model=MODEL, input=gorilla_task(site, "Asia"), stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    last = events[-1]
    assert last.type == "response.failed"
    failed = last.response
    assert failed.status == "failed" and failed.error is not None
    assert "tool call" in failed.error.message
    assert all(o.type == "reasoning" for o in failed.output) and failed.output_text == ""
    assert not any(e.type.startswith("response.output_text") for e in events)
    got = oai.responses.retrieve(failed.id)
    assert got.status == "failed" and got.error is not None and got.error.message == failed.error.message


def test_a_failed_chat_task_is_an_error_that_is_not_retried(oai: openai.OpenAI, sim: Sim, site: DemoSite) -> None:
    messages = [{"role": "user", "content": gorilla_task(site, "Asia")}]
    sim.inject(*GIVE_UP)
    with pytest.raises(openai.InternalServerError) as e:
        oai.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    body = error_body(e.value)
    assert body["code"] == "task_failed" and "tool call" in body["message"]
    assert e.value.response.headers["x-should-retry"] == "false"
    # Streamed, the failure arrives in-band, and the SDK raises it.
    sim.inject(*GIVE_UP)
    stream = oai.chat.completions.create(model=MODEL, messages=messages, stream=True)  # type: ignore[arg-type]
    with pytest.raises(openai.APIError) as streamed:
        for _ in stream:
            pass
    assert "tool call" in streamed.value.message
    still_serving(oai)
