"""The dashboard's parts without a browser or an engine: sessions, views, plots, thumbnails' bounds,
step latency counters and the num_copies check."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from starlette.requests import HTTPConnection
from starlette.templating import Jinja2Templates

from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.config import Config, config_from_dict
from blast_grpc.coordinator.launch import Launcher
from blast_grpc.coordinator.tasks import TaskStore
from blast_grpc.coordinator.telemetry import Telemetry
from blast_grpc.worker.thumbnails import Thumbnails
from gateway.dashboard.app import HERE, sse_frame
from gateway.dashboard.auth import COOKIE, Sessions, safe_next
from gateway.dashboard.plots import Sample, series, sparkline
from gateway.dashboard.views import event_fragment, task_row

ENV = Jinja2Templates(directory=str(HERE / "templates")).env


def conn(headers: dict[str, str]) -> HTTPConnection:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return HTTPConnection({"type": "http", "headers": raw, "method": "GET", "path": "/"})


# --- sessions --------------------------------------------------------------------------------
def test_a_session_cookie_is_issued_for_a_key_only_and_is_not_the_key() -> None:
    s = Sessions(["k1", "k2"])
    assert s.login("nope") is None and s.login("") is None
    token = s.login(" k2 ")
    assert token and "k2" not in token
    assert s.allowed(conn({"cookie": f"{COOKIE}={token}"}))
    assert not s.allowed(conn({"cookie": f"{COOKIE}=forged"}))
    assert s.allowed(conn({"authorization": "Bearer k1"}))
    assert not s.allowed(conn({}))
    # a restarted dashboard draws a new secret: old cookies stop working
    assert not Sessions(["k1", "k2"]).allowed(conn({"cookie": f"{COOKIE}={token}"}))


def test_without_keys_everything_is_open() -> None:
    s = Sessions([])
    assert s.open and s.allowed(conn({}))


@pytest.mark.parametrize("target,expected", [
    ("/tasks/t1?x=1", "/tasks/t1?x=1"), ("//evil.test/x", "/"), ("http://evil.test/", "/"),
    ("javascript:alert(1)", "/"), ("", "/"), ("tasks", "/"),
])
def test_login_only_returns_to_this_site(target: str, expected: str) -> None:
    assert safe_next(target) == expected


# --- views -------------------------------------------------------------------------------------
def ts(seconds: float) -> Timestamp:
    t = Timestamp()
    t.FromMicroseconds(int(seconds * 1e6))
    return t


def test_a_task_row_sums_its_tree() -> None:
    task = pb.Task(task_id="t1", spec=pb.TaskSpec(description="d" * 500), state=pb.TASK_STATE_COMPLETED,
                   started_at=ts(100), finished_at=ts(112.5), subtask_ids=["a", "b"],
                   tree_usage=[pb.Usage(model="m", requests=3, cost_usd=0.5),
                               pb.Usage(model="n", requests=2, cost_usd=0.25)])
    row = task_row(task)
    assert (row.model_calls, row.cost_usd, row.duration, row.done, row.subtasks) == (5, 0.75, "12.5 s", True, 2)
    assert len(row.description) < 300 and row.description.endswith("more characters)")
    assert task_row(pb.Task(task_id="q", state=pb.TASK_STATE_QUEUED, queue_position=4)).duration == "–"


def test_a_step_becomes_an_out_of_band_list_item_with_its_thumbnail() -> None:
    jpeg = b"\xff\xd8\xff fake"
    ev = pb.TaskEvent(task_id="t1", seq=5, step=pb.TaskStep(number=2, thought="<b>hm</b>", action="click(3)",
                                                             url="http://x/", result="ok", thumbnail=jpeg))
    html = event_fragment(ENV, ev)
    assert 'hx-swap-oob="beforeend:#steps-t1"' in html and 'data-step="2"' in html
    assert "data:image/jpeg;base64," + base64.b64encode(jpeg).decode() in html
    assert "&lt;b&gt;hm&lt;/b&gt;" in html and "<b>hm</b>" not in html  # escaped
    no_thumb = event_fragment(ENV, pb.TaskEvent(task_id="t1", step=pb.TaskStep(number=1)))
    assert "<img" not in no_thumb


def test_a_launched_copy_becomes_a_node_in_its_parents_children() -> None:
    ev = pb.TaskEvent(task_id="root", subtask_launched=pb.SubtaskLaunched(subtask_id="c2", description="x", copy=2))
    html = event_fragment(ENV, ev)
    assert 'hx-swap-oob="beforeend:#children-root"' in html
    assert 'id="node-c2"' in html and "copy 2" in html and 'id="steps-c2"' in html and 'id="cancel-c2"' in html


def test_an_end_sets_the_state_and_clears_the_controls() -> None:
    html = event_fragment(ENV, pb.TaskEvent(task_id="t", cancelled=pb.TaskCancelled(reason="by me")))
    assert 'id="state-t"' in html and ">cancelled<" in html and "by me" in html
    assert '<span id="cancel-t" hx-swap-oob="true"></span>' in html
    assert '<span id="pause-t" hx-swap-oob="true"></span>' in html
    done = event_fragment(ENV, pb.TaskEvent(task_id="t", completed=pb.TaskCompleted(result="42", success=False)))
    assert "completed (no success)" in done and "42" in done


def test_a_question_gets_an_answer_box_with_the_question_escaped() -> None:
    ev = pb.TaskEvent(task_id="t", input_required=pb.InputRequired(question="<script>x</script>?", kind="question"))
    html = event_fragment(ENV, ev)
    assert 'hx-post="/tasks/t/respond"' in html and "waiting for a person" in html
    assert "<script>x" not in html and "&lt;script&gt;" in html
    paused = event_fragment(ENV, pb.TaskEvent(task_id="t", input_required=pb.InputRequired(kind="paused", url="u")))
    assert 'data-kind="paused"' in paused and "Resume" in paused


def test_an_sse_frame_carries_every_line_and_the_seq() -> None:
    assert sse_frame(7, "tree", "<a>\n<b>") == b"id: 7\nevent: tree\ndata: <a>\ndata: <b>\n\n"
    assert sse_frame(0, "end", "") == b"event: end\ndata: \n\n"


# --- plots --------------------------------------------------------------------------------------
def sample(t: float, cost: float = 0.0, steps: int = 0, secs: float = 0.0, running: int = 0) -> Sample:
    return Sample(t, running, 0, 0, 0.0, cost, steps, secs)


def test_rates_come_from_differences_and_latency_holds_between_steps() -> None:
    plots = {s.key: s for s in series([sample(0), sample(30, cost=0.5, steps=4, secs=2.0), sample(60, cost=0.5,
                                                                                                 steps=4, secs=2.0)])}
    assert plots["cost"].values == [1.0, 0.0]
    assert plots["latency"].values == [0.5, 0.5]
    assert plots["latency"].latest == "0.5 s"
    assert series([])[0].latest == "–"


def test_a_sparkline_scales_to_its_box() -> None:
    svg = str(sparkline([0, 5, 10], 100, 20, "x<y"))
    assert "<polyline" in svg and "2.0,18.0" in svg and "98.0,2.0" in svg and "x&lt;y" in svg
    assert "<polyline" not in str(sparkline([], 100, 20, "none"))


# --- thumbnails and step latency ------------------------------------------------------------------
class FakeCdp:
    def __init__(self, image: bytes) -> None:
        self.image = image

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        if method == "Page.getLayoutMetrics":
            return {"cssVisualViewport": {"pageX": 0, "pageY": 100, "clientWidth": 1280, "clientHeight": 720}}
        assert params is not None and params["clip"]["scale"] == 0.25 and params["clip"]["y"] == 100
        return {"data": base64.b64encode(self.image).decode()}

    async def detach(self) -> None:
        pass


class FakeContext:
    def __init__(self, image: bytes) -> None:
        self.image = image

    async def new_cdp_session(self, page: object) -> FakeCdp:
        return FakeCdp(self.image)


class FakePage:
    def __init__(self, image: bytes, url: str = "http://x/") -> None:
        self.context = FakeContext(image)
        self.url = url


@pytest.mark.asyncio
async def test_thumbnails_stop_at_their_count_and_byte_bounds() -> None:
    by_count = Thumbnails(max_count=2, max_bytes=10_000)
    got = [await by_count.take(FakePage(b"x" * 100)) for _ in range(3)]  # type: ignore[arg-type]
    assert got == [b"x" * 100, b"x" * 100, b""]
    by_bytes = Thumbnails(max_count=50, max_bytes=250)
    got = [await by_bytes.take(FakePage(b"y" * 100)) for _ in range(4)]  # type: ignore[arg-type]
    assert got == [b"y" * 100, b"y" * 100, b"", b""] and by_bytes.count == 2
    assert await Thumbnails(5, 1000).take(FakePage(b"z", url="about:blank")) == b""  # type: ignore[arg-type]


def test_step_stats_count_the_workers_timing() -> None:
    stats = Telemetry()
    stats.step(pb.TaskStep(detail=json.dumps({"timing_ms": {"observe": 100, "llm": 250, "act": 150}})))
    stats.step(pb.TaskStep(detail="not json"))
    stats.step(pb.TaskStep())
    assert stats.steps == 3 and stats.step_seconds == pytest.approx(0.5)


# --- num_copies -------------------------------------------------------------------------------------
def launcher(config: Config) -> Launcher:
    return Launcher(config, TaskStore(), None)  # type: ignore[arg-type]  # only the checks are used


def test_num_copies_is_checked_against_first_of_n() -> None:
    off = launcher(Config())
    assert off.num_copies_problem(0) is None and off.num_copies_problem(1) is None
    assert "first_of_n" in str(off.num_copies_problem(2)) and "-1" in str(off.num_copies_problem(-1))
    on = launcher(config_from_dict({"constraints": {"allow_parallelism": {"first_of_n": True},
                                                    "first_of_n_num_copies": 3}}))
    assert on.num_copies_problem(3) is None and "first_of_n_num_copies" in str(on.num_copies_problem(4))
    assert on.copies_for_top_level(0) == 3 and on.copies_for_top_level(1) == 1 and on.copies_for_top_level(2) == 2
    assert off.copies_for_top_level(0) == 1
