"""The Responses API through the gateway, driven by the official SDK: streaming, the
``responses.stream`` helper, retrieval and replay, follow-ups, background, cancel, delete."""

from __future__ import annotations

import itertools

import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from blast_grpc import Client
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.demo_site.facts import GORILLAS
from blast_grpc.demo_site.server import DemoSite

from .conftest import Gateway, apoll, gorilla_task, poll, slow_task

MODEL = "gpt-4.1"
REASONING_EVENTS = {
    "response.output_item.added", "response.output_item.done",
    "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
    "response.reasoning_summary_text.done", "response.reasoning_summary_part.done",
}
ANSWER_EVENTS = [
    "response.output_item.added", "response.content_part.added", "response.output_text.delta",
    "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed",
]


def collapse(types: list[str]) -> list[str]:
    """Event types with runs of the same type (the text deltas) collapsed to one."""
    return [t for t, _ in itertools.groupby(types)]


def test_stream_follows_openai_event_order(oai: openai.OpenAI, site: DemoSite) -> None:
    events: list[ResponseStreamEvent] = list(
        oai.responses.create(model=MODEL, input=gorilla_task(site, "Asia"), stream=True))
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"], types
    assert [e.sequence_number for e in events] == list(range(len(events)))
    # Progress: reasoning items (one per task) with a summary part per step, then the answer.
    answer_at = max(i for i, e in enumerate(events) if e.type == "response.output_item.added")
    progress = events[2:answer_at]
    assert progress and {e.type for e in progress} <= REASONING_EVENTS, types
    assert all(e.item.type == "reasoning" for e in progress if e.type.startswith("response.output_item."))
    steps = [e.text for e in progress if e.type == "response.reasoning_summary_text.done"]
    assert any("asia.html" in s for s in steps), steps
    assert collapse(types[answer_at:]) == ANSWER_EVENTS, types[answer_at:]
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = events[-1]
    assert done.type == "response.completed"
    final = done.response
    assert final.status == "completed" and final.output[-1].type == "message"
    assert GORILLAS["Asia"].name in final.output_text and deltas == final.output_text
    assert final.usage is not None and final.usage.input_tokens > 0 and final.usage.output_tokens > 0


def test_stream_helper_accumulates_a_final_response(oai: openai.OpenAI, site: DemoSite) -> None:
    with oai.responses.stream(model=MODEL, input=gorilla_task(site, "Europe")) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert GORILLAS["Europe"].name in final.output_text
    assert "".join(deltas) == final.output_text
    assert [o.type for o in final.output] == ["reasoning", "message"]


def test_a_finished_stream_replays_from_starting_after(oai: openai.OpenAI, site: DemoSite) -> None:
    original = list(oai.responses.create(model=MODEL, input=gorilla_task(site, "Africa"), stream=True))
    rid = original[0].response.id  # type: ignore[union-attr]
    replay = list(oai.responses.retrieve(rid, stream=True, starting_after=5))
    assert [(e.type, e.sequence_number) for e in replay] == \
        [(e.type, e.sequence_number) for e in original if e.sequence_number > 5]
    # The SDK's helper re-reads the whole stream and filters on its side.
    with oai.responses.stream(response_id=rid, starting_after=5) as stream:
        seen = [e.sequence_number for e in stream]
        final = stream.get_final_response()
    assert seen and min(seen) == 6
    assert GORILLAS["Africa"].name in final.output_text


def test_create_retrieve_and_follow_up(oai: openai.OpenAI, site: DemoSite) -> None:
    first = oai.responses.create(model=MODEL, input=gorilla_task(site, "Asia"), metadata={"case": "follow-up"})
    assert first.status == "completed" and GORILLAS["Asia"].name in first.output_text
    assert first.model == MODEL and first.metadata == {"case": "follow-up"}
    got = oai.responses.retrieve(first.id)
    assert (got.id, got.status, got.output_text, got.model) == (first.id, "completed", first.output_text, MODEL)
    assert got.metadata == {"case": "follow-up"} and got.usage == first.usage
    follow = oai.responses.create(model=MODEL, input="How much does that gorilla weigh?",
                                  previous_response_id=first.id)
    assert follow.previous_response_id == first.id
    assert f"{GORILLAS['Asia'].kg} kg" in follow.output_text, follow.output_text


def test_message_list_input_with_instructions(oai: openai.OpenAI, site: DemoSite) -> None:
    resp = oai.responses.create(
        model=MODEL, instructions="Answer in one sentence.",
        input=[
            {"role": "user", "content": "Hello."},
            {"role": "assistant", "content": "Hi! What should I look up?"},
            {"role": "user", "content": [{"type": "input_text", "text": gorilla_task(site, "North America")}]},
        ],
    )
    assert resp.status == "completed" and resp.instructions == "Answer in one sentence."
    assert GORILLAS["North America"].name in resp.output_text


