"""Decide the simulated model's reply from a parsed request and the loaded scenarios.

Only the request is consulted — the page as the engine observed it, the task,
the history — never the website, so a wrong observation gives a wrong answer.
Every way of not knowing what to do ends in ``done(success=false)`` with a
``sim: ...`` reason, so a misconfigured test fails instead of looping.

A rule gives one tool call, or — with ``for_each`` — one call per matching
element line, all in the same reply (``Decision.calls``). ``done.text`` may be
an ``Aggregate`` built from every match of a regex over a variable.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .actions import LIST, TOOLS, Aggregate
from .protocol import ChatRequest, Observation
from .scenarios import CONDITION_FLAGS, REGEX_CONDITIONS, Rule, Scenario, ScenarioSet
from .template import MissingVariable, compile_template, fill, render_value

DEFAULT_PLAN = "Work through the task step by step in this browser."
NO_SCENARIO = "sim: no scenario matches this task"
NOTHING_FOUND = "nothing found"


@dataclass
class Decision:
    """What to answer: tool calls (``tool`` + ``args``, then ``extra``) or, when ``tool`` is None, plain ``content``."""

    tool: str | None
    args: dict[str, Any] = field(default_factory=dict)
    content: str = ""
    scenario: str | None = None
    delay: float = 0.0
    extra: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # further calls of the same reply

    @property
    def calls(self) -> list[tuple[str, dict[str, Any]]]:
        """Every tool call of the reply, in order (empty for a plain-text reply)."""
        return [] if self.tool is None else [(self.tool, self.args), *self.extra]


def _fail(text: str, scenario: Scenario | None = None, delay: float = 0.0) -> Decision:
    return Decision("done", {"text": text, "success": False}, scenario=scenario.name if scenario else None,
                    delay=delay)


def _groups(m: re.Match[str]) -> dict[str, str]:
    return {k: v for k, v in m.groupdict().items() if v is not None}


def request_variables(req: ChatRequest, obs: Observation) -> dict[str, Any]:
    """The built-in variables (``BUILTIN_VARS``) of a request."""
    return {"task": req.task, "step": req.step, "url": obs.url, "start_url": req.start_url,
            "copy": str(req.copy), "copies": str(req.copies), "launched": list(req.launched),
            "results": req.results, "visited": list(req.visited), "thoughts": "\n".join(req.thoughts),
            "links": ", ".join(req.links), "elements": "\n".join(e.line for e in obs.elements)}


def _subject(key: str, req: ChatRequest, obs: Observation) -> list[str]:
    """The strings a condition's regex is searched in (element, visited: one per line / URL)."""
    if key == "human":
        return [] if req.human_said is None else [req.human_said]
    if key == "url":
        return [obs.url]
    if key == "title":
        return [obs.title]
    if key == "text":
        return [obs.text]
    if key == "element":
        return [e.line for e in obs.elements]
    if key == "tool_result":
        return [req.last_tool_result]
    if key == "last_action":
        return [req.history[-1].render() if req.history else ""]
    if key == "visited":
        return list(req.visited)
    raise KeyError(key)


def _holds(when: dict[str, Any], req: ChatRequest, obs: Observation, variables: dict[str, Any]) -> dict[str, str] | None:
    """The groups captured if every condition holds, else None."""
    local = dict(variables)
    captured: dict[str, str] = {}
    for key in REGEX_CONDITIONS:
        if key not in when:
            continue
        pattern = compile_template(when[key], local, CONDITION_FLAGS.get(key, 0))
        match = next((m for s in _subject(key, req, obs) if (m := pattern.search(s))), None)
        if match is None:
            return None
        local.update(_groups(match))
        captured.update(_groups(match))
    if "step_min" in when and req.step < when["step_min"]:
        return None
    if "step_max" in when and req.step > when["step_max"]:
        return None
    if "launched_min" in when and len(req.launched) < when["launched_min"]:
        return None
    if "results_present" in when and (req.results is not None) != when["results_present"]:
        return None
    if "image" in when and (obs.images > 0) != when["image"]:
        return None
    if "offered" in when:
        names = when["offered"] if isinstance(when["offered"], list) else [when["offered"]]
        if not set(names) <= set(req.tools):
            return None
    if "not" in when and _holds(when["not"] or {}, req, obs, local) is not None:
        return None
    return captured


def _element_index(pattern: str, obs: Observation, variables: dict[str, Any]) -> int | None:
    regex = compile_template(pattern, variables)
    return next((e.index for e in obs.elements if regex.search(e.line)), None)


def aggregate(agg: Aggregate, variables: dict[str, Any]) -> tuple[str, bool]:
    """The aggregated text and whether anything matched (else ``prefix`` + "nothing found")."""
    items: list[str] = []
    for m in compile_template(agg.each, variables, re.MULTILINE).finditer(_text_of(variables.get(agg.source))):
        item = fill(agg.format, {**variables, **_groups(m)})
        if item not in items:
            items.append(item)
    prefix = fill(agg.prefix, variables)
    if not items:
        return prefix + NOTHING_FOUND, False
    return prefix + fill(agg.join, variables).join(items), True


