from __future__ import annotations

import asyncio
import json

import pytest

from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.agent.observe import Observation
from blast_grpc.agent.tools import BROWSER_TOOLS, ActionError, browser_tools, parse_call
from blast_grpc.coordinator.tasks import TaskStore

OFFERED = {t["function"]["name"]: t["function"]["parameters"]["required"] for t in BROWSER_TOOLS}


@pytest.mark.asyncio
async def test_event_log_watchers_resume_exactly_once() -> None:
    store = TaskStore()
    rec = store.new(pb.TaskSpec(description="x"))
    rec.emit(scheduled=pb.TaskScheduled(queue_position=1))
    got: list[int] = []

    async def watcher(from_seq: int) -> list[int]:
        return [ev.seq async for ev in rec.watch(from_seq)]

    w1 = asyncio.create_task(watcher(1))
    w3 = asyncio.create_task(watcher(3))
    await asyncio.sleep(0)
    rec.emit(started=pb.TaskStarted(worker_id="w1"))
    rec.emit(step=pb.TaskStep(number=1))
    await asyncio.sleep(0)
    assert store.finish(rec, pb.TASK_STATE_COMPLETED, result="r", success=True)
    assert not store.finish(rec, pb.TASK_STATE_FAILED, error="late")  # terminal once
    got = await w1
    assert got == [1, 2, 3, 4]
    assert await w3 == [3, 4]
    assert rec.state == pb.TASK_STATE_COMPLETED and rec.to_proto().last_seq == 4


def test_parse_call_reports_what_is_wrong() -> None:
    a = parse_call("click", '{"index": "3"}', "c1", OFFERED)
    assert a.args == {"index": 3} and a.describe() == "click(index=3)"
    with pytest.raises(ActionError, match="not valid JSON"):
        parse_call("click", '{"index": 3', "c", OFFERED)
    with pytest.raises(ActionError, match="needs index"):
        parse_call("click", "{}", "c", OFFERED)
    with pytest.raises(ActionError, match="unknown tool"):
        parse_call("launch_rocket", "{}", "c", OFFERED)
    with pytest.raises(ActionError, match="integer"):
        parse_call("click", '{"index": "third"}', "c", OFFERED)


def test_observation_render_bounds_text() -> None:
    obs = Observation("http://h/p", "T", ["[0] <a href=\"x\">X", "a" * 500], notes=["n1"],
                      scroll="0px above, 0px below (viewport 1280x720)")
    out = obs.render(2, 10, max_chars=100)
    lines = out.splitlines()
    assert lines[:6] == ["OBSERVATION", "URL: http://h/p", "TITLE: T", "NOTE: n1",
                         "SCROLL: 0px above, 0px below (viewport 1280x720)", "PAGE:"]
    assert "[0] <a href=\"x\">X" in lines and lines[-1] == "STEP: 2/10"
    assert "501 more characters" in out and len(out) < 400
    assert obs.element_line(0) == '<a href="x">X' and obs.element_line(1) is None


def test_tabs_line_only_with_several_tabs() -> None:
    one = Observation("http://h/p", "T", [], tabs=["[0] T http://h/p (current)"]).render(1, 5, 1000)
    assert "TABS:" not in one
    two = Observation("http://h/p", "T", [], tabs=["[0] T http://h/p (current)", "[1] U http://h/u"])
    assert "TABS: [0] T http://h/p (current) | [1] U http://h/u" in two.render(1, 5, 1000).splitlines()


def test_step_detail_is_one_object_with_timings_and_merged_parts() -> None:
    from blast_grpc.agent.loop import step_detail

    detail = json.loads(step_detail({"observe": 0.0123, "llm": 1.0, "act": 0.25}, [
        json.dumps({"observation_notes": ["a dialog was dismissed"], "pages": 1}),
        "",
        json.dumps({"notes": ["a popup was closed"], "pages": 2}),
        json.dumps({"notes": ["a download was refused"], "chunks": 3}),
    ]))
    assert detail == {"timing_ms": {"observe": 12.3, "llm": 1000.0, "act": 250.0},
                      "observation_notes": ["a dialog was dismissed"], "pages": 2,
                      "notes": ["a popup was closed", "a download was refused"], "chunks": 3}


def test_the_tools_are_offered_in_one_fixed_order() -> None:
    names = [t["function"]["name"] for t in browser_tools(upload=False)]
    assert names == ["go_to_url", "click", "type", "select_option", "send_keys", "hover", "scroll", "scroll_to_text",
                     "drag_and_drop", "switch_tab", "close_tab", "go_back", "wait", "extract_content", "done"]
    assert browser_tools(upload=False) == browser_tools(upload=False)
