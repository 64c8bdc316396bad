"""The shipped subtask scenarios, driven by a small stand-in for the engine, and fan-out over HTTP."""

from __future__ import annotations

import asyncio
import html
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlparse

import openai
import pytest

from blast_grpc.demo_site import GORILLAS, PAGES_DIR
from blast_grpc.sim import SimServer, load_scenarios
from blast_grpc.sim import messages as m
from blast_grpc.sim.protocol import parse_request
from blast_grpc.sim.server import decide

BASE = "http://127.0.0.1:8123/"
SHIPPED = load_scenarios()
INDEX_ELEMENTS = [f'<a href="{g.page}">{g.continent}' for g in GORILLAS.values()] + [
    '<a href="article.html">Long article', '<a href="form.html">Order form']
EVERY = f"On {BASE}index.html find the largest gorilla in every continent"
ALL_SIX = "Largest gorillas — " + "; ".join(f"{g.continent}: {g.name}" for g in GORILLAS.values())


def demo_observation(url: str, step: int) -> str:
    """What the engine would show for a demo-site URL (index, or a continent page with its text)."""
    name = urlparse(url).path.lstrip("/") or "index.html"
    if url == "about:blank":
        return m.observation("about:blank", "", [], "", step)
    if name == "index.html":
        return m.observation(url, "Gorilla Records", INDEX_ELEMENTS, "Gorilla Records", step)
    raw = (PAGES_DIR / name).read_text(encoding="utf-8")
    raw = re.sub(r"<title>.*?</title>", "", raw, flags=re.S)
    text = html.unescape(re.sub(r"[ \t]*<[^>]+>[ \t]*", "\n", raw)).strip()
    return m.observation(url, name, ['<a href="index.html">Back to index'], text, step)


@dataclass
class Outcome:
    text: str
    success: bool
    steps: int
    replies: list[list[tuple[str, dict[str, Any]]]] = field(default_factory=list)


@dataclass
class MiniEngine:
    """Runs a task against the shipped scenarios the way the engine talks to the model.

    Tasks at depth < ``max_depth`` are offered the subtask tools; subtasks run to
    completion when launched, and their outcomes come back as the engine formats them.
    """

    max_depth: int = 1
    max_steps: int = 25
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    launches: int = 0

    def run(self, task: str, initial_url: str = "", depth: int = 0, copy: tuple[int, int] | None = None) -> Outcome:
        url, back = initial_url or "about:blank", []
        history: list[Any] = []
        replies: list[list[tuple[str, dict[str, Any]]]] = []
        tools = m.tool_schemas(subtasks=depth < self.max_depth)
        for step in range(1, self.max_steps + 1):
            body = {"model": "m", "tools": tools,
                    "messages": m.agent_messages(task, demo_observation(url, step), history, copy=copy)}
            d = decide(SHIPPED, parse_request(body))
            replies.append(d.calls)
            calls = []
            for tool, args in d.calls:
                if tool == "done":
                    return Outcome(args["text"], args["success"], step, replies)
                if tool == "go_to_url":
                    back.append(url)
                    url, result = args["url"], f"Opened {args['url']}"
                elif tool == "go_back":
                    url = back.pop()
                    result = f"Went back to {url}"
                elif tool == "click":
                    href = re.search(r'href="([^"]+)"', INDEX_ELEMENTS[args["index"]])
                    assert href is not None
                    back.append(url)
                    url, result = urljoin(url, href.group(1)), f"Clicked [{args['index']}]"
                elif tool == "launch_subtask":
                    self.launches += 1
                    task_id = f"task_{self.launches:04x}"
                    self.outcomes[task_id] = self.run(args["task"], args.get("initial_url", ""), depth + 1)
                    result = f"Launched subtask {task_id}"
                elif tool == "get_subtask_results":
                    result = m.results_message(
                        m.subtask_line(t, "success" if self.outcomes[t].success else "gave up", self.outcomes[t].text)
                        for t in args["task_ids"])
                else:
                    raise AssertionError(f"unexpected tool {tool}")
                calls.append((tool, args, result))
            assert calls, f"no tool call at step {step}: {d.content}"
            history.append(m.Turn(calls, d.content))
        raise AssertionError("step limit")


def test_every_continent_launches_six_subtasks_in_one_reply_and_aggregates() -> None:
    engine = MiniEngine(max_depth=1)
    out = engine.run(EVERY)
    assert (out.text, out.success) == (ALL_SIX, True)
    assert [[t for t, _ in r] for r in out.replies] == [
        ["go_to_url"], ["launch_subtask"] * 6, ["get_subtask_results"], ["done"]]
    assert out.replies[1][1][1] == {"task": f"On {BASE}asia.html find the largest gorilla in Asia",
                                    "initial_url": f"{BASE}asia.html"}
    assert out.replies[2][0][1] == {"task_ids": list(engine.outcomes)} and len(engine.outcomes) == 6
    # Each subtask starts on its continent page and answers at once (gorilla-one-continent's first rule).
    for sub, g in zip(engine.outcomes.values(), GORILLAS.values(), strict=True):
        assert (sub.text, sub.success, sub.steps) == (
            f"The largest gorilla in {g.continent} is {g.name} ({g.kg} kg).", True, 1)


