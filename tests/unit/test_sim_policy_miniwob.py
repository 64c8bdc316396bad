"""The ``miniwob`` scripted policy and the observation parser it reads pages with (no browser)."""

from __future__ import annotations

import json

import httpx
import pytest

from blast_grpc.miniwob.episodes import TASK_TYPES
from blast_grpc.sim import SimServer
from blast_grpc.sim import messages as m
from blast_grpc.sim.policies import PolicyError, load_policies
from blast_grpc.sim.policies.miniwob import SOLVERS, decide
from blast_grpc.sim.policies.page import parse_page
from blast_grpc.sim.runner import main as sim_main
from blast_grpc.sim.stats import PromptPrefixes, canonical_prompt

URL = "http://127.0.0.1:9/miniwob/{}.html"


def task(kind: str) -> str:
    return f"Do the MiniWoB task on {URL.format(kind)}"


def obs(*page: str, reward: str = "-") -> str:
    """An observation in the engine's format: ``page`` lines, then MiniWoB's reward panel."""
    return "\n".join(["OBSERVATION", "URL: http://127.0.0.1:9/x.html", "TITLE: Task", "NOTE: a dialog was dismissed",
                      "SCROLL: 0px above, 0px below (viewport 1280x720)", "PAGE:", *page,
                      f"Last reward: {reward}", "Last 10 average: -", "STEP: 3/25"])


STARTED = ["miniwob: start"]


def test_page_lines_parse_into_elements_and_text() -> None:
    view = parse_page(obs(
        "Select Kiribati from the list and click Submit.",
        '[4] <input type="text" name="q" placeholder="Search" value="Hello" focused>Search',
        "[5] <input type=\"checkbox\" checked>Remember me",
        '[6] <select name="fruit" multiple selected="Apple, Plum">Fruits options: Apple, Pear, Plum',
        '[7] <h3 role="tab" expanded="false">Section 2',
    ))
    assert view.title == "Task" and view.notes == ["a dialog was dismissed"]
    assert [e.index for e in view.elements] == [4, 5, 6, 7]
    box, check, select, tab = view.elements
    assert box.type == "text" and box.value == "Hello" and "focused" in box.flags and box.name == "Search"
    assert check.checked and check.name == "Remember me"
    assert select.name == "Fruits" and select.options == ["Apple", "Pear", "Plum"] and "multiple" in select.flags
    assert tab.role == "tab" and tab.expanded() is False
    assert view.lines[0].text.startswith("Select Kiribati") and not view.lines[0].is_element


def test_every_task_type_of_the_suite_has_a_solver() -> None:
    assert len(TASK_TYPES) >= 25 and len(set(TASK_TYPES)) == len(TASK_TYPES)
    assert set(TASK_TYPES) <= set(SOLVERS)


def test_start_cover_first_then_the_reward_ends_the_episode() -> None:
    calls, thought = decide(task("click-button"), parse_page(obs("[0] <div>START")), [], [], 1)
    assert calls == [("click", {"index": 0})] and thought == "miniwob: start"
    calls, _ = decide(task("click-button"), parse_page(obs("[0] <div>START", reward="0.83")), STARTED, [], 3)
    assert calls == [("done", {"text": "reward 0.83", "success": True})]
    calls, _ = decide(task("click-button"), parse_page(obs("[0] <div>START", reward="-1.00")), STARTED, [], 3)
    assert calls == [("done", {"text": "reward -1.00", "success": False})]
    calls, _ = decide(task("click-button"), parse_page(obs("nothing here")), [], [], 1)
    assert calls[0][0] == "done" and calls[0][1]["success"] is False and "START" in calls[0][1]["text"]


def test_click_button_picks_the_named_button() -> None:
    page = parse_page(obs('Click on the "Okay" button.', "[1] <button>ok", "[2] <input type=\"text\">",
                          "[3] <button>Okay"))
    assert decide(task("click-button"), page, STARTED, [], 2)[0] == [("click", {"index": 3})]


def test_checkboxes_toggle_only_what_differs_then_submit() -> None:
    page = parse_page(obs("Select k8, Xa and click Submit.", '[1] <input type="checkbox" checked>k8',
                          '[2] <input type="checkbox" checked>q2', '[3] <input type="checkbox">Xa',
                          '[4] <input type="checkbox">zz', "[5] <button>Submit"))
    calls, _ = decide(task("click-checkboxes"), page, STARTED, [], 2)
    assert calls == [("click", {"index": 2}), ("click", {"index": 3}), ("click", {"index": 5})]


