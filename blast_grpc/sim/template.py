"""``{var}`` substitution for scenario strings and regexes.

Only ``{identifier}`` (optionally ``{identifier|filter}``) is a variable, so regex
quantifiers such as ``\\d{4}`` or ``{2,3}`` pass through untouched. ``{{`` and
``}}`` are literal braces. In a regex, a variable's value is inserted with
``re.escape`` so a captured value containing ``.`` or ``(`` matches itself.

Values are strings, numbers or lists; a list is written as its items joined
with ``", "``, except by ``render_value`` when the template is exactly one
variable (then the list itself comes back, for list-valued tool arguments).

Filters (see ``FILTERS``): ``{href|abs}`` resolves a relative URL against the
current page URL (variable ``url``; ``start_url`` when no page is open); ``{line|json}``
escapes a value for the inside of a JSON string.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Callable, Mapping
from urllib.parse import urljoin

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)(?:\|([A-Za-z_][A-Za-z0-9_]*))?\}")
LIST_SEPARATOR = ", "


def _absolute(value: str, variables: Mapping[str, object]) -> str:
    base = variables.get("url") or variables.get("start_url") or ""
    return urljoin(str(base), value) if base else value


def _json(value: str, variables: Mapping[str, object]) -> str:
    return json.dumps(value)[1:-1]


FILTERS: dict[str, Callable[[str, Mapping[str, object]], str]] = {
    "abs": _absolute,
    "json": _json,  # the value escaped for the inside of a JSON string ("..."), for extractor answers
}


class MissingVariable(KeyError):
    """A template names a variable that has no value for this request."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"variable {{{self.name}}} is not set"


def names_in(template: str) -> set[str]:
    """The variable names a template refers to."""
    return {m.group(1) for m in _TOKEN.finditer(template) if m.group(1)}


def unknown_filters(template: str) -> list[str]:
    """Filter names used in ``template`` that do not exist (in order of appearance)."""
    return [m.group(2) for m in _TOKEN.finditer(template) if m.group(2) and m.group(2) not in FILTERS]


def _value(m: re.Match[str], variables: Mapping[str, object]) -> object:
    """The (filtered) value of one ``{name}``/``{name|filter}`` token; lists stay lists."""
    name, filt = m.group(1), m.group(2)
    if name not in variables or variables[name] is None:
        raise MissingVariable(name)
    value = variables[name]
    if not filt:
        return value
    fn = FILTERS[filt]
    if isinstance(value, list):
        return [fn(str(v), variables) for v in value]
    return fn(str(value), variables)


def as_text(value: object) -> str:
    """A variable's value as text (list items joined with ``", "``)."""
    if isinstance(value, list):
        return LIST_SEPARATOR.join(str(v) for v in value)
    return str(value)


def fill(template: str, variables: Mapping[str, object], *, regex: bool = False) -> str:
    """Substitute variables; raises ``MissingVariable`` for an unknown name."""

    def sub(m: re.Match[str]) -> str:
        tok = m.group(0)
        if tok in ("{{", "}}"):
            return "\\" + tok[0] if regex else tok[0]
        value = as_text(_value(m, variables))
        return re.escape(value) if regex else value

    return _TOKEN.sub(sub, template)


def render_value(template: str, variables: Mapping[str, object]) -> str | list[str]:
    """Like ``fill``, but a template that is exactly one list-valued variable gives the list."""
    m = _TOKEN.fullmatch(template)
    if m and m.group(1):
        value = _value(m, variables)
        if isinstance(value, list):
            return [str(v) for v in value]
    return fill(template, variables)


@lru_cache(maxsize=1024)
def _compile(pattern: str, flags: int) -> re.Pattern[str]:
    return re.compile(pattern, flags)


def compile_template(template: str, variables: Mapping[str, object], flags: int = 0) -> re.Pattern[str]:
    """Fill a regex template and compile it (compiled patterns are cached)."""
    return _compile(fill(template, variables, regex=True), flags)


def check_regex(template: str, flags: int = 0) -> re.Pattern[str]:
    """Compile a regex template with every variable replaced by a placeholder.

    Used at load time to reject bad regex syntax and to learn the named groups
    a template captures, before any real values exist. Raises ``re.error``.
    """
    placeholder = {name: "x" for name in names_in(template)}
    return re.compile(fill(placeholder_safe(template), placeholder, regex=True), flags)


def placeholder_safe(template: str) -> str:
    """``template`` with filters dropped (``{a|abs}`` -> ``{a}``), for load-time checks."""
    return _TOKEN.sub(lambda m: "{" + m.group(1) + "}" if m.group(1) else m.group(0), template)
