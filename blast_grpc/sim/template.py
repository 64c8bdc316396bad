"""``{var}`` substitution for scenario strings and regexes.

Only ``{identifier}`` is a variable, so regex quantifiers such as ``\\d{4}`` or
``{2,3}`` pass through untouched. ``{{`` and ``}}`` are literal braces. In a
regex, a variable's value is inserted with ``re.escape`` so a captured value
containing ``.`` or ``(`` matches itself.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Mapping

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


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


def fill(template: str, variables: Mapping[str, object], *, regex: bool = False) -> str:
    """Substitute variables; raises ``MissingVariable`` for an unknown name."""

    def sub(m: re.Match[str]) -> str:
        tok = m.group(0)
        if tok in ("{{", "}}"):
            return "\\" + tok[0] if regex else tok[0]
        name = m.group(1)
        if name not in variables or variables[name] is None:
            raise MissingVariable(name)
        value = str(variables[name])
        return re.escape(value) if regex else value

    return _TOKEN.sub(sub, template)


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
    return re.compile(fill(template, placeholder, regex=True), flags)
