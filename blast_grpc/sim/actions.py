"""The tools a rule may call, and load-time validation of a rule's ``do``, ``for_each`` and aggregations.

Argument kinds: ``str`` (a ``{var}`` template), ``bool``, ``int`` and ``list``
(a template that is exactly one list variable such as ``"{launched}"``, another
template giving a one-item list, or a YAML list of templates). Tools that point
at an element take ``element`` (a regex choosing the first matching element
line) or ``index``. ``done.text`` may also be an aggregation (``Aggregate``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .template import names_in
from .validate import ScenarioError, check_vars, check_when, mapping, regex, string, unknown_keys

STR, BOOL, INT, LIST = "str", "bool", "int", "list"


@dataclass(frozen=True)
class ToolSpec:
    """A tool's arguments (name -> kind), which of them are required, and whether it needs an element."""

    args: dict[str, str] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    element: bool = False


TOOLS: dict[str, ToolSpec] = {
    "go_to_url": ToolSpec({"url": STR}, ("url",)),
    "click": ToolSpec({}, (), element=True),
    "type": ToolSpec({"text": STR, "submit": BOOL}, ("text",), element=True),
    "select_option": ToolSpec({"value": STR}, ("value",), element=True),
    "send_keys": ToolSpec({"keys": STR}, ("keys",)),
    "hover": ToolSpec({}, (), element=True),
    "scroll": ToolSpec({"direction": STR}, ("direction",)),
    "scroll_to_text": ToolSpec({"text": STR}, ("text",)),
    "wait": ToolSpec({"seconds": INT}, ("seconds",)),
    "go_back": ToolSpec(),
    "extract_content": ToolSpec({"query": STR}, ("query",)),
    "done": ToolSpec({"text": STR, "success": BOOL}, ("text",)),
    "launch_subtask": ToolSpec({"task": STR, "initial_url": STR, "num_copies": INT}, ("task",)),
    "get_subtask_results": ToolSpec({"task_ids": LIST}, ("task_ids",)),
    "get_first_subtask_result": ToolSpec({"task_ids": LIST}, ("task_ids",)),
    "ask_human": ToolSpec({"question": STR}, ("question",)),
}


@dataclass
class ForEach:
    """Fan-out: one call per element line matching ``element``, or per match of ``each`` in variable
    ``source`` (``in:`` in YAML) — keeping those where the ``where`` conditions hold."""

    element: str | None = None
    each: str | None = None
    source: str | None = None
    where: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None


@dataclass
class Aggregate:
    """A text built from every match of ``each`` in variable ``source`` (``in:`` in YAML)."""

    each: str
    source: str
    format: str
    join: str = ", "
    prefix: str = ""


def _source(value: Any, where: str, known: set[str]) -> str:
    if not isinstance(value, str) or value not in known:
        raise ScenarioError(f"{where}: must name a variable (no braces), one of: {', '.join(sorted(known))}; "
                            f"got {value!r}")
    return value


def check_aggregate(value: dict[str, Any], where: str, known: set[str]) -> Aggregate:
    """Validate an aggregation ``{each, in, format, join, prefix}`` (``done.text`` or ``thought``)."""
    unknown_keys(value, ("each", "in", "format", "join", "prefix"), where)
    for key in ("each", "in", "format"):
        if key not in value:
            raise ScenarioError(f"{where}: missing {key!r} (an aggregation needs each, in and format)")
    pattern = regex(value["each"], f"{where}.each", re.MULTILINE)
    check_vars(value["each"], known, f"{where}.each")
    source = _source(value["in"], f"{where}.in", known)
    if not pattern.groupindex:
        raise ScenarioError(f"{where}.each: needs named groups (?P<name>...) for the format")
    agg = Aggregate(each=value["each"], source=source,
                    format=string(value["format"], f"{where}.format", known | set(pattern.groupindex)))
    if "join" in value:
        agg.join = string(value["join"], f"{where}.join", known)
    if "prefix" in value:
        agg.prefix = string(value["prefix"], f"{where}.prefix", known)
    return agg


