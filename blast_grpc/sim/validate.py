"""Load-time checks shared by the scenario loader: ``ScenarioError``, field helpers, ``when`` maps.

Every message starts with ``where`` — ``file: scenarios[i] (name).rules[j].field`` —
so a bad scenario file names the exact place to fix.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from .template import FILTERS, check_regex, names_in, unknown_filters

# Built-in variables of agent requests (see ``rules.request_variables``).
BUILTIN_VARS = frozenset({"task", "step", "url", "start_url", "copy", "copies", "launched", "results",
                          "visited", "thoughts", "links", "elements"})
# Evaluated in this order, so a regex may use the groups captured by the ones before it.
REGEX_CONDITIONS = ("human", "url", "title", "text", "element", "tool_result", "last_action", "visited")
INT_CONDITIONS = ("step_min", "step_max", "launched_min")
BOOL_CONDITIONS = ("results_present", "image")
CONDITION_KEYS = frozenset(REGEX_CONDITIONS + INT_CONDITIONS + BOOL_CONDITIONS + ("offered", "not"))
# text and tool_result span several lines; ^ and $ should mean line boundaries there.
CONDITION_FLAGS = {"text": re.MULTILINE, "tool_result": re.MULTILINE, "human": re.MULTILINE}


class ScenarioError(ValueError):
    """A scenario file is invalid; the message says which file and field."""


def regex(value: Any, where: str, flags: int = 0) -> re.Pattern[str]:
    """A regex template compiled with placeholder values (to learn its groups)."""
    if not isinstance(value, str):
        raise ScenarioError(f"{where}: must be a regex string, got {type(value).__name__}")
    try:
        return check_regex(value, flags)
    except re.error as exc:
        raise ScenarioError(f"{where}: invalid regex {value!r}: {exc}") from None


def check_vars(text: str, known: set[str], where: str) -> None:
    """Every ``{var}`` of ``text`` must be known here and every ``|filter`` must exist."""
    unknown = sorted(names_in(text) - known)
    if unknown:
        raise ScenarioError(
            f"{where}: unknown variable {{{unknown[0]}}}; known here: {', '.join(sorted(known))}"
        )
    bad = unknown_filters(text)
    if bad:
        raise ScenarioError(f"{where}: unknown filter |{bad[0]}; available: {', '.join('|' + f for f in FILTERS)}")


def mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: must be a mapping, got {type(value).__name__}")
    return value


def unknown_keys(value: dict[str, Any], allowed: Iterable[str], where: str) -> None:
    extra = sorted(set(value) - set(allowed), key=str)
    if extra:
        raise ScenarioError(f"{where}: unknown key {extra[0]!r}; allowed: {', '.join(sorted(allowed))}")


def string(value: Any, where: str, known: set[str]) -> str:
    """A string template whose variables are all known."""
    if not isinstance(value, str):
        raise ScenarioError(f"{where}: must be a string, got {value!r}")
    check_vars(value, known, where)
    return value


def check_when(value: Any, where: str, known: set[str], top: bool) -> set[str]:
    """Validate a condition map; returns the group names it captures (none inside ``not``).

    Conditions are evaluated in ``REGEX_CONDITIONS`` order, so a regex may use the
    groups captured by the conditions before it.
    """
    cond = mapping(value if value is not None else {}, where)
    unknown_keys(cond, CONDITION_KEYS, where)
    known = set(known)
    captured: set[str] = set()
    for key in REGEX_CONDITIONS:
        if key in cond:
            pattern = regex(cond[key], f"{where}.{key}", CONDITION_FLAGS.get(key, 0))
            check_vars(cond[key], known, f"{where}.{key}")
            known |= set(pattern.groupindex)
            captured |= set(pattern.groupindex)
    for key in INT_CONDITIONS:
        if key in cond and (not isinstance(cond[key], int) or isinstance(cond[key], bool)):
            raise ScenarioError(f"{where}.{key}: must be an integer, got {cond[key]!r}")
    for key in BOOL_CONDITIONS:
        if key in cond and not isinstance(cond[key], bool):
            raise ScenarioError(f"{where}.{key}: must be true or false, got {cond[key]!r}")
    if "offered" in cond:
        names = cond["offered"] if isinstance(cond["offered"], list) else [cond["offered"]]
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ScenarioError(f"{where}.offered: must be a tool name or a list of tool names, "
                                f"got {cond['offered']!r}")
    if "not" in cond:
        check_when(cond["not"], f"{where}.not", known, top=False)
    return captured if top else set()
