"""People in the loop, part by part, without processes: the tool offer, the coordinator's
HumanDesk (with a stand-in scheduler), the simulated model reading a person's words, and
the gateway's turn events (ask_human as a function call)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import pytest

from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.agent.human import ANSWER_PREFIX, INSTRUCTION_PREFIX
from blast_grpc.agent.loop import Agent
from blast_grpc.config import ConfigError, config_from_dict
from blast_grpc.coordinator.human import HumanDesk, HumanRefused
from blast_grpc.coordinator.tasks import TaskRecord, TaskStore
from blast_grpc.demo_site import GORILLAS
from blast_grpc.llm import UsageMeter
from blast_grpc.sim import SHIPPED_DIR, load_scenarios
from blast_grpc.sim import messages as m
from blast_grpc.sim.protocol import parse_request
from blast_grpc.sim.server import decide
from gateway.events import ResponseBase
from gateway.human import TurnEvents, call_id, split_turn, turn_response_id

from ..conftest import TEST_SCENARIOS

BASE = "http://127.0.0.1:8123/"
INDEX_ELEMENTS = [f'<a href="{g.page}">{g.continent}' for g in GORILLAS.values()]


class _Human:
    async def ask(self, kind: str, question: str) -> str:
        return "yes"


async def _no_step(_: Any) -> None:
    return None


def _config(on: bool, **settings: Any) -> Any:
    return config_from_dict({"constraints": {"require_human_in_loop": on}, "settings": settings})


def test_ask_human_is_offered_last_and_only_when_on() -> None:
    def names(on: bool, human: Any) -> list[str]:
        agent = Agent(_config(on), None, UsageMeter(), _no_step, human=human)  # type: ignore[arg-type]
        return [t["function"]["name"] for t in agent.tools]

    assert names(True, _Human())[-1] == "ask_human"
    assert names(True, _Human())[:-1] == names(False, _Human())
    assert "ask_human" not in names(False, _Human())
    assert "ask_human" not in names(True, None)  # no way to reach a person: not offered


def test_config_takes_the_switch_and_checks_the_timeout() -> None:
    assert _config(True).constraints.require_human_in_loop
    assert _config(False).settings.human_response_timeout_s == 900
    with pytest.raises(ConfigError, match="human_response_timeout_s"):
        _config(True, human_response_timeout_s=0)


class _Scheduler:
    """What HumanDesk asks of the scheduler, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def release(self, rec: TaskRecord) -> None:
        self.calls.append(("release", rec.task_id))

    async def reacquire(self, rec: TaskRecord) -> None:
        self.calls.append(("reacquire", rec.task_id))

    def cancel(self, rec: TaskRecord, reason: str) -> None:
        self.calls.append(("cancel", reason))


def _desk(timeout: float = 600) -> tuple[HumanDesk, _Scheduler, TaskRecord]:
    sched = _Scheduler()
    desk = HumanDesk(_config(True, human_response_timeout_s=timeout), sched, lambda: [])  # type: ignore[arg-type]
    rec = TaskStore().new(pb.TaskSpec(description="t"))
    rec.state = pb.TASK_STATE_RUNNING
    return desk, sched, rec


@pytest.mark.asyncio
async def test_desk_question_answer_and_events() -> None:
    desk, sched, rec = _desk()
    asking = asyncio.create_task(desk.ask(rec, "question", "Which one?", b"\xff\xd8\xffjpeg", "http://x/"))
    while not desk.waiting(rec.task_id):
        await asyncio.sleep(0)
    assert rec.state == pb.TASK_STATE_WAITING_FOR_HUMAN
    assert await desk.screenshot(rec) == (b"\xff\xd8\xffjpeg", "http://x/")
    with pytest.raises(HumanRefused) as err:  # one open question per task
        await desk.ask(rec, "question", "Another?")
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    desk.respond(rec, "That one.")
    assert rec.state == pb.TASK_STATE_RUNNING
    assert await asking == "That one."
    assert sched.calls == [("release", rec.task_id), ("reacquire", rec.task_id)]
    kinds = [ev.WhichOneof("kind") for ev in rec.events]
    assert kinds == ["input_required", "human_responded"]
    assert rec.events[0].input_required.question == "Which one?"
    with pytest.raises(HumanRefused) as err:
        desk.respond(rec, "again")
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "not waiting for a person" in str(err.value)