def _list_arg(value: Any, where: str, known: set[str]) -> str | list[str]:
    if isinstance(value, list):
        if not value:
            raise ScenarioError(f"{where}: must not be an empty list")
        return [string(v, f"{where}[{i}]", known) for i, v in enumerate(value)]
    if not isinstance(value, str):
        raise ScenarioError(f"{where}: must be a template like \"{{launched}}\" or a list of strings, got {value!r}")
    return string(value, where, known)


def check_args(tool: str, value: Any, where: str, known: set[str]) -> dict[str, Any]:
    """Validate one action's arguments; aggregations in ``done.text`` become ``Aggregate``."""
    spec = TOOLS[tool]
    args = dict(mapping(value if value is not None else {}, where))
    unknown_keys(args, set(spec.args) | ({"element", "index"} if spec.element else set()), where)
    for name in spec.required:
        if name not in args:
            raise ScenarioError(f"{where}: missing {name!r}")
    for name, kind in spec.args.items():
        if name not in args:
            continue
        arg, at = args[name], f"{where}.{name}"
        if kind == STR and tool == "done" and name == "text" and isinstance(arg, dict):
            args[name] = check_aggregate(arg, at, known)
        elif kind == STR:
            string(arg, at, known)
        elif kind == BOOL and not isinstance(arg, bool):
            raise ScenarioError(f"{at}: must be true or false, got {arg!r}")
        elif kind == INT and (not isinstance(arg, int) or isinstance(arg, bool) or arg < 1):
            raise ScenarioError(f"{at}: must be an integer >= 1, got {arg!r}")
        elif kind == LIST:
            _list_arg(arg, at, known)
    if tool == "scroll" and not names_in(args["direction"]) and args["direction"] not in ("up", "down"):
        raise ScenarioError(f"{where}.direction: must be 'up' or 'down', got {args['direction']!r}")
    if spec.element:
        if ("element" in args) == ("index" in args):
            raise ScenarioError(f"{where}: give exactly one of 'element' (regex) or 'index'")
        if "element" in args:
            regex(args["element"], f"{where}.element")
            check_vars(args["element"], known, f"{where}.element")
        elif not isinstance(args["index"], int) or isinstance(args["index"], bool) or args["index"] < 0:
            raise ScenarioError(f"{where}.index: must be a non-negative integer")
    return args


def check_for_each(value: Any, where: str, known: set[str]) -> tuple[ForEach, set[str]]:
    """Validate ``for_each``; returns it and the variables it adds (its groups and its ``where`` captures)."""
    raw = mapping(value, where)
    unknown_keys(raw, ("element", "each", "in", "where", "limit"), where)
    if ("element" in raw) == ("each" in raw):
        raise ScenarioError(f"{where}: give either 'element' (a regex over element lines) or 'each' and 'in' "
                            "(a regex over a variable)")
    key = "element" if "element" in raw else "each"
    groups = set(regex(raw[key], f"{where}.{key}", 0 if key == "element" else re.MULTILINE).groupindex)
    check_vars(raw[key], known, f"{where}.{key}")
    if key == "element":
        fe = ForEach(element=raw["element"])
    else:
        if "in" not in raw:
            raise ScenarioError(f"{where}: missing 'in' (the variable 'each' is searched in)")
        fe = ForEach(each=raw["each"], source=_source(raw["in"], f"{where}.in", known))
    if "in" in raw and key == "element":
        raise ScenarioError(f"{where}.in: only goes with 'each'")
    if "where" in raw:
        fe.where = mapping(raw["where"] or {}, f"{where}.where")
        groups |= check_when(fe.where, f"{where}.where", known | groups, top=True)
    if "limit" in raw:
        limit = raw["limit"]
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ScenarioError(f"{where}.limit: must be an integer >= 1, got {limit!r}")
        fe.limit = limit
    return fe, groups