def test_scroll_list_items_with_commas_are_kept_whole() -> None:
    page = parse_page(obs("Select Korea, Republic of, Chad from the scroll list and click Submit.",
                          '[2] <select multiple>options: Chad, Korea, Republic of, Peru', "[3] <button>Submit"))
    calls, _ = decide(task("click-scroll-list"), page, STARTED, [], 2)
    assert calls == [("select_option", {"index": 2, "values": ["Korea, Republic of", "Chad"]}),
                     ("click", {"index": 3})]
    # two options side by side in the list are still two
    page = parse_page(obs("Select Tarah, Lilah from the scroll list and click Submit.",
                          "[0] <select multiple> options: Tarah, Lilah, Amber", "[1] <button>Submit"))
    assert decide(task("click-scroll-list"), page, STARTED, [], 2)[0][0] == (
        "select_option", {"index": 0, "values": ["Tarah", "Lilah"]})


def test_tab_search_opens_each_tab_once_then_clicks_the_link() -> None:
    ask = 'Switch between the tabs to find and click on the link "lorem".'
    tabs = ['[1] <li role="tab" expanded="true">Tab #1', '[2] <li role="tab" expanded="false">Tab #2',
            '[3] <li role="tab" expanded="false">Tab #3']
    calls, thought = decide(task("click-tab-2"), parse_page(obs(ask, *tabs, "[4] <span>ipsum")), STARTED, [], 2)
    assert calls == [("click", {"index": 2})] and thought == "miniwob: opened tab Tab #2"
    # the link was not on tab 2 either: the next unopened tab
    calls, _ = decide(task("click-tab-2"), parse_page(obs(ask, *tabs, "[5] <span>dolor")),
                      STARTED + [thought], [], 3)
    assert calls == [("click", {"index": 3})]
    calls, _ = decide(task("click-tab-2"), parse_page(obs(ask, *tabs, "[6] <span>lorem")), STARTED, [], 4)
    assert calls == [("click", {"index": 6})]


def test_login_popup_is_cancelled_and_the_form_filled_again() -> None:
    ask = 'Enter the username "kanesha" and the password "Xy1" into the text fields and press login.'
    form = ['[1] <input type="text">', '[2] <input type="password">', "[3] <button>OK"]
    # the popup covers the fields (they are not listed) and disables the form's OK
    popup = ["Username", "Password", "[0] <button disabled>OK", "Your session is about to expire.",
             "Exit to home page?", "[4] <button>OK", "[5] <button>Cancel"]
    typed = STARTED + ["miniwob: login: user typed"]
    calls, thought = decide(task("login-user-popup"), parse_page(obs(ask, *popup)), typed, [], 3)
    assert calls == [("click", {"index": 5})] and thought == "miniwob: login: popup closed"
    calls, _ = decide(task("login-user-popup"), parse_page(obs(ask, *form)), typed + [thought], [], 4)
    assert calls == [("type", {"index": 1, "text": "kanesha", "submit": False}),
                     ("type", {"index": 2, "text": "Xy1", "submit": False}), ("click", {"index": 3})]


def test_email_icons_follow_the_senders_name() -> None:
    rows = ["[1] <div>", "Nikkie", "Amet odio.", "[2] <span>", "[3] <span>",
            "[4] <div>", "Francesca", "Nec faucibus.", "[5] <span>", "[6] <span>", "[7] <div>", "Zed"]
    ask = "Find the email by Francesca and click the {} icon to {}."
    page = parse_page(obs(ask.format("trash", "delete it"), *rows))
    assert decide(task("email-inbox-delete"), page, STARTED, [], 2)[0] == [("click", {"index": 5})]
    page = parse_page(obs(ask.format("star", "mark it as important"), *rows))
    assert decide(task("email-inbox-important"), page, STARTED, [], 2)[0] == [("click", {"index": 6})]
    # an icon missing: the engine waits for pictures before observing, so this is a finding, not a wait
    page = parse_page(obs(ask.format("star", "mark it as important"), *rows[:9], *rows[10:]))
    calls = decide(task("email-inbox-important"), page, STARTED, [], 2)[0]
    assert calls[0][0] == "done" and calls[0][1]["success"] is False
    assert "shows 1 of its 2 icons" in calls[0][1]["text"]


