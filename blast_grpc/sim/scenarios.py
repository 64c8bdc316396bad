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

from .template import check_regex, names_in

SHIPPED_DIR = Path(__file__).parent / "scenarios"

BUILTIN_VARS = frozenset({"task", "step", "url", "start_url"})
REGEX_CONDITIONS = ("url", "title", "text", "element", "tool_result", "last_action")
INT_CONDITIONS = ("step_min", "step_max")
CONDITION_KEYS = frozenset(REGEX_CONDITIONS + INT_CONDITIONS + ("not",))
# text and tool_result span several lines; ^ and $ should mean line boundaries there.
CONDITION_FLAGS = {"text": re.MULTILINE, "tool_result": re.MULTILINE}

# tool -> (required string args, optional string args, optional bool args, needs an element)
TOOL_ARGS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], bool]] = {
    "go_to_url": (("url",), (), (), False),
    "click": ((), (), (), True),
    "type": (("text",), (), ("submit",), True),
    "select_option": (("value",), (), (), True),
    "scroll": (("direction",), (), (), False),
    "go_back": ((), (), (), False),
    "extract_content": (("query",), (), (), False),
    "done": (("text",), (), ("success",), False),
}


class ScenarioError(ValueError):
    """A scenario file is invalid; the message says which file and field."""


@dataclass
class Rule:
    """``when`` conditions and the action (``tool`` + ``args``) they trigger."""

    when: dict[str, Any]
    tool: str
    args: dict[str, Any]
    thought: str
    where: str


@dataclass
class Scenario:
    """An agent task pattern (``task`` regex) and its rules, in order."""

    name: str
    task: re.Pattern[str]
    rules: list[Rule]
    delay: float = 0.0
    plan: str | None = None
    source: str = ""


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


def _regex(value: Any, where: str, flags: int = 0) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise ScenarioError(f"{where}: must be a regex string, got {type(value).__name__}")
    try:
        return check_regex(value, flags)
    except re.error as exc:
        raise ScenarioError(f"{where}: invalid regex {value!r}: {exc}") from None


def _check_vars(text: str, known: set[str], where: str) -> None:
    unknown = sorted(names_in(text) - known)
    if unknown:
        raise ScenarioError(
            f"{where}: unknown variable {{{unknown[0]}}}; known here: {', '.join(sorted(known))}"
        )


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: must be a mapping, got {type(value).__name__}")
    return value


def _unknown_keys(value: dict[str, Any], allowed: Iterable[str], where: str) -> None:
    extra = sorted(set(value) - set(allowed))
    if extra:
        raise ScenarioError(f"{where}: unknown key {extra[0]!r}; allowed: {', '.join(sorted(allowed))}")


def _when(value: Any, where: str, known: set[str], top: bool) -> set[str]:
    """Validate a condition map; returns the group names it captures (none inside ``not``).

    Conditions are evaluated in ``REGEX_CONDITIONS`` order, so a regex may use the
    groups captured by the conditions before it.
    """
    cond = _mapping(value if value is not None else {}, where)
    _unknown_keys(cond, CONDITION_KEYS, where)
    known = set(known)
    captured: set[str] = set()
    for key in REGEX_CONDITIONS:
        if key in cond:
            pattern = _regex(cond[key], f"{where}.{key}", CONDITION_FLAGS.get(key, 0))
            _check_vars(cond[key], known, f"{where}.{key}")
            known |= set(pattern.groupindex)
            captured |= set(pattern.groupindex)
    for key in INT_CONDITIONS:
        if key in cond and (not isinstance(cond[key], int) or isinstance(cond[key], bool)):
            raise ScenarioError(f"{where}.{key}: must be an integer, got {cond[key]!r}")
    if "not" in cond:
        _when(cond["not"], f"{where}.not", known, top=False)
    return captured if top else set()