def test_every_continent_without_subtasks_visits_each_page_and_gives_the_same_answer() -> None:
    out = MiniEngine(max_depth=0).run(EVERY)
    assert (out.text, out.success) == (ALL_SIX, True)
    assert all(len(r) == 1 for r in out.replies)
    opened = [a["url"] for r in out.replies for t, a in r if t == "go_to_url"]
    index = BASE + "index.html"
    assert opened == [index] + [BASE + g.page for g in GORILLAS.values()] + [index]
    assert out.steps == 9  # within the engine tests' limit of 12 steps


def test_every_continent_without_subtasks_remembers_the_pages_in_its_thoughts() -> None:
    index = demo_observation(BASE + "index.html", 2)
    history: list[Any] = [("go_to_url", {"url": BASE + "index.html"}, f"Opened {BASE}index.html")]
    body = {"model": "m", "tools": m.tool_schemas(), "messages": m.agent_messages(EVERY, index, history)}
    d = decide(SHIPPED, parse_request(body))
    assert d.calls == [("go_to_url", {"url": BASE + "africa.html"})]
    pages = ", ".join(f"{g.continent} <{BASE}{g.page}>" for g in GORILLAS.values())
    assert d.content == f"Continent pages to visit: {pages}"
    history.append(("go_to_url", {"url": BASE + "africa.html"}, f"Opened {BASE}africa.html", d.content))
    body["messages"] = m.agent_messages(EVERY, demo_observation(BASE + "africa.html", 3), history)
    d = decide(SHIPPED, parse_request(body))
    assert d.calls == [("go_to_url", {"url": BASE + "asia.html"})]
    assert d.content == "The largest gorilla in Africa is Mbeleko (231 kg). Next: Asia."


def test_every_continent_without_subtasks_starting_on_a_continent_page() -> None:
    engine = MiniEngine(max_depth=0)
    out = engine.run(EVERY, initial_url=BASE + "asia.html")
    # No list of pages yet: note Asia, go to the start page, then the usual tour (Asia again, not noted twice).
    order = ["Asia"] + [c for c in GORILLAS if c != "Asia"]
    expected = "Largest gorillas — " + "; ".join(f"{c}: {GORILLAS[c].name}" for c in order)
    assert (out.text, out.success, out.steps) == (expected, True, 9)
    assert out.replies[0] == [("go_to_url", {"url": BASE + "index.html"})]


def test_every_continent_results_with_failures_and_nothing_found() -> None:
    launched = m.Turn([("launch_subtask", {}, m.launched_result(f"task_{i}")) for i in range(3)])
    lines = [m.subtask_line("task_0", "success", "The largest gorilla in Asia is Tamarind (204 kg)."),
             m.subtask_line("task_1", "failed", "worker crashed"),
             m.subtask_line("task_2", "gave up", "This page does not say which gorilla is the largest in Europe.")]
    history = [launched, ("get_subtask_results", {}, m.results_message(lines))]
    body = {"model": "m", "tools": m.tool_schemas(subtasks=True),
            "messages": m.agent_messages(EVERY, demo_observation(BASE + "index.html", 3), history)}
    assert decide(SHIPPED, parse_request(body)).args == {"text": "Largest gorillas — Asia: Tamarind", "success": True}
    history[-1] = ("get_subtask_results", {}, m.results_message(lines[1:]))
    body["messages"] = m.agent_messages(EVERY, demo_observation(BASE + "index.html", 3), history)
    assert decide(SHIPPED, parse_request(body)).args == {"text": "Largest gorillas — nothing found", "success": False}


def test_every_continent_plan_lists_the_links_of_the_open_page() -> None:
    obs = demo_observation(BASE + "index.html", 0)
    d = decide(SHIPPED, parse_request({"model": "m", "messages": m.plan_messages(EVERY, obs)}))
    assert d.scenario == "gorillas-every-continent"
    assert "(links on the page: Africa, Asia, Europe, North America, South America, Oceania, Long article, " \
           "Order form)" in d.content


def test_nested_tour_goes_two_levels_deep() -> None:
    engine = MiniEngine(max_depth=2)
    out = engine.run(f"Take a nested tour of Oceania from {BASE}index.html.")
    g = GORILLAS["Oceania"]
    assert (out.text, out.success, out.steps) == (f"The largest gorilla in Oceania is {g.name} ({g.kg} kg).", True, 3)
    level_two, leaf = engine.outcomes["task_0001"], engine.outcomes["task_0002"]
    assert (level_two.text, leaf.text) == (out.text, out.text)
    assert out.replies[0] == [("launch_subtask", {
        "task": f"Nested level two: find the largest gorilla in Oceania from {BASE}index.html"})]
    assert leaf.steps == 3  # go_to_url index, click Oceania, done