def test_a_button_the_click_cannot_reach_is_pressed_with_the_keyboard() -> None:
    page = parse_page(obs("Click button ONE, then click button TWO.", "[0] <button>ONE", "[1] <button>TWO"))
    kind = task("click-button-sequence")
    calls, thought = decide(kind, page, STARTED, [], 2)
    assert calls == [("click", {"index": 0})] and thought == "miniwob: buttons: click 0"
    covered = "Error: click: element [0] is covered by <button id=\"subbtn2\">TWO; a click would not reach it"
    calls, thought = decide(kind, page, STARTED + [thought], [covered], 3)
    assert calls == [("send_keys", {"keys": "Enter", "index": 0})] and thought == "miniwob: buttons: press 0"
    calls, thought = decide(kind, page, STARTED + ["miniwob: buttons: click 0", thought], ["Pressed Enter"], 4)
    assert calls == [("click", {"index": 1})] and thought == "miniwob: buttons: click 1"


def test_a_missing_element_ends_the_episode_saying_what_was_missing() -> None:
    page = parse_page(obs('Click on the "Okay" button.', "[1] <button>ok"))
    (tool, args), = decide(task("click-button"), page, STARTED, [], 2)[0]
    assert tool == "done" and args["success"] is False and "'Okay'" in args["text"]
    (tool, args), = decide(task("tic-tac-toe"), page, STARTED, [], 2)[0]
    assert tool == "done" and "no solver" in args["text"]


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(PolicyError, match="unknown policy 'nope'; known: miniwob"):
        load_policies(["nope"])
    assert sim_main(["--policy", "nope"]) == 2


def test_prefix_share_compares_with_the_same_conversations_last_request() -> None:
    prefixes = PromptPrefixes()
    first = m.agent_messages("task A", "OBSERVATION\nPAGE:\nx\nSTEP: 1/9")
    assert prefixes.share({"model": "a", "messages": first}) is None
    second = m.agent_messages("task A", "OBSERVATION\nPAGE:\ny\nSTEP: 2/9", [("click", {"index": 1}, "Clicked")])
    share = prefixes.share({"model": "a", "messages": second})
    # shared: the system prompt and the task (and the '{"content": "OBSERVATION...' start); not the rest
    head = canonical_prompt({"messages": first[:2]})
    current = canonical_prompt({"messages": second})
    assert share is not None and len(head) <= share * len(current) < len(current)
    other = m.agent_messages("task B", "OBSERVATION\nPAGE:\ny\nSTEP: 1/9")
    assert prefixes.share({"model": "a", "messages": other}) is None


def test_sim_server_plays_miniwob_with_the_policy_and_measures_prompts() -> None:
    tools = m.tool_schemas()
    msgs = m.agent_messages(task("click-test"), obs("[0] <div>START"))
    with SimServer(policies=["miniwob"]) as sim:
        r = httpx.post(f"{sim.base_url}/chat/completions", json={"model": "x", "messages": msgs, "tools": tools})
        call = r.json()["choices"][0]["message"]["tool_calls"][0]["function"]
        assert call["name"] == "click" and json.loads(call["arguments"]) == {"index": 0}
        stats = sim.stats()
    assert stats["by_scenario"] == {"miniwob/click-test": 1}
    prompt = stats["prompts"]["miniwob/click-test"]
    assert prompt["request_bytes"][0] > len(msgs[-1]["content"]) and prompt["prefix_share"] == []
    assert prompt["observation_chars"] == [len(msgs[-1]["content"])]


def test_autocomplete_clicks_the_fitting_suggestion_then_submits() -> None:
    ask = 'Enter an item that starts with "Ba" and ends with "os".'
    box = '[1] <input type="text" value="Ba" focused>Tags:'
    menu = ["[2] <li>Bahamas", "[3] <li>Barbados", "[4] <li>Bahrain"]
    calls, thought = decide(task("use-autocomplete"), parse_page(obs(ask, box, *menu)),
                            STARTED + ["miniwob: autocomplete: typed"], [], 3)
    assert calls == [("click", {"index": 3})] and thought == "miniwob: autocomplete: picked"
    calls, _ = decide(task("use-autocomplete"), parse_page(obs(ask, box, "[5] <button>Submit")),
                      STARTED + [thought], [], 4)
    assert calls == [("click", {"index": 5})]
