"""Load and validate scenario files (YAML): agent scenarios with rules, and extractors.

Everything that can be checked before a request arrives is checked here — regex
syntax, tool names and arguments, variables that could never be set — and
reported as ``ScenarioError`` naming the file, the scenario and the field. See
``rules.py`` for how rules are evaluated and ``blast_grpc/sim/__init__.py`` for
the file format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from .actions import TOOLS, Aggregate, ForEach, check_aggregate, check_args, check_for_each
from .template import names_in
from .validate import (
    BUILTIN_VARS,
    CONDITION_FLAGS,
    REGEX_CONDITIONS,
    ScenarioError,
    check_vars,
    check_when,
    mapping,
    regex,
    unknown_keys,
)

SHIPPED_DIR = Path(__file__).parent / "scenarios"

__all__ = ["BUILTIN_VARS", "CONDITION_FLAGS", "REGEX_CONDITIONS", "SHIPPED_DIR", "TOOLS", "Aggregate", "Extractor",
           "ForEach", "Rule", "Scenario", "ScenarioError", "ScenarioSet", "load_scenarios", "parse_document"]


@dataclass
class Rule:
    """``when`` conditions and the action (``tool`` + ``args``) they trigger, maybe fanned out."""

    when: dict[str, Any]
    tool: str
    args: dict[str, Any]
    thought: str | Aggregate
    where: str
    for_each: ForEach | None = None


@dataclass
class Scenario:
    """An agent task pattern (``task`` regex) and its rules, in order."""

    name: str
    task: re.Pattern[str]
    rules: list[Rule]
    delay: float = 0.0
    plan: str | None = None
    source: str = ""
    copy_delays: dict[str, float] = field(default_factory=dict)  # "1", "2", ..., "default" -> seconds

    def copy_delay(self, copy: int) -> float:
        """The extra delay for racing copy ``copy`` (1-based)."""
        return self.copy_delays.get(str(copy), self.copy_delays.get("default", 0.0))


@dataclass
class Extractor:
    """Answers extraction requests whose QUERY matches ``query``, from CONTENT only."""

    name: str
    query: re.Pattern[str]
    find: str | None
    answer: str
    otherwise: str
    source: str = ""


@dataclass
class ScenarioSet:
    """All loaded scenarios and extractors, in file order."""

    scenarios: list[Scenario] = field(default_factory=list)
    extractors: list[Extractor] = field(default_factory=list)

    def match(self, task: str) -> tuple[Scenario, dict[str, str]] | None:
        """The first scenario whose task regex is found in ``task``, with its named groups."""
        for s in self.scenarios:
            m = s.task.search(task)
            if m:
                return s, {k: v for k, v in m.groupdict().items() if v is not None}
        return None

    def extractor_for(self, query: str) -> Extractor | None:
        """The first extractor whose query regex is found in ``query``."""
        return next((e for e in self.extractors if e.query.search(query)), None)


def _rule(value: Any, where: str, task_vars: set[str]) -> Rule:
    raw = mapping(value, where)
    unknown_keys(raw, ("when", "for_each", "do", "thought"), where)
    when = raw.get("when") or {}
    known = task_vars | check_when(when, f"{where}.when", task_vars, top=True)
    for_each = None
    if "for_each" in raw:
        for_each, added = check_for_each(raw["for_each"], f"{where}.for_each", known)
        known |= added
    do = mapping(raw.get("do"), f"{where}.do")
    if len(do) != 1:
        raise ScenarioError(f"{where}.do: needs exactly one action, one of: {', '.join(TOOLS)}")
    tool, args = next(iter(do.items()))
    if tool not in TOOLS:
        raise ScenarioError(f"{where}.do: unknown action {tool!r}; use one of: {', '.join(TOOLS)}")
    args = check_args(tool, args, f"{where}.do.{tool}", known)
    thought = raw.get("thought", "")
    if isinstance(thought, dict):
        thought = check_aggregate(thought, f"{where}.thought", known)
    elif not isinstance(thought, str):
        raise ScenarioError(f"{where}.thought: must be a string or an aggregation {{each, in, format, ...}}")
    else:
        check_vars(thought, known, f"{where}.thought")
    return Rule(when=when, tool=tool, args=args, thought=thought, where=where, for_each=for_each)


def _copy_delays(value: Any, where: str) -> dict[str, float]:
    delays: dict[str, float] = {}
    for key, seconds in mapping(value, where).items():
        name = str(key)
        if not (name == "default" or (name.isdigit() and int(name) >= 1)):
            raise ScenarioError(f"{where}: key {key!r} must be a copy number (1, 2, ...) or 'default'")
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
            raise ScenarioError(f"{where}.{name}: must be a number of seconds >= 0, got {seconds!r}")
        delays[str(int(name)) if name.isdigit() else name] = float(seconds)
    return delays


def _scenario(value: Any, where: str) -> Scenario:
    raw = mapping(value, where)
    unknown_keys(raw, ("name", "task", "delay", "copy_delays", "plan", "rules"), where)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ScenarioError(f"{where}: 'name' must be a non-empty string")
    where = f"{where} ({name})"
    if "task" not in raw:
        raise ScenarioError(f"{where}: missing 'task' (a regex searched in the task text)")
    task = regex(raw["task"], f"{where}.task")
    if names_in(raw["task"]):
        raise ScenarioError(f"{where}.task: variables are not allowed in the task regex")
    delay = raw.get("delay", 0)
    if not isinstance(delay, (int, float)) or isinstance(delay, bool) or delay < 0:
        raise ScenarioError(f"{where}.delay: must be a number of seconds >= 0, got {delay!r}")
    task_vars = set(BUILTIN_VARS) | set(task.groupindex)
    plan = raw.get("plan")
    if plan is not None:
        if not isinstance(plan, str):
            raise ScenarioError(f"{where}.plan: must be a string")
        check_vars(plan, task_vars, f"{where}.plan")
    rules = raw.get("rules")
    if not isinstance(rules, list) or not rules:
        raise ScenarioError(f"{where}.rules: must be a non-empty list")
    copy_delays = _copy_delays(raw["copy_delays"], f"{where}.copy_delays") if "copy_delays" in raw else {}
    return Scenario(
        name=name, task=task, delay=float(delay), plan=plan, source=where, copy_delays=copy_delays,
        rules=[_rule(r, f"{where}.rules[{i}]", task_vars) for i, r in enumerate(rules)],
    )


def _extractor(value: Any, where: str) -> Extractor:
    raw = mapping(value, where)
    unknown_keys(raw, ("name", "query", "find", "answer", "otherwise"), where)
    if "query" not in raw or "answer" not in raw:
        raise ScenarioError(f"{where}: needs 'query' (regex over QUERY) and 'answer'")
    query = regex(raw["query"], f"{where}.query")
    find = raw.get("find")
    asked = set(query.groupindex) | {"query"}  # the QUERY regex's named groups (what is asked for)
    groups: set[str] = set()
    if find is not None:
        groups = set(regex(find, f"{where}.find", re.MULTILINE).groupindex)
        check_vars(find, asked, f"{where}.find")
    for key, known in (("answer", groups | asked), ("otherwise", asked)):
        if key in raw:
            if not isinstance(raw[key], str):
                raise ScenarioError(f"{where}.{key}: must be a string")
            check_vars(raw[key], known, f"{where}.{key}")
    return Extractor(
        name=str(raw.get("name") or f"extract:{raw['query']}"), query=query, find=find,
        answer=raw["answer"], otherwise=raw.get("otherwise", '{{"found": false}}'), source=where,
    )


def parse_document(doc: Any, source: str) -> ScenarioSet:
    """Validate one parsed YAML document (``scenarios:`` and/or ``extractors:`` lists)."""
    if doc is None:
        return ScenarioSet()
    raw = mapping(doc, source)
    unknown_keys(raw, ("scenarios", "extractors"), source)
    lists: dict[str, list[Any]] = {}
    for key in ("scenarios", "extractors"):
        items = raw.get(key) or []
        if not isinstance(items, list):
            raise ScenarioError(f"{source}: {key!r} must be a list")
        lists[key] = items
    return ScenarioSet(
        scenarios=[_scenario(item, f"{source}: scenarios[{i}]") for i, item in enumerate(lists["scenarios"])],
        extractors=[_extractor(item, f"{source}: extractors[{i}]") for i, item in enumerate(lists["extractors"])],
    )


def load_scenarios(dirs: Iterable[str | Path] | None = None) -> ScenarioSet:
    """Load every ``*.yaml``/``*.yml`` file of the given directories (default: the shipped ones).

    Files load in directory order, then name order; the first matching scenario wins.
    """
    merged = ScenarioSet()
    for d in [Path(x) for x in (dirs if dirs is not None else [SHIPPED_DIR])]:
        if not d.is_dir():
            raise ScenarioError(f"scenario directory not found: {d}")
        files = sorted(p for p in d.iterdir() if p.suffix in (".yaml", ".yml"))
        for path in files:
            try:
                doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            except yaml.YAMLError as exc:
                raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
            part = parse_document(doc, str(path))
            merged.scenarios.extend(part.scenarios)
            merged.extractors.extend(part.extractors)
    seen: set[str] = set()
    for s in merged.scenarios:
        if s.name in seen:
            raise ScenarioError(f"{s.source}: duplicate scenario name {s.name!r}")
        seen.add(s.name)
    return merged