@pytest.mark.asyncio
async def test_desk_timeout_fails_the_task_with_the_reason() -> None:
    desk, sched, rec = _desk(timeout=0.01)
    with pytest.raises(HumanRefused) as err:
        await desk.ask(rec, "question", "Anyone there?")
    assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert rec.state == pb.TASK_STATE_FAILED
    assert "human_response_timeout_s = 0.01s: Anyone there?" in rec.error
    assert sched.calls[-1] == ("cancel", rec.error)
    assert not desk.waiting(rec.task_id)


@pytest.mark.asyncio
async def test_desk_forgets_a_question_whose_call_went_away() -> None:
    desk, _, rec = _desk()
    asking = asyncio.create_task(desk.ask(rec, "paused", "What next?"))
    while not desk.waiting(rec.task_id):
        await asyncio.sleep(0)
    asking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asking
    with pytest.raises(HumanRefused):
        desk.respond(rec, "late")
    with pytest.raises(HumanRefused) as err:
        await desk.ask(rec, "other", "?")
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and "kind must be" in str(err.value)


def _sim(history: list[Any], current: str, extra: list[dict[str, Any]] | None = None) -> Any:
    task = f"Ask a person which continent to look up at {BASE}index.html"
    msgs = m.agent_messages(task, None, history)
    msgs += extra or []
    msgs.append({"role": "user", "content": current})
    body = {"model": "m", "messages": msgs, "tools": m.tool_schemas([*m.TOOL_PARAMS, "ask_human"])}
    return decide(load_scenarios([SHIPPED_DIR, TEST_SCENARIOS]), parse_request(body))


def test_sim_asks_then_follows_the_answer_it_was_given() -> None:
    index = m.observation(BASE + "index.html", "Gorilla Records", INDEX_ELEMENTS)
    first = _sim([], index)
    assert first.tool == "ask_human" and "Which continent" in first.args["question"]
    asked = ("ask_human", first.args, ANSWER_PREFIX + "Asia, please")
    d = _sim([asked], index)
    assert (d.tool, d.args) == ("click", {"index": list(GORILLAS).index("Asia")})
    unclear = _sim([("ask_human", first.args, ANSWER_PREFIX + "whatever")], index)
    assert unclear.tool == "done" and "whatever" in unclear.args["text"]


def test_sim_reads_a_paused_task_instruction() -> None:
    index = m.observation(BASE + "index.html", "Gorilla Records", INDEX_ELEMENTS)
    body = {"model": "m", "tools": m.tool_schemas(), "messages": [
        *m.agent_messages(f"Wander around {BASE}index.html until told", None, [("wait", {"seconds": 1}, "Waited")]),
        {"role": "user", "content": INSTRUCTION_PREFIX + "read Oceania"},
        {"role": "user", "content": index}]}
    req = parse_request(body)
    assert req.human_said == "read Oceania"
    d = decide(load_scenarios([SHIPPED_DIR, TEST_SCENARIOS]), req)
    assert (d.tool, d.args) == ("click", {"index": list(GORILLAS).index("Oceania")})


def _ev(seq: int, task_id: str = "task_r", **kind: Any) -> pb.TaskEvent:
    return pb.TaskEvent(task_id=task_id, seq=seq, **kind)


def test_turn_ids_round_trip() -> None:
    assert turn_response_id("task_r", 0) == "resp_task_r"
    assert split_turn(turn_response_id("task_r", 0)) == ("task_r", 0)
    assert split_turn(turn_response_id("task_r", 12)) == ("task_r", 12)
    assert split_turn("resp_task_r~x") == ("task_r~x", 0)  # not a turn: an (unknown) task id


