"""Scenario evaluation on hand-written observations, with the shipped demo-site scenarios."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from blast_grpc.demo_site import ARTICLE_CODE, GORILLAS, PAGES_DIR, order_code
from blast_grpc.sim import load_scenarios
from blast_grpc.sim import messages as m
from blast_grpc.sim.protocol import parse_request
from blast_grpc.sim.rules import DEFAULT_PLAN, NO_SCENARIO, Decision
from blast_grpc.sim.scenarios import parse_document
from blast_grpc.sim.server import decide

BASE = "http://127.0.0.1:8123/"
SHIPPED = load_scenarios()
INDEX_ELEMENTS = [f'<a href="{g.page}">{g.continent}' for g in GORILLAS.values()] + [
    '<a href="article.html">Long article', '<a href="form.html">Order form']


def page_text(name: str) -> str:
    """Roughly what innerText gives for a demo page."""
    raw = (PAGES_DIR / name).read_text(encoding="utf-8")
    raw = re.sub(r"<script.*?</script>|<title>.*?</title>", "", raw, flags=re.S)
    return html.unescape(re.sub(r"[ \t]*<[^>]+>[ \t]*", "\n", raw)).strip()


def ask(task: str, current: str | None, history: list[tuple[str, dict[str, Any], str]] | None = None,
        tools: list[str] | None = None, scenarios=SHIPPED) -> Decision:
    body = {"model": "m", "messages": m.agent_messages(task, current, history or []),
            "tools": m.tool_schemas(tools)}
    return decide(scenarios, parse_request(body))


def gorilla_task(continent: str) -> str:
    return f"On {BASE}index.html find the largest gorilla in {continent}"


def test_blank_page_goes_to_the_start_url() -> None:
    d = ask(gorilla_task("Asia"), m.observation("about:blank"))
    assert (d.tool, d.args) == ("go_to_url", {"url": BASE + "index.html"})
    assert d.scenario == "gorilla-one-continent"


@pytest.mark.parametrize("continent", list(GORILLAS))
def test_index_page_clicks_the_right_continent(continent: str) -> None:
    d = ask(gorilla_task(continent), m.observation(BASE + "index.html", "Gorilla Records", INDEX_ELEMENTS))
    assert d.tool == "click"
    assert d.args == {"index": list(GORILLAS).index(continent)}
    assert d.content == f"Open the {continent} page."


def test_element_lines_in_spec_format_and_other_order() -> None:
    elements = ['<a href="asia.html">Asia</a>', '<a href="south-america.html">South America</a>',
                '<a href="america.html">America</a>']
    d = ask(gorilla_task("South America"), m.observation(BASE, "Gorilla Records", elements))
    assert d.args == {"index": 1}  # "America" alone must not match South America's rule


@pytest.mark.parametrize("continent", list(GORILLAS))
def test_continent_page_text_gives_the_answer(continent: str) -> None:
    g = GORILLAS[continent]
    obs = m.observation(BASE + g.page, continent, ['<a href="index.html">Back to index'], page_text(g.page))
    d = ask(gorilla_task(continent), obs)
    assert d.tool == "done"
    assert d.args == {"text": f"The largest gorilla in {continent} is {g.name} ({g.kg} kg).", "success": True}


def test_wrong_page_observed_gives_a_failed_answer_not_the_other_gorilla() -> None:
    europe = GORILLAS["Europe"]
    obs = m.observation(BASE + "asia.html", "Asia", ['<a href="index.html">Back to index'], page_text(europe.page))
    d = ask(gorilla_task("Asia"), obs)
    assert d.tool == "done" and d.args["success"] is False
    assert europe.name not in d.args["text"] and GORILLAS["Asia"].name not in d.args["text"]


def test_decoy_sentences_alone_do_not_answer() -> None:
    text = "Rangkai, weighing 188 kg, was the heaviest. The largest gorilla in the Riverside house is Pemba."
    d = ask(gorilla_task("Asia"), m.observation(BASE + "asia.html", "Asia", [], text))
    assert d.args["success"] is False


def test_missing_observation_wanders_then_gives_up() -> None:
    d = ask(gorilla_task("Asia"), None)
    assert d.tool == "go_to_url"  # no page known: open the start URL
    history = [("go_to_url", {"url": BASE}, "Error: net::ERR_CONNECTION_REFUSED")] * 9
    d = ask(gorilla_task("Asia"), None, history)  # step 10 by assistant count
    assert d.tool == "done" and d.args["success"] is False and "within 10 steps" in d.args["text"]


def test_task_without_url_fails_naming_the_variable() -> None:
    d = ask("find the largest gorilla in Asia", m.observation("about:blank"))
    assert d.tool == "done" and d.args["success"] is False
    assert "{start_url} is not set" in d.args["text"]


def test_unmatched_task_fails_loudly() -> None:
    d = ask("book a flight to Paris", m.observation("about:blank"))
    assert (d.tool, d.args) == ("done", {"text": NO_SCENARIO, "success": False})
    assert NO_SCENARIO == "sim: no scenario matches this task"


def test_tool_not_offered_is_reported() -> None:
    obs = m.observation(BASE + "index.html", "Gorilla Records", INDEX_ELEMENTS)
    d = ask(gorilla_task("Asia"), obs, tools=["go_to_url", "done"])
    assert (d.tool, d.args) == ("done", {"text": "sim: tool click is not offered", "success": False})
    d = ask(gorilla_task("Asia"), obs, tools=["go_to_url"])  # not even done: plain text
    assert d.tool is None and d.content == "sim: tool click is not offered"


def test_article_flow_uses_extract_content_then_the_tool_result() -> None:
    task = f"On {BASE}index.html find the secret river code"
    d = ask(task, m.observation(BASE + "index.html", "Gorilla Records", INDEX_ELEMENTS))
    assert (d.tool, d.args) == ("click", {"index": 6})
    truncated = page_text("article.html")[:4000] + "\n[... 74000 more characters; use extract_content]"
    history = [("click", {"index": 6}, "Clicked [6]")]
    d = ask(task, m.observation(BASE + "article.html", "River Ecology: A Long Read", [], truncated, 2), history)
    assert d.tool == "extract_content" and "secret river code" in d.args["query"]
    history.append(("extract_content", d.args, f'Extracted: {{"found": true, "code": "{ARTICLE_CODE}"}}'))
    d = ask(task, m.observation(BASE + "article.html", "River Ecology", [], truncated, 3), history)
    assert d.args == {"text": f"The secret river code is {ARTICLE_CODE}.", "success": True}
    history[-1] = ("extract_content", {"query": "q"}, 'Extracted: {"found": false}')
    d = ask(task, m.observation(BASE + "article.html", "River Ecology", [], truncated, 3), history)
    assert d.args["success"] is False and ARTICLE_CODE not in d.args["text"]


def _extract(query: str, content: str) -> Decision:
    body = {"model": "mini", "messages": m.extraction_messages(query, content)}
    return decide(SHIPPED, parse_request(body))


def test_extractor_reads_only_the_content() -> None:
    article = page_text("article.html")
    d = _extract("What is the secret river code stated in the article?", article)
    assert d.tool is None and d.content == f'{{"found": true, "code": "{ARTICLE_CODE}"}}'
    # A chunk without the sentence: not found, even though the query itself names a code.
    chunk = article[:20000]
    assert _extract("Is the secret river code ZEBRA-1234? The secret river code is ZEBRA-1234", chunk).content \
        == '{"found": false}'
    assert _extract("What colour is the sky?", article).content == \
        '{"found": false, "note": "no extractor for query"}'
    g = GORILLAS["Oceania"]
    assert _extract("largest gorilla?", page_text(g.page)).content == \
        f'{{"found": true, "continent": "Oceania", "name": "{g.name}", "kg": {g.kg}}}'


def test_order_form_flow_types_selects_submits_and_reads_the_code() -> None:
    task = f'On {BASE}index.html place an order for item "Blue Teapot" in size large and report the code'
    form_elements = ['<input type="text" name="item" placeholder="Item name">',
                     '<select name="size"> options: small, medium, large', '<button type="submit">Place order',
                     '<a href="index.html">Back to index']
    form = m.observation(BASE + "form.html", "Order form", form_elements, "Order form")
    d = ask(task, m.observation(BASE + "index.html", "Gorilla Records", INDEX_ELEMENTS))
    assert d.args == {"index": 7}
    history: list[tuple[str, dict[str, Any], str]] = [("click", {"index": 7}, "Clicked [7]")]
    d = ask(task, form, history)
    assert (d.tool, d.args) == ("type", {"index": 0, "text": "Blue Teapot", "submit": False})
    history.append(("type", d.args, "Typed into [0]"))
    d = ask(task, form, history)
    assert (d.tool, d.args) == ("select_option", {"index": 1, "value": "large"})
    history.append(("select_option", d.args, "Selected 'large' in [1]"))
    d = ask(task, form, history)
    assert (d.tool, d.args) == ("click", {"index": 2})
    history.append(("click", d.args, "Clicked [2]"))
    code = order_code("Blue Teapot", "large")
    shown = f"Order status\nOrder confirmed: Blue Teapot (large), confirmation {code}"
    d = ask(task, m.observation(BASE + "order.html?item=Blue+Teapot&size=large", "Order status", [], shown), history)
    assert d.args == {"text": f"Order confirmed: Blue Teapot (large), confirmation code {code}.", "success": True}
    # The engine typed the wrong thing: the confirmation is for another order.
    wrong = f"Order confirmed: Blue (large), confirmation {order_code('Blue', 'large')}"
    d = ask(task, m.observation(BASE + "order.html", "Order status", [], wrong), history)
    assert d.args["success"] is False and code not in d.args["text"]


def test_order_form_retypes_after_a_failed_type() -> None:
    task = f'On {BASE}form.html place an order for item "Hat" in size small and report the code'
    form = m.observation(BASE + "form.html", "Order form", ['<input type="text" name="item">'], "Order form")
    d = ask(task, form, [("type", {"index": 0, "text": "Hat"}, "Error: no element [0] on the page")])
    assert d.tool == "type"


def test_plan_requests() -> None:
    body = {"model": "m", "messages": m.plan_messages(gorilla_task("Asia"))}
    d = decide(SHIPPED, parse_request(body))
    assert d.tool is None and d.content.startswith(f"Open {BASE}index.html, follow the Asia link")
    body = {"model": "m", "messages": m.plan_messages("something else entirely")}
    assert decide(SHIPPED, parse_request(body)).content == DEFAULT_PLAN


CUSTOM = parse_document({
    "scenarios": [{
        "name": "custom",
        "task": "(?i)visit (?P<site>\\w+)",
        "delay": 0.25,
        "rules": [
            {"when": {"step_max": 1, "title": "^(?P<t>Home)$"}, "do": {"click": {"index": 4}},
             "thought": "title {t} on {site}"},
            {"when": {"element": "<a href=\"(?P<href>[^\"]+)\">Next", "not": {"url": "{href}$"}},
             "do": {"go_to_url": {"url": "{href}"}}},
            {"when": {"text": "missing element"}, "do": {"click": {"element": "<nothing>"}}},
            {"do": {"scroll": {"direction": "down"}}},
        ],
    }],
}, "custom.yaml")


def test_custom_conditions_step_title_not_and_captures() -> None:
    d = ask("visit Foo", m.observation("http://a/", "Home", [], "", step=1), scenarios=CUSTOM)
    assert (d.tool, d.args, d.content, d.delay) == ("click", {"index": 4}, "title Home on Foo", 0.25)
    d = ask("visit Foo", m.observation("http://a/", "Home", ['<a href="/p2">Next'], "", step=2), scenarios=CUSTOM)
    assert (d.tool, d.args) == ("go_to_url", {"url": "/p2"})
    d = ask("visit Foo", m.observation("http://a/p2", "P2", ['<a href="/p2">Next'], "", step=3), scenarios=CUSTOM)
    assert (d.tool, d.args) == ("scroll", {"direction": "down"})  # `not` blocked the link rule
    d = ask("visit Foo", m.observation("http://a/", "X", [], "missing element", step=3), scenarios=CUSTOM)
    assert d.tool == "done" and d.args["success"] is False and "no element matches /<nothing>/" in d.args["text"]