def _settled(r: Response) -> bool:
    return r.status not in ("queued", "in_progress")


def test_background_returns_at_once_and_completes(oai: openai.OpenAI, site: DemoSite) -> None:
    started = oai.responses.create(model=MODEL, input=gorilla_task(site, "Oceania"), background=True)
    assert started.status in ("queued", "in_progress") and started.background is True
    assert started.output == [] and started.output_text == ""
    final = poll(lambda: oai.responses.retrieve(started.id), _settled)
    assert final.status == "completed" and final.background is True
    assert GORILLAS["Oceania"].name in final.output_text


def test_a_background_response_can_be_followed(oai: openai.OpenAI, site: DemoSite) -> None:
    started = oai.responses.create(model=MODEL, input=gorilla_task(site, "Africa"), background=True)
    # GET ...?stream=true replays what happened so far, then follows the task live.
    with oai.responses.stream(response_id=started.id) as stream:
        types = [e.type for e in stream]
        final = stream.get_final_response()
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert final.id == started.id and GORILLAS["Africa"].name in final.output_text


def test_cancel_and_delete(oai: openai.OpenAI, site: DemoSite) -> None:
    running = oai.responses.create(model=MODEL, input=slow_task(site), background=True)
    cancelled = oai.responses.cancel(running.id)
    assert cancelled.id == running.id and cancelled.status == "cancelled"
    assert oai.responses.cancel(running.id).status == "cancelled"  # cancelling again returns it again
    assert oai.responses.retrieve(running.id).status == "cancelled"

    # DELETE cancels a running response; the engine keeps the record.
    doomed = oai.responses.create(model=MODEL, input=slow_task(site), background=True)
    raw = oai.responses.with_raw_response.delete(doomed.id)
    assert raw.http_response.json() == {"id": doomed.id, "object": "response.deleted", "deleted": True}
    assert oai.responses.retrieve(doomed.id).status == "cancelled"


def test_cancelling_a_finished_response_is_a_conflict(oai: openai.OpenAI, site: DemoSite) -> None:
    done = oai.responses.create(model=MODEL, input=gorilla_task(site, "Asia"))
    with pytest.raises(openai.ConflictError) as e:
        oai.responses.cancel(done.id)
    assert isinstance(e.value.body, dict) and e.value.body["code"] == "response_already_ended"
    assert "completed" in e.value.body["message"]
    assert e.value.response.headers["x-should-retry"] == "false"
    # Deleting a finished response is fine (nothing to cancel).
    assert oai.responses.with_raw_response.delete(done.id).http_response.json()["deleted"] is True


@pytest.mark.asyncio
async def test_usage_is_summed_over_the_task(aoai: openai.AsyncOpenAI, client: Client, site: DemoSite) -> None:
    resp = await aoai.responses.create(model=MODEL, input=gorilla_task(site, "South America"))
    task = await client.get_task(resp.id.removeprefix("resp_"))
    assert task.state == pb.TASK_STATE_COMPLETED
    assert resp.usage is not None
    assert resp.usage.input_tokens == sum(u.prompt_tokens for u in task.tree_usage) > 0
    assert resp.usage.output_tokens == sum(u.completion_tokens for u in task.tree_usage) > 0
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    got = await apoll(lambda: aoai.responses.retrieve(resp.id), _settled)
    assert got.usage == resp.usage


@pytest.mark.asyncio
async def test_usage_covers_every_subtask(gateway: Gateway, client: Client, site: DemoSite) -> None:
    # A task with a subtask (the session engine allows one level of nesting, so the child answers
    # at once): the usage is the whole tree's (Task.tree_usage), more than the task's own.
    # (One base URL only: the tree is the point, not the route.)
    async with openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0,
                                  timeout=120) as oai:
        resp = await oai.responses.create(model=MODEL, input=f"Nested tour of Asia from {site.url}index.html")
        task = await client.get_task(resp.id.removeprefix("resp_"))
        # The child, at the nesting limit, gives up, and so may the parent: the status says which.
        assert task.state == pb.TASK_STATE_COMPLETED and resp.output_text
        assert resp.status == ("completed" if task.success else "failed"), (resp.status, resp.error)
        assert len(task.subtask_ids) == 1
        assert resp.usage is not None
        assert resp.usage.input_tokens == sum(u.prompt_tokens for u in task.tree_usage) \
            > sum(u.prompt_tokens for u in task.usage)
        assert resp.usage.output_tokens == sum(u.completion_tokens for u in task.tree_usage) \
            > sum(u.completion_tokens for u in task.usage)
        assert (await oai.responses.retrieve(resp.id)).usage == resp.usage
