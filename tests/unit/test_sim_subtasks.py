"""The scenario language for subtasks: COPY/launched/results parsing, fan-out, aggregation, conditions, errors."""

from __future__ import annotations

from typing import Any

import pytest

from blast_grpc.sim import messages as m
from blast_grpc.sim.protocol import CONTEXT_HEADER, PLAN, parse_request, split_copy
from blast_grpc.sim.rules import Decision
from blast_grpc.sim.scenarios import ScenarioError, ScenarioSet, parse_document
from blast_grpc.sim.server import decide
from blast_grpc.sim.template import fill, render_value

BASE = "http://site.test/dir/"
LINKS = ['<a href="a.html">Alpha', '<a href="b.html">Beta</a>', '<button>Go', '<a href="a.html">Alpha',
         '<a href="http://other.test/c.html">Gamma']


def _body(msgs: list[dict[str, Any]], subtasks: bool = True, tools: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m", "messages": msgs}
    if tools:
        body["tools"] = m.tool_schemas(subtasks=subtasks)
    return body


def _ask(sset: ScenarioSet, task: str, current: str | None, history: list[Any] | None = None,
         subtasks: bool = True, copy: tuple[int, int] | None = None) -> Decision:
    msgs = m.agent_messages(task, current, history or [], copy=copy)
    return decide(sset, parse_request(_body(msgs, subtasks)))


# --- protocol ----------------------------------------------------------------------------------------------------


def test_copy_line_is_read_and_taken_out_of_the_task() -> None:
    req = parse_request(_body(m.agent_messages("find it on http://h/x", None, copy=(2, 3))))
    assert (req.task, req.copy, req.copies, req.copy_line) == ("find it on http://h/x", 2, 3, True)
    plain = parse_request(_body(m.agent_messages("find it", None)))
    assert (plain.copy, plain.copies, plain.copy_line) == (1, 1, False)
    # Before a CONTEXT block, or as the last line after it; a COPY line quoted inside the block is not one.
    context = f"{CONTEXT_HEADER}\n1. Task: t\n   Result: r"
    assert split_copy(f"task\nCOPY: 1/2\n{context}") == (f"task\n{context}", (1, 2))
    assert split_copy(f"task\n{context}\nCOPY: 3/4") == (f"task\n{context}", (3, 4))
    quoted = f"task\n{context}\nCOPY: 2/2\n   more"
    assert split_copy(quoted) == (quoted, None)


def test_parallel_calls_launched_ids_results_visited_and_thoughts() -> None:
    launch = m.Turn([("launch_subtask", {"task": "a"}, m.launched_result("task_0a1")),
                     ("launch_subtask", {"task": "b", "num_copies": 3}, "Launched subtask task_ff2 (3 racing copies)")],
                    thought="fan out")
    results = m.results_message([m.subtask_line("task_0a1", "success", "A is 1"),
                                 m.subtask_line("task_ff2", "failed", "boom")])
    history = [("go_to_url", {"url": "http://h/"}, "Opened http://h/", "open it"), launch,
               ("get_subtask_results", {"task_ids": ["task_0a1", "task_ff2"]}, results),
               ("go_back", {}, "Went back to http://h/prev")]
    no_step = "OBSERVATION\nURL: http://h/prev\nTITLE: \nELEMENTS:\nTEXT:\n"
    req = parse_request(_body(m.agent_messages("t", no_step, history)))
    assert [c.name for c in req.history] == ["go_to_url", "launch_subtask", "launch_subtask",
                                              "get_subtask_results", "go_back"]
    assert req.history[2].result == "Launched subtask task_ff2 (3 racing copies)" and req.history[2].thought == "fan out"
    assert req.launched == ["task_0a1", "task_ff2"]
    assert req.results == "Subtask results:\n[task_0a1] completed (success): A is 1\n[task_ff2] failed: boom"
    assert req.visited == ["http://h/", "http://h/prev"]
    assert req.thoughts == ["open it", "fan out"]
    # Four assistant messages (one of them with two calls): step 5.
    assert req.last_tool_result == "Went back to http://h/prev" and req.step == 5
    first = m.results_message([m.subtask_line("task_1", "cancelled", "lost the race")], first=True)
    req = parse_request(_body(m.agent_messages("t", None, [("get_first_subtask_result", {}, first)])))
    assert req.results == "First subtask result:\n[task_1] cancelled: lost the race" and req.launched == []


def test_planner_reads_copy_and_the_observation_of_the_open_page() -> None:
    obs = m.observation(BASE + "index.html", "Index", LINKS, "text", step=0)
    req = parse_request(_body(m.plan_messages("do it", obs, copy=(1, 2)), tools=False))
    assert req.kind == PLAN and req.task == "do it" and req.copies == 2
    assert req.observation is not None and req.observation.url == BASE + "index.html"
    assert req.links == ["Alpha", "Beta", "Alpha", "Gamma"]


def test_templates_abs_filter_and_list_values() -> None:
    v = {"url": BASE + "index.html", "href": "../up.html", "ids": ["task_1", "task_2"], "x": "a.b"}
    assert fill("{href|abs}", v) == "http://site.test/up.html"
    assert fill("{href|abs}", {"href": "a.html", "start_url": "http://s/p/"}) == "http://s/p/a.html"
    assert fill("{x|abs}", {"x": "http://full/"}) == "http://full/"  # no page: absolute stays as is
    assert fill("^{href|abs}$", v, regex=True) == r"^http://site\.test/up\.html$"
    assert fill("ids: {ids}", v) == "ids: task_1, task_2"
    assert render_value("{ids}", v) == ["task_1", "task_2"]
    assert render_value("{x}", v) == "a.b" and render_value(" {ids}", v) == " task_1, task_2"


# --- fan-out, aggregation, conditions ----------------------------------------------------------------------------

FAN = parse_document({"scenarios": [{
    "name": "fan",
    "task": "fan out",
    "copy_delays": {1: 0.5, "3": 0.25, "default": 2},
    "delay": 0.1,
    "plan": "Visit {links} at {url} (copy {copy} of {copies})",
    "rules": [
        {"when": {"results_present": True},
         "do": {"done": {"text": {"each": "\\[(?P<id>task_\\w+)\\] completed \\(success\\): (?P<r>.+)$",
                                  "in": "results", "format": "{id}={r}", "join": " | ", "prefix": "got: "}}}},
        {"when": {"launched_min": 2}, "do": {"get_first_subtask_result": {"task_ids": "{launched}"}}},
        {"when": {"launched_min": 1}, "do": {"get_subtask_results": {"task_ids": ["{launched}", "task_extra"]}}},
        {"when": {"offered": ["launch_subtask", "get_subtask_results"], "url": "index"},
         "for_each": {"element": "^<a href=\"(?P<href>[^\"]+)\">(?P<label>\\w+)"},
         "do": {"launch_subtask": {"task": "visit {label} at {href|abs}", "initial_url": "{href|abs}",
                                   "num_copies": 2}},
         "thought": "first is {label}"},
        {"for_each": {"element": "^<a href=\"(?P<href>[^\"]+)\">(?P<label>\\w+)",
                      "where": {"not": {"visited": "^{href|abs}$"}}, "limit": 1},
         "do": {"go_to_url": {"url": "{href|abs}"}}, "thought": "next: {label}"},
        {"do": {"done": {"text": {"each": "^(?P<u>\\S+)$", "in": "visited", "format": "{u}", "prefix": "visited: "},
                         "success": True}}},
    ],
}]}, "fan.yaml")

INDEX = m.observation(BASE + "index.html", "Index", LINKS)


def test_for_each_emits_one_call_per_matching_line_deduplicated_in_page_order() -> None:
    d = _ask(FAN, "fan out", INDEX)
    assert [t for t, _ in d.calls] == ["launch_subtask"] * 3
    assert [a for _, a in d.calls] == [
        {"task": "visit Alpha at http://site.test/dir/a.html", "initial_url": "http://site.test/dir/a.html",
         "num_copies": 2},
        {"task": "visit Beta at http://site.test/dir/b.html", "initial_url": "http://site.test/dir/b.html",
         "num_copies": 2},
        {"task": "visit Gamma at http://other.test/c.html", "initial_url": "http://other.test/c.html",
         "num_copies": 2}]
    assert (d.tool, d.args) == d.calls[0] and d.content == "first is Alpha"


def test_rule_with_no_matching_element_line_does_not_apply() -> None:
    d = _ask(FAN, "fan out", m.observation(BASE + "index.html", "Index", ["<button>Go"]))
    # Neither for_each rule applies; the last rule aggregates nothing: prefix + "nothing found".
    assert (d.tool, d.args) == ("done", {"text": "visited: nothing found", "success": False})


def test_unoffered_tools_switch_rules_and_where_filters_visited_lines() -> None:
    d = _ask(FAN, "fan out", INDEX, subtasks=False)
    assert d.calls == [("go_to_url", {"url": BASE + "a.html"})] and d.content == "next: Alpha"
    history = [("go_to_url", {"url": BASE + "a.html"}, f"Opened {BASE}a.html"),
               ("go_back", {}, f"Went back to {BASE}index.html")]
    d = _ask(FAN, "fan out", INDEX, history, subtasks=False)
    assert d.calls == [("go_to_url", {"url": BASE + "b.html"})] and d.content == "next: Beta"
    history += [("go_to_url", {"url": u}, f"Opened {u}") for u in (BASE + "b.html", "http://other.test/c.html")]
    d = _ask(FAN, "fan out", INDEX, history, subtasks=False)  # every link visited: aggregate the URLs
    assert d.args == {"text": f"visited: {BASE}a.html, {BASE}index.html, {BASE}b.html, http://other.test/c.html",
                      "success": True}


def test_launched_ids_become_a_list_argument() -> None:
    history = [("launch_subtask", {"task": "x"}, "Launched subtask task_a1")]
    d = _ask(FAN, "fan out", INDEX, history)
    assert d.calls == [("get_subtask_results", {"task_ids": ["task_a1", "task_extra"]})]
    history.append(("launch_subtask", {"task": "y"}, "Launched subtask task_b2"))
    d = _ask(FAN, "fan out", INDEX, history)
    assert d.calls == [("get_first_subtask_result", {"task_ids": ["task_a1", "task_b2"]})]


def test_aggregation_over_results_and_nothing_found() -> None:
    results = m.results_message([m.subtask_line("task_a1", "success", "one"),
                                 m.subtask_line("task_b2", "gave up", "no"),
                                 m.subtask_line("task_c3", "success", "three"),
                                 m.subtask_line("task_a1", "success", "one")])
    history: list[Any] = [("get_subtask_results", {"task_ids": []}, results)]
    d = _ask(FAN, "fan out", INDEX, history)
    assert (d.tool, d.args) == ("done", {"text": "got: task_a1=one | task_c3=three", "success": True})
    history = [("get_subtask_results", {"task_ids": []}, m.results_message([m.subtask_line("task_1", "failed", "x")]))]
    assert _ask(FAN, "fan out", INDEX, history).args == {"text": "got: nothing found", "success": False}


def test_copy_delays_apply_only_to_racing_copies() -> None:
    assert _ask(FAN, "fan out", INDEX).delay == pytest.approx(0.1)
    delays = [_ask(FAN, "fan out", INDEX, copy=(k, 4)).delay for k in (1, 2, 3, 4)]
    assert delays == pytest.approx([0.6, 2.1, 0.35, 2.1])
    # Even the failure for an unoffered tool waits like the copy's other replies.
    d = _ask(FAN, "fan out", INDEX, [("launch_subtask", {}, "Launched subtask task_1")], subtasks=False, copy=(3, 4))
    assert d.args == {"text": "sim: tool get_subtask_results is not offered", "success": False}
    assert d.delay == pytest.approx(0.35)


def test_plan_uses_links_url_and_copy() -> None:
    obs = m.observation(BASE + "index.html", "Index", LINKS, step=0)
    d = decide(FAN, parse_request(_body(m.plan_messages("fan out", obs, copy=(2, 3)), tools=False)))
    assert d.content == f"Visit Alpha, Beta, Alpha, Gamma at {BASE}index.html (copy 2 of 3)"
    d = decide(FAN, parse_request(_body(m.plan_messages("fan out"), tools=False)))
    assert d.content == "Visit  at  (copy 1 of 1)" and d.delay == 0


MEMO = parse_document({"scenarios": [{
    "name": "memo",
    "task": "memo",
    "rules": [
        {"when": {"url": "page"},
         "for_each": {"each": "(?P<name>\\w+)@(?P<u>\\S+)", "in": "thoughts",
                      "where": {"not": {"visited": "^{u}$"}}, "limit": 2},
         "do": {"go_to_url": {"url": "{u}"}}, "thought": "next {name}"},
        {"when": {"url": "index"},
         "do": {"scroll": {"direction": "down"}},
         "thought": {"each": "^<a href=\"(?P<h>[^\"]+)\">(?P<t>\\w+)", "in": "elements", "format": "{t}@{h|abs}",
                     "join": " "}},
        {"do": {"done": {"text": "{elements}|{thoughts}"}}},
    ],
}]}, "memo.yaml")


def test_thought_aggregation_over_elements_and_for_each_over_a_variable() -> None:
    d = _ask(MEMO, "memo", INDEX)
    assert d.calls == [("scroll", {"direction": "down"})]
    assert d.content == f"Alpha@{BASE}a.html Beta@{BASE}b.html Gamma@http://other.test/c.html"
    history = [("scroll", {"direction": "down"}, "Scrolled down", d.content),
               ("go_to_url", {"url": BASE + "a.html"}, f"Opened {BASE}a.html")]
    d = _ask(MEMO, "memo", m.observation(BASE + "page", "P"), history)
    # Alpha was visited; the next two (limit 2) come from the thought, in order, in one reply.
    assert d.calls == [("go_to_url", {"url": BASE + "b.html"}), ("go_to_url", {"url": "http://other.test/c.html"})]
    assert d.content == "next Beta"
    d = _ask(MEMO, "memo", m.observation("http://x/", "X", ["<b>one", "<i>two"]), [("go_back", {}, "ok", "hm")])
    assert d.args["text"] == "<b>one\n<i>two|hm"
    # No thought holds a page list: the for_each rule does not apply.
    d = _ask(MEMO, "memo", m.observation(BASE + "page", "P"))
    assert d.args["text"] == "|"


# --- load-time validation ----------------------------------------------------------------------------------------


def _one(rule: dict[str, Any], **over: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"name": "s", "task": "t", "rules": [rule]}
    s.update(over)
    return {"scenarios": [s]}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_one({"do": {"get_subtask_results": {}}}), "rules[0].do.get_subtask_results: missing 'task_ids'"),
        (_one({"do": {"get_first_subtask_result": {"task_ids": 3}}}), "do.get_first_subtask_result.task_ids: must be"),
        (_one({"do": {"get_subtask_results": {"task_ids": []}}}), "task_ids: must not be an empty list"),
        (_one({"do": {"get_subtask_results": {"task_ids": "{nope}"}}}), "task_ids: unknown variable {nope}"),
        (_one({"do": {"launch_subtask": {"initial_url": "x"}}}), "do.launch_subtask: missing 'task'"),
        (_one({"do": {"launch_subtask": {"task": "x", "num_copies": 0}}}), "num_copies: must be an integer >= 1"),
        (_one({"do": {"go_to_url": {"url": "{launched|absolute}"}}}), "do.go_to_url.url: unknown filter |absolute"),
        (_one({"for_each": {"where": {}}, "do": {"go_back": {}}}), "rules[0].for_each: give either 'element'"),
        (_one({"for_each": {"element": "(x"}, "do": {"go_back": {}}}), "for_each.element: invalid regex"),
        (_one({"for_each": {"element": "x", "limit": 0}, "do": {"go_back": {}}}), "for_each.limit: must be"),
        (_one({"for_each": {"element": "x", "every": 1}, "do": {"go_back": {}}}), "for_each: unknown key 'every'"),
        (_one({"for_each": {"element": "x", "where": {"visited": "{h}"}}, "do": {"go_back": {}}}),
         "for_each.where.visited: unknown variable {h}"),
        (_one({"for_each": {"element": "(?P<h>x)"}, "do": {"go_to_url": {"url": "{g}"}}}), "url: unknown variable {g}"),
        (_one({"for_each": {"element": "x", "each": "y", "in": "task"}, "do": {"go_back": {}}}),
         "for_each: give either 'element'"),
        (_one({"for_each": {"each": "(?P<a>x)"}, "do": {"go_back": {}}}), "for_each: missing 'in'"),
        (_one({"for_each": {"each": "x", "in": "nowhere"}, "do": {"go_back": {}}}), "for_each.in: must name a variable"),
        (_one({"for_each": {"element": "x", "in": "task"}, "do": {"go_back": {}}}), "for_each.in: only goes with 'each'"),
        (_one({"do": {"go_back": {}}, "thought": {"each": "(?P<a>x)", "in": "task", "format": "{b}"}}),
         "thought.format: unknown variable {b}"),
        (_one({"do": {"go_back": {}}, "thought": 3}), "thought: must be a string or an aggregation"),
        (_one({"when": {"launched_min": "2"}, "do": {"go_back": {}}}), "when.launched_min: must be an integer"),
        (_one({"when": {"results_present": 1}, "do": {"go_back": {}}}), "when.results_present: must be true or false"),
        (_one({"when": {"offered": []}, "do": {"go_back": {}}}), "when.offered: must be a tool name"),
        (_one({"do": {"done": {"text": {"each": "(?P<a>x)", "in": "results"}}}}), "do.done.text: missing 'format'"),
        (_one({"do": {"done": {"text": {"each": "x", "in": "results", "format": "y"}}}}), "text.each: needs named"),
        (_one({"do": {"done": {"text": {"each": "(?P<a>x)", "in": "{results}", "format": "{a}"}}}}),
         "text.in: must name a variable"),
        (_one({"do": {"done": {"text": {"each": "(?P<a>x)", "in": "results", "format": "{b}"}}}}),
         "text.format: unknown variable {b}"),
        (_one({"do": {"done": {"text": {"each": "(?P<a>x)", "in": "results", "format": "{a}", "sep": ","}}}}),
         "text: unknown key 'sep'"),
        (_one({"do": {"go_back": {}}}, copy_delays={"0": 1}), "copy_delays: key '0' must be a copy number"),
        (_one({"do": {"go_back": {}}}, copy_delays={"first": 1}), "copy_delays: key 'first' must be"),
        (_one({"do": {"go_back": {}}}, copy_delays={"2": -1}), "copy_delays.2: must be a number of seconds >= 0"),
        (_one({"do": {"go_back": {}}}, copy_delays=[1]), "copy_delays: must be a mapping"),
    ],
)
def test_invalid_subtask_syntax_is_rejected_naming_file_scenario_and_field(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError) as exc:
        parse_document(doc, "bad.yaml")
    assert str(exc.value).startswith("bad.yaml: scenarios[0] (s)")
    assert message in str(exc.value)