def test_nested_level_two_hits_the_depth_limit() -> None:
    engine = MiniEngine(max_depth=1)
    out = engine.run(f"nested tour of Asia from {BASE}index.html")
    (level_two,) = engine.outcomes.values()
    assert (level_two.text, level_two.success) == ("sim: tool launch_subtask is not offered", False)
    assert out.success is False
    assert out.text == "The subtask did not succeed: [task_0001] completed (gave up): " \
                       "sim: tool launch_subtask is not offered"


def test_race_copies_answer_with_their_copy_number_and_delays() -> None:
    task = f"On {BASE}index.html race to find the largest gorilla in Europe"
    g = GORILLAS["Europe"]
    for k in (1, 2, 3):
        out = MiniEngine(max_depth=0).run(task, copy=(k, 3))
        assert (out.text, out.success) == (f"The largest gorilla in Europe is {g.name} ({g.kg} kg) (copy {k})", True)
    delays = []
    for copy in ((1, 3), (2, 3), (3, 3), None):
        body = {"model": "m", "tools": m.tool_schemas(),
                "messages": m.agent_messages(task, demo_observation("about:blank", 1), copy=copy)}
        delays.append(decide(SHIPPED, parse_request(body)).delay)
    assert delays == [1.5, 0.05, 1.5, 0.0]
    assert MiniEngine(max_depth=0).run(task).text.endswith("(copy 1)")


# --- over HTTP, with the official client -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim():
    with SimServer() as s:
        yield s


def _client(sim: SimServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sim.base_url, api_key="x", max_retries=0, timeout=10)


FAN_MSGS = m.agent_messages(EVERY, demo_observation(BASE + "index.html", 2),
                            [("go_to_url", {"url": BASE + "index.html"}, f"Opened {BASE}index.html")])
FAN_TOOLS = m.tool_schemas(subtasks=True)
FAN_ARGS = [{"task": f"On {BASE}{g.page} find the largest gorilla in {g.continent}", "initial_url": BASE + g.page}
            for g in GORILLAS.values()]


@pytest.mark.asyncio
async def test_fan_out_is_one_message_with_six_tool_calls(sim: SimServer) -> None:
    async with _client(sim) as c:
        r = await c.chat.completions.create(model="m", messages=FAN_MSGS, tools=FAN_TOOLS)
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls" and msg.content == "One subtask per continent page."
    assert msg.tool_calls is not None
    assert [json.loads(tc.function.arguments) for tc in msg.tool_calls] == FAN_ARGS
    assert {tc.function.name for tc in msg.tool_calls} == {"launch_subtask"}
    assert len({tc.id for tc in msg.tool_calls}) == 6


@pytest.mark.asyncio
async def test_fan_out_streams_six_indexed_tool_calls(sim: SimServer) -> None:
    async with _client(sim) as c:
        stream = await c.chat.completions.create(model="m", messages=FAN_MSGS, tools=FAN_TOOLS, stream=True)
        calls: dict[int, dict[str, str]] = {}
        async for ch in stream:
            for choice in ch.choices:
                for tc in choice.delta.tool_calls or []:
                    call = calls.setdefault(tc.index, {"id": "", "name": "", "args": ""})
                    call["id"] += tc.id or ""
                    call["name"] += (tc.function.name or "") if tc.function else ""
                    call["args"] += (tc.function.arguments or "") if tc.function else ""
        async with c.chat.completions.stream(model="m", messages=FAN_MSGS, tools=FAN_TOOLS) as s:
            final = await s.get_final_completion()
    assert sorted(calls) == list(range(6))
    assert [json.loads(calls[i]["args"]) for i in range(6)] == FAN_ARGS
    assert len({c["id"] for c in calls.values()}) == 6
    tool_calls = final.choices[0].message.tool_calls or []
    assert [json.loads(tc.function.arguments) for tc in tool_calls] == FAN_ARGS


@pytest.mark.asyncio
async def test_copy_two_answers_before_copy_one(sim: SimServer) -> None:
    task = f"On {BASE}index.html race to find the largest gorilla in Asia"

    async def ask(c: openai.AsyncOpenAI, k: int) -> str:
        msgs = m.agent_messages(task, demo_observation(BASE + "asia.html", 1), copy=(k, 2))
        r = await c.chat.completions.create(model="m", messages=msgs, tools=m.tool_schemas())
        return json.loads(r.choices[0].message.tool_calls[0].function.arguments)["text"]

    async with _client(sim) as c:
        first = asyncio.create_task(ask(c, 1))
        second = asyncio.create_task(ask(c, 2))
        done, _ = await asyncio.wait({first, second}, return_when=asyncio.FIRST_COMPLETED)
        assert done == {second} and not first.done()
        assert second.result().endswith("(copy 2)") and (await first).endswith("(copy 1)")