def _rule(value: Any, where: str, task_vars: set[str]) -> Rule:
    raw = _mapping(value, where)
    _unknown_keys(raw, ("when", "do", "thought"), where)
    when = raw.get("when") or {}
    known = task_vars | _when(when, f"{where}.when", task_vars, top=True)
    do = _mapping(raw.get("do"), f"{where}.do")
    if len(do) != 1:
        raise ScenarioError(f"{where}.do: needs exactly one action, one of: {', '.join(TOOL_ARGS)}")
    tool, args = next(iter(do.items()))
    if tool not in TOOL_ARGS:
        raise ScenarioError(f"{where}.do: unknown action {tool!r}; use one of: {', '.join(TOOL_ARGS)}")
    args = _mapping(args if args is not None else {}, f"{where}.do.{tool}")
    required, optional, bools, needs_element = TOOL_ARGS[tool]
    allowed = set(required) | set(optional) | set(bools) | ({"element", "index"} if needs_element else set())
    _unknown_keys(args, allowed, f"{where}.do.{tool}")
    for name in required:
        if name not in args:
            raise ScenarioError(f"{where}.do.{tool}: missing {name!r}")
    for name in (*required, *optional):
        if name in args:
            if not isinstance(args[name], str):
                raise ScenarioError(f"{where}.do.{tool}.{name}: must be a string, got {args[name]!r}")
            _check_vars(args[name], known, f"{where}.do.{tool}.{name}")
    for name in bools:
        if name in args and not isinstance(args[name], bool):
            raise ScenarioError(f"{where}.do.{tool}.{name}: must be true or false, got {args[name]!r}")
    if tool == "scroll" and not names_in(args["direction"]) and args["direction"] not in ("up", "down"):
        raise ScenarioError(f"{where}.do.scroll.direction: must be 'up' or 'down', got {args['direction']!r}")
    if needs_element:
        if ("element" in args) == ("index" in args):
            raise ScenarioError(f"{where}.do.{tool}: give exactly one of 'element' (regex) or 'index'")
        if "element" in args:
            _regex(args["element"], f"{where}.do.{tool}.element")
            _check_vars(args["element"], known, f"{where}.do.{tool}.element")
        elif not isinstance(args["index"], int) or isinstance(args["index"], bool) or args["index"] < 0:
            raise ScenarioError(f"{where}.do.{tool}.index: must be a non-negative integer")
    thought = raw.get("thought", "")
    if not isinstance(thought, str):
        raise ScenarioError(f"{where}.thought: must be a string")
    _check_vars(thought, known, f"{where}.thought")
    return Rule(when=when, tool=tool, args=args, thought=thought, where=where)


def _scenario(value: Any, where: str) -> Scenario:
    raw = _mapping(value, where)
    _unknown_keys(raw, ("name", "task", "delay", "plan", "rules"), where)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ScenarioError(f"{where}: 'name' must be a non-empty string")
    where = f"{where} ({name})"
    if "task" not in raw:
        raise ScenarioError(f"{where}: missing 'task' (a regex searched in the task text)")
    task = _regex(raw["task"], f"{where}.task")
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
        _check_vars(plan, task_vars, f"{where}.plan")
    rules = raw.get("rules")
    if not isinstance(rules, list) or not rules:
        raise ScenarioError(f"{where}.rules: must be a non-empty list")
    return Scenario(
        name=name, task=task, delay=float(delay), plan=plan, source=where,
        rules=[_rule(r, f"{where}.rules[{i}]", task_vars) for i, r in enumerate(rules)],
    )


def _extractor(value: Any, where: str) -> Extractor:
    raw = _mapping(value, where)
    _unknown_keys(raw, ("name", "query", "find", "answer", "otherwise"), where)
    if "query" not in raw or "answer" not in raw:
        raise ScenarioError(f"{where}: needs 'query' (regex over QUERY) and 'answer'")
    query = _regex(raw["query"], f"{where}.query")
    find = raw.get("find")
    groups: set[str] = set()
    if find is not None:
        groups = set(_regex(find, f"{where}.find", re.MULTILINE).groupindex)
        _check_vars(find, {"query"}, f"{where}.find")
    for key, known in (("answer", groups | {"query"}), ("otherwise", {"query"})):
        if key in raw:
            if not isinstance(raw[key], str):
                raise ScenarioError(f"{where}.{key}: must be a string")
            _check_vars(raw[key], known, f"{where}.{key}")
    return Extractor(
        name=str(raw.get("name") or f"extract:{raw['query']}"), query=query, find=find,
        answer=raw["answer"], otherwise=raw.get("otherwise", '{{"found": false}}'), source=where,
    )


def parse_document(doc: Any, source: str) -> ScenarioSet:
    """Validate one parsed YAML document (``scenarios:`` and/or ``extractors:`` lists)."""
    if doc is None:
        return ScenarioSet()
    raw = _mapping(doc, source)
    _unknown_keys(raw, ("scenarios", "extractors"), source)
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
