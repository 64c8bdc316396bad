"""Parsing the engine's messages: request kind, task, observation, history, step."""

from __future__ import annotations

from blast_grpc.sim import messages as m
from blast_grpc.sim.protocol import AGENT, EXTRACT, OTHER, PLAN, parse_observation, parse_request
from blast_grpc.sim.template import MissingVariable, fill, names_in

SPEC_OBS = """OBSERVATION
URL: http://127.0.0.1:8123/africa.html
TITLE: Africa
TABS: [0] Africa http://127.0.0.1:8123/africa.html (current) | [1] Asia http://127.0.0.1:8123/asia.html
NOTE: the page opened a JavaScript alert dialog; it was accepted (OK)
SCROLL: 0px above, 120px below (viewport 1280x720)
PAGE:
Line one of the page.
[0] <a href="index.html">Back to index
[1] <input type="text" name="item" placeholder="Item name">Item name
[2] <select name="size" selected="small">Size options: small, medium, large
STEP: 9 is not a step line because it is page text
[3] <button>Place order
Line three.
[4]not an element line
STEP: 2/25"""


def _body(msgs, tools=True, model="m"):
    body = {"model": model, "messages": msgs}
    if tools:
        body["tools"] = m.tool_schemas()
    return body


def test_observation_fields_elements_and_step() -> None:
    obs = parse_observation(SPEC_OBS)
    assert obs is not None
    assert obs.url == "http://127.0.0.1:8123/africa.html"
    assert obs.title == "Africa"
    assert obs.tabs == ["[0] Africa http://127.0.0.1:8123/africa.html (current)",
                        "[1] Asia http://127.0.0.1:8123/asia.html"]
    assert obs.notes == ["the page opened a JavaScript alert dialog; it was accepted (OK)"]
    assert obs.scroll == "0px above, 120px below (viewport 1280x720)"
    assert [e.index for e in obs.elements] == [0, 1, 2, 3]
    assert obs.elements[1].line == '<input type="text" name="item" placeholder="Item name">Item name'
    assert obs.elements[3].line == "<button>Place order"
    # Only the last STEP line counts; page text that looks like one stays text.
    assert obs.step == 2
    assert obs.text.startswith("Line one of the page.\n[0] <a href")
    assert obs.text.endswith("STEP: 9 is not a step line because it is page text\n[3] <button>Place order\n"
                             "Line three.\n[4]not an element line")


def test_images_with_the_observation_are_counted() -> None:
    obs = m.observation("http://x/", "X", page=["hello"])
    msgs = m.agent_messages("t", None) + [{"role": "user", "content": m.with_image(obs, "data:image/jpeg;base64,AA==")}]
    req = parse_request(_body(msgs))
    assert req.observation is not None and req.observation.images == 1 and req.observation.text == "hello"
    req = parse_request(_body(m.agent_messages("t", obs)))
    assert req.observation is not None and req.observation.images == 0


def test_non_observation_is_none() -> None:
    assert parse_observation("Error: the step took too long") is None


def test_agent_request_task_history_and_last_tool_result() -> None:
    obs = m.observation("http://x/form.html", "Order form", ['<input name="item">'], "Order form", step=4)
    msgs = m.agent_messages(
        "On http://127.0.0.1:9/index.html order\nsomething",
        obs,
        [("go_to_url", {"url": "http://x/"}, "Opened http://x/"), ("type", {"index": 0, "text": "Hat"}, "Typed")],
        thought="thinking",
    )
    req = parse_request(_body(msgs))
    assert req.kind == AGENT
    assert req.task == "On http://127.0.0.1:9/index.html order\nsomething"
    assert req.start_url == "http://127.0.0.1:9/index.html"
    assert [h.name for h in req.history] == ["go_to_url", "type"]
    assert req.history[-1].render() == 'type {"index": 0, "text": "Hat"}'
    assert req.history[0].thought == "thinking"
    assert req.last_tool_result == "Typed"
    assert req.step == 4
    assert req.observation is not None and req.observation.url == "http://x/form.html"


def test_step_falls_back_to_assistant_count_without_step_line() -> None:
    obs = "OBSERVATION\nURL: about:blank\nTITLE: \nPAGE:\n"
    msgs = m.agent_messages("t", obs, [("scroll", {"direction": "down"}, "Scrolled down")] * 2)
    req = parse_request(_body(msgs))
    assert req.observation is not None and req.observation.step is None
    assert req.step == 3


def test_missing_observation_and_start_url() -> None:
    req = parse_request(_body(m.agent_messages("no url in this task", None)))
    assert req.observation is None  # last message is the TASK itself, not an observation
    assert req.start_url is None


def test_content_parts_are_joined() -> None:
    msgs = [{"role": "user", "content": [{"type": "text", "text": "TASK: find "}, {"type": "text", "text": "it"}]}]
    assert parse_request(_body(msgs)).task == "find it"


def test_extraction_and_plan_and_other_kinds() -> None:
    ext = parse_request(_body(m.extraction_messages("What is X?", "line 1\nQUERY: fake\nline 3"), tools=False))
    assert ext.kind == EXTRACT and ext.query == "What is X?"
    assert ext.content == "line 1\nQUERY: fake\nline 3"
    plan = parse_request(_body(m.plan_messages("buy a hat on http://h/"), tools=False))
    assert plan.kind == PLAN and plan.task == "buy a hat on http://h/"
    other = parse_request(_body([{"role": "user", "content": "hello"}], tools=False))
    assert other.kind == OTHER


def test_template_escapes_values_in_regexes_and_keeps_quantifiers() -> None:
    assert fill(r"\d{4} {name}", {"name": "a.b"}, regex=True) == r"\d{4} a\.b"
    assert fill("{{literal}} {x}", {"x": 1}) == "{literal} 1"
    assert names_in(r"{a} \d{2,3} {b_2}") == {"a", "b_2"}
    try:
        fill("{nope}", {})
    except MissingVariable as exc:
        assert str(exc) == "variable {nope} is not set"
    else:
        raise AssertionError("MissingVariable not raised")
