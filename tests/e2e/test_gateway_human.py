"""ask_human through the Responses API, driven by the official SDK, streaming and not.

A response whose task asks a person ends with a ``function_call`` item named ``ask_human``
(status ``completed``); the client continues with ``previous_response_id`` and a
``function_call_output``, and the continued response carries the rest of the task. The
engine is a dedicated one (``require_human_in_loop``) with its own gateway; the simulated
model (scenario ask-the-person) reads only the answer it is given to choose the page.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Iterator

import openai
import pytest
import pytest_asyncio
from openai.types.responses import Response, ResponseFunctionToolCall

from blast_grpc import Engine
from blast_grpc.demo_site.facts import GORILLAS
from blast_grpc.demo_site.server import DemoSite

from ..conftest import Sim, engine_overrides
from .conftest import error_body

MODEL = "gpt-4.1"


@pytest_asyncio.fixture(scope="module")
async def human_engine(sim: Sim) -> AsyncIterator[Engine]:
    overrides = engine_overrides(sim, {"require_human_in_loop": True}, workers=1, gateway=True, server_port=0,
                                 human_response_timeout_s=600)
    eng = await Engine.create(overrides=overrides)
    try:
        yield eng
    finally:
        await eng.stop()


@pytest.fixture
def hoai(human_engine: Engine) -> Iterator[openai.OpenAI]:
    assert human_engine.gateway_url
    with openai.OpenAI(base_url=human_engine.gateway_url + "/v1", api_key="unused", max_retries=0,
                       timeout=60) as client:
        yield client


def _task(site: DemoSite) -> str:
    return f"Ask a person which continent to look up at {site.url}index.html"


def _asked(resp: Response) -> ResponseFunctionToolCall:
    """The ask_human call a response ended with."""
    assert resp.status == "completed", resp
    call = resp.output[-1]
    assert isinstance(call, ResponseFunctionToolCall), resp.output
    assert call.name == "ask_human" and call.status == "completed"
    assert "Which continent" in json.loads(call.arguments)["question"]
    return call


def _answer(call: ResponseFunctionToolCall, text: str) -> list[Any]:
    return [{"type": "function_call_output", "call_id": call.call_id, "output": text}]


def test_ask_human_then_continue(hoai: openai.OpenAI, site: DemoSite) -> None:
    first = hoai.responses.create(model=MODEL, input=_task(site))
    call = _asked(first)
    assert first.output_text == ""  # no answer yet: the task waits for the person
    # Retrieved later, the response is the same: it ended with the call.
    again = hoai.responses.retrieve(first.id)
    assert again.status == "completed" and again.output[-1] == call

    second = hoai.responses.create(model=MODEL, previous_response_id=first.id, input=_answer(call, "Africa"))
    assert second.status == "completed", second
    assert second.id != first.id and second.previous_response_id == first.id
    assert second.output[-1].type == "message"
    assert second.output_text == f"The person chose Africa: its largest gorilla is {GORILLAS['Africa'].name}."
    assert second.usage is not None and second.usage.input_tokens > 0
    # The continued response is retrievable by its own id: this turn only, nothing of the first.
    kept = hoai.responses.retrieve(second.id)
    assert (kept.id, kept.previous_response_id, kept.status) == (second.id, first.id, "completed")
    assert kept.output_text == second.output_text
    assert not any(item.type == "function_call" for item in kept.output)

    # The call is answered: answering it again is refused, naming the call.
    with pytest.raises(openai.BadRequestError) as err:
        hoai.responses.create(model=MODEL, previous_response_id=first.id, input=_answer(call, "Asia"))
    body = error_body(err.value)
    assert body["param"] == "input[0].call_id" and "no longer open" in body["message"]
    # The continued response did not end with a call: nothing to answer there.
    with pytest.raises(openai.BadRequestError) as err:
        hoai.responses.create(model=MODEL, previous_response_id=second.id, input=_answer(call, "Asia"))
    assert error_body(err.value)["param"] == "previous_response_id"


def test_ask_human_streamed(hoai: openai.OpenAI, site: DemoSite) -> None:
    events = list(hoai.responses.create(model=MODEL, input=_task(site), stream=True))
    types = [e.type for e in events]
    assert types[-5:] == ["response.output_item.added", "response.function_call_arguments.delta",
                          "response.function_call_arguments.done", "response.output_item.done",
                          "response.completed"], types
    assert [e.sequence_number for e in events] == list(range(len(events)))
    first = events[-1].response  # type: ignore[union-attr]
    call = _asked(first)

    with hoai.responses.stream(model=MODEL, previous_response_id=first.id, input=_answer(call, "Europe")) as s:
        rest = [e.type for e in s]
        final = s.get_final_response()
    assert rest[:2] == ["response.created", "response.in_progress"]
    assert "response.reasoning_summary_text.done" in rest  # the steps after the answer stream as progress
    assert "response.function_call_arguments.delta" not in rest  # the earlier call belongs to the first turn
    assert final.status == "completed"
    assert final.output_text == f"The person chose Europe: its largest gorilla is {GORILLAS['Europe'].name}."


def test_bad_answers_are_400s(hoai: openai.OpenAI, site: DemoSite) -> None:
    first = hoai.responses.create(model=MODEL, input=_task(site))
    call = _asked(first)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"input": _answer(call, "Asia")}, "previous_response_id"),  # no previous_response_id
        ({"previous_response_id": first.id,
          "input": [{"type": "function_call_output", "call_id": "call_other", "output": "Asia"}]}, "input[0].call_id"),
        ({"previous_response_id": first.id, "input": _answer(call, "  ")}, "input[0].output"),
        ({"previous_response_id": first.id,
          "input": [*_answer(call, "Asia"), {"role": "user", "content": "hi"}]}, "input[1]"),
    ]
    for kwargs, param in cases:
        with pytest.raises(openai.BadRequestError) as err:
            hoai.responses.create(model=MODEL, **kwargs)
        assert error_body(err.value)["param"] == param, kwargs
    # None of that answered the question: the right answer still goes through.
    done = hoai.responses.create(model=MODEL, previous_response_id=first.id, input=_answer(call, "Oceania"))
    assert GORILLAS["Oceania"].name in done.output_text