def _log() -> list[pb.TaskEvent]:
    return [
        _ev(1, started=pb.TaskStarted(worker_id="w1", attempt=1)),
        _ev(2, step=pb.TaskStep(number=1, action="go_to_url(...)", url="http://x/")),
        _ev(3, input_required=pb.InputRequired(question="Which?", kind="question")),
        _ev(4, human_responded=pb.HumanResponded(answer="Asia")),
        _ev(5, input_required=pb.InputRequired(question="paused before step 3", kind="paused")),
        _ev(6, step=pb.TaskStep(number=2, action="click(3)", url="http://x/asia")),
        _ev(7, completed=pb.TaskCompleted(result="Tamarind", success=True)),
    ]


def test_first_turn_ends_with_an_ask_human_call() -> None:
    tr = TurnEvents(ResponseBase(id="resp_task_r", created_at=0, model="m"), "task_r")
    types = [e.type for ev in _log() for e in tr.feed(ev)]
    assert types[-4:] == ["response.output_item.added", "response.function_call_arguments.delta",
                          "response.function_call_arguments.done", "response.output_item.done"]
    final = tr.final(pb.Task(task_id="task_r", state=pb.TASK_STATE_WAITING_FOR_HUMAN), tokens=_tokens())
    assert final.status == "completed"
    call = final.output[-1]
    assert call.type == "function_call" and call.name == "ask_human"
    assert call.call_id == call_id("task_r", 3) and json.loads(call.arguments) == {"question": "Which?"}
    assert all(item.status == "completed" for item in final.output)


def test_next_turn_starts_after_the_question_and_shows_a_pause_as_progress() -> None:
    tr = TurnEvents(ResponseBase(id="resp_task_r~3", created_at=0, model="m"), "task_r", after_seq=3)
    for ev in _log():
        tr.feed(ev)
    final = tr.final(pb.Task(task_id="task_r", state=pb.TASK_STATE_COMPLETED), tokens=_tokens())
    assert final.status == "completed" and final.output_text == "Tamarind"
    summary = [s.text for item in final.output if item.type == "reasoning" for s in item.summary]
    assert summary[0].startswith("Paused, waiting for a person")
    assert not any("go_to_url" in s for s in summary)  # step 1 belongs to the first turn


def _tokens() -> Any:
    from gateway.convert import Tokens
    return Tokens(prompt=1, completion=1)


class _Cache:
    def __init__(self) -> None:
        self.stored: list[str] = []

    def put_result(self, key: str, result: str) -> None:
        self.stored.append("result")

    def put_plan(self, key: str, plan: str) -> None:
        self.stored.append("plan")


@pytest.mark.parametrize("answers", [0, 1])
def test_a_run_a_person_answered_is_not_cached(answers: int) -> None:
    from blast_grpc.coordinator.launch import Launcher

    cache = _Cache()
    launcher = Launcher(_config(True), TaskStore(), None, cache)  # type: ignore[arg-type]
    rec = TaskStore().new(pb.TaskSpec(description="t"))
    rec.state, rec.recording = pb.TASK_STATE_RUNNING, '{"version": 1}'
    for _ in range(answers):
        rec.human_answered("Asia")
    rec.state, rec.success = pb.TASK_STATE_COMPLETED, True
    launcher._record(rec)
    assert cache.stored == ([] if answers else ["result", "plan"])


@pytest.mark.asyncio
async def test_an_ended_task_takes_no_answer_and_shows_no_page() -> None:
    desk, _, rec = _desk()
    asking = asyncio.create_task(desk.ask(rec, "question", "Which one?", b"\xff\xd8\xffjpeg", "http://x/"))
    while not desk.waiting(rec.task_id):
        await asyncio.sleep(0)
    # Cancelled: the record ends at once; the worker's AskHuman call goes a moment later.
    rec.finish(pb.TASK_STATE_CANCELLED, error="cancelled by the client")
    with pytest.raises(HumanRefused) as err:
        desk.respond(rec, "too late")
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert rec.state == pb.TASK_STATE_CANCELLED
    with pytest.raises(HumanRefused):
        await desk.screenshot(rec)
    asking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asking
