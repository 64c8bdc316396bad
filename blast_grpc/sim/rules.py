"""Decide the simulated model's reply from a parsed request and the loaded scenarios.

Only the request is consulted — the page as the engine observed it, the task,
the history — never the website, so a wrong observation gives a wrong answer.
Every way of not knowing what to do ends in ``done(success=false)`` with a
``sim: ...`` reason, so a misconfigured test fails instead of looping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .protocol import ChatRequest, Observation
from .scenarios import CONDITION_FLAGS, REGEX_CONDITIONS, Rule, Scenario, ScenarioSet
from .template import MissingVariable, compile_template, fill

DEFAULT_PLAN = "Work through the task step by step in this browser."
NO_SCENARIO = "sim: no scenario matches this task"


@dataclass
class Decision:
    """What to answer: a tool call (``tool`` + ``args``) or, when ``tool`` is None, plain ``content``."""

    tool: str | None
    args: dict[str, Any] = field(default_factory=dict)
    content: str = ""
    scenario: str | None = None
    delay: float = 0.0


def _fail(text: str, scenario: Scenario | None = None) -> Decision:
    return Decision("done", {"text": text, "success": False}, scenario=scenario.name if scenario else None,
                    delay=scenario.delay if scenario else 0.0)


def _subject(key: str, req: ChatRequest, obs: Observation) -> list[str]:
    """The strings a condition's regex is searched in (element: one per element line)."""
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
        groups = {k: v for k, v in match.groupdict().items() if v is not None}
        local.update(groups)
        captured.update(groups)
    if "step_min" in when and req.step < when["step_min"]:
        return None
    if "step_max" in when and req.step > when["step_max"]:
        return None
    if "not" in when and _holds(when["not"] or {}, req, obs, local) is not None:
        return None
    return captured


def _element_index(pattern: str, obs: Observation, variables: dict[str, Any]) -> int | None:
    regex = compile_template(pattern, variables)
    return next((e.index for e in obs.elements if regex.search(e.line)), None)


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
    for key, value in raw.items():
        if key in ("element", "index"):
            continue
        args[key] = fill(value, variables) if isinstance(value, str) else value
    if rule.tool == "type":
        args.setdefault("submit", False)
    if rule.tool == "done":
        args.setdefault("success", True)
    return args, None


def decide_agent(scenarios: ScenarioSet, req: ChatRequest) -> Decision:
    """The next action for an agent request (a tool call, or plain text if ``done`` is not offered)."""
    decision = _decide(scenarios, req)
    if decision.tool is not None and decision.tool not in req.tools:
        text = f"sim: tool {decision.tool!r} is unavailable in this request"
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
    obs = req.observation or Observation()
    variables: dict[str, Any] = {"task": req.task, "step": req.step, "url": obs.url,
                                 "start_url": req.start_url, **task_vars}
    for rule in scenario.rules:
        try:
            captured = _holds(rule.when, req, obs, variables)
            if captured is None:
                continue
            local = {**variables, **captured}
            args, error = _action(rule, obs, local)
            if error:
                return _fail(error, scenario)
            thought = fill(rule.thought, local) if rule.thought else ""
        except MissingVariable as exc:
            return _fail(f"sim: {exc} ({rule.where})", scenario)
        return Decision(rule.tool, args, content=thought, scenario=scenario.name, delay=scenario.delay)
    return _fail(f"sim: no rule of scenario {scenario.name!r} applies at step {req.step}", scenario)


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
    variables = {"task": req.task, "step": 0, "url": "", "start_url": req.start_url, **task_vars}
    try:
        content = fill(scenario.plan, variables)
    except MissingVariable as exc:
        content = f"{DEFAULT_PLAN} (sim: {exc})"
    return Decision(None, content=content, scenario=scenario.name)