def _action(rule: Rule, obs: Observation, variables: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The tool arguments for a rule, or an error text when an element cannot be found."""
    args: dict[str, Any] = {}
    raw = rule.args
    if "element" in raw:
        index = _element_index(raw["element"], obs, variables)
        if index is None:
            return {}, f"sim: no element matches /{fill(raw['element'], variables, regex=True)}/ for {rule.tool}"
        args["index"] = index
    elif "index" in raw:
        args["index"] = raw["index"]
    kinds = TOOLS[rule.tool].args
    found = True
    for key, value in raw.items():
        if key in ("element", "index"):
            continue
        if isinstance(value, Aggregate):
            args[key], found = aggregate(value, variables)
        elif kinds.get(key) == LIST:
            items = value if isinstance(value, list) else [value]
            rendered = [render_value(v, variables) for v in items]
            args[key] = [x for r in rendered for x in (r if isinstance(r, list) else [r])]
        else:
            args[key] = fill(value, variables) if isinstance(value, str) else value
    if rule.tool == "type":
        args.setdefault("submit", False)
    if rule.tool == "done":
        args.setdefault("success", True)
        if not found:
            args["success"] = False
    return args, None


def _text_of(value: Any) -> str:
    """A variable as text to search: list items one per line, unset as ''."""
    return "\n".join(map(str, value)) if isinstance(value, list) else str(value if value is not None else "")


def _fan_out(rule: Rule, req: ChatRequest, obs: Observation, local: dict[str, Any]) -> list[dict[str, Any]]:
    """The variables of each element line (or variable match) a ``for_each`` rule applies to, in order."""
    fe = rule.for_each
    assert fe is not None
    if fe.element is not None:
        pattern = compile_template(fe.element, local)
        matches = [m for e in obs.elements if (m := pattern.search(e.line))]
    else:
        assert fe.each is not None and fe.source is not None
        matches = list(compile_template(fe.each, local, re.MULTILINE).finditer(_text_of(local.get(fe.source))))
    items = []
    for m in matches:
        item = {**local, **_groups(m)}
        if fe.where:
            extra = _holds(fe.where, req, obs, item)
            if extra is None:
                continue
            item.update(extra)
        items.append(item)
    return items


def decide_agent(scenarios: ScenarioSet, req: ChatRequest) -> Decision:
    """The next action for an agent request (tool calls, or plain text if ``done`` is not offered)."""
    decision = _decide(scenarios, req)
    missing = next((tool for tool, _ in decision.calls if tool not in req.tools), None)
    if missing is not None:
        text = f"sim: tool {missing} is not offered"
        decision = Decision("done", {"text": text, "success": False}, scenario=decision.scenario,
                            delay=decision.delay)
        if "done" not in req.tools:
            # Nothing to call at all: say so in plain text.
            decision = Decision(None, content=text, scenario=decision.scenario, delay=decision.delay)
    return decision


def _decide(scenarios: ScenarioSet, req: ChatRequest) -> Decision:
    found = scenarios.match(req.task)
    if found is None:
        return _fail(NO_SCENARIO)
    scenario, task_vars = found
    delay = scenario.delay + (scenario.copy_delay(req.copy) if req.copy_line else 0.0)
    obs = req.observation or Observation()
    variables: dict[str, Any] = {**request_variables(req, obs), **task_vars}
    for rule in scenario.rules:
        try:
            captured = _holds(rule.when, req, obs, variables)
            if captured is None:
                continue
            local = {**variables, **captured}
            items = _fan_out(rule, req, obs, local) if rule.for_each else [local]
            if not items:
                continue
            calls: list[dict[str, Any]] = []
            seen: set[str] = set()
            for item in items:
                args, error = _action(rule, obs, item)
                if error:
                    return _fail(error, scenario, delay)
                key = json.dumps(args, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    calls.append(args)
            if rule.for_each and rule.for_each.limit:
                calls = calls[:rule.for_each.limit]
            if isinstance(rule.thought, Aggregate):
                thought = aggregate(rule.thought, items[0])[0]
            else:
                thought = fill(rule.thought, items[0]) if rule.thought else ""
        except MissingVariable as exc:
            return _fail(f"sim: {exc} ({rule.where})", scenario, delay)
        return Decision(rule.tool, calls[0], content=thought, scenario=scenario.name, delay=delay,
                        extra=[(rule.tool, a) for a in calls[1:]])
    return _fail(f"sim: no rule of scenario {scenario.name!r} applies at step {req.step}", scenario, delay)


def answer_extraction(scenarios: ScenarioSet, req: ChatRequest) -> Decision:
    """Answer ``QUERY`` from ``CONTENT`` alone with the first matching extractor."""
    ex = scenarios.extractor_for(req.query)
    if ex is None:
        return Decision(None, content='{"found": false, "note": "no extractor for query"}')
    variables: dict[str, Any] = {"query": req.query}
    template = ex.otherwise
    if ex.find is None:
        template = ex.answer
    else:
        m = compile_template(ex.find, variables, CONDITION_FLAGS["text"]).search(req.content)
        if m:
            variables.update({k: v for k, v in m.groupdict().items() if v is not None})
            template = ex.answer
    try:
        content = fill(template, variables)
    except MissingVariable as exc:
        content = f'{{"found": false, "note": "sim: {exc} in extractor {ex.name}"}}'
    return Decision(None, content=content, scenario=ex.name)


def write_plan(scenarios: ScenarioSet, req: ChatRequest) -> Decision:
    """The plan text: the matching scenario's ``plan`` (variables filled), else the default."""
    found = scenarios.match(req.task)
    if found is None:
        return Decision(None, content=DEFAULT_PLAN)
    scenario, task_vars = found
    if scenario.plan is None:
        return Decision(None, content=DEFAULT_PLAN, scenario=scenario.name)
    obs = req.observation or Observation()
    variables = {**request_variables(req, obs), "step": 0, **task_vars}
    try:
        content = fill(scenario.plan, variables)
    except MissingVariable as exc:
        content = f"{DEFAULT_PLAN} (sim: {exc})"
    return Decision(None, content=content, scenario=scenario.name)
