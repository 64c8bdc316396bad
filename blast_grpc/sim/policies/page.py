"""The ``PAGE:`` section of an observation as a scripted policy reads it.

A policy sees exactly what the model sees: the observation message. This module
splits it into lines in page order, each either text or an element line::

    [4] <input type="text" name="q" placeholder="Search" value="Hello" focused>Search
         │   └ tag └ attributes (key="value")            └ bare flags   └ accessible name
         └ index for the tools

Values are kept as written (the engine replaces a ``"`` inside a value); a
``<select>``'s name ends with `` options: A, B, C``, split off into ``options``.
Everything outside ``PAGE:`` (URL, TITLE, NOTE, SCROLL) is kept as header fields.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Iterator

_ELEMENT = re.compile(r"^\[(\d+)\]\s*<([a-zA-Z][\w-]*)((?:\s+[\w:-]+(?:=\"[^\"]*\")?)*)\s*/?>(.*)$")
_ATTR = re.compile(r"([\w:-]+)(?:=\"([^\"]*)\")?")
_STEP = re.compile(r"^STEP:\s*\d+")


@dataclass
class Line:
    """One line of the page: text (``index`` None) or an element."""

    text: str
    index: int | None = None
    tag: str = ""
    attrs: dict[str, str] = field(default_factory=dict)
    flags: frozenset[str] = frozenset()
    name: str = ""
    options: list[str] = field(default_factory=list)
    options_text: str = ""  # as written: an option's own text may hold ", "

    def has_option(self, text: str) -> bool:
        return f", {text}, " in f", {self.options_text}, "

    @property
    def is_element(self) -> bool:
        return self.index is not None

    @property
    def type(self) -> str:
        """An input's type (``text`` when not given), else ''."""
        return self.attrs.get("type", "text" if self.tag == "input" else "")

    @property
    def role(self) -> str:
        return self.attrs.get("role", "")

    @property
    def value(self) -> str:
        return self.attrs.get("value", "")

    @property
    def checked(self) -> bool:
        return "checked" in self.flags

    def expanded(self) -> bool | None:
        v = self.attrs.get("expanded")
        return None if v is None else v == "true"


@dataclass
class PageView:
    """The observation: header fields and the page's lines in order."""

    url: str = ""
    title: str = ""
    notes: list[str] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)

    @property
    def elements(self) -> list[Line]:
        return [line for line in self.lines if line.is_element]

    @property
    def text(self) -> str:
        """Every line's visible words (text lines and element names), one line each."""
        return "\n".join(line.name if line.is_element else line.text for line in self.lines)

    def find(self, pred: Callable[[Line], bool]) -> Line | None:
        return next(self.each(pred), None)

    def each(self, pred: Callable[[Line], bool]) -> Iterator[Line]:
        return (e for e in self.elements if pred(e))

    def after(self, anchor: Line) -> list[Line]:
        """The element lines after ``anchor``, in page order."""
        elements = self.elements
        return elements[elements.index(anchor) + 1:] if anchor in elements else []


def parse_element(raw: str) -> Line | None:
    m = _ELEMENT.match(raw.strip())
    if m is None:
        return None
    attrs: dict[str, str] = {}
    flags: set[str] = set()
    for a in _ATTR.finditer(m.group(3)):
        if a.group(2) is None:
            flags.add(a.group(1))
        else:
            attrs[a.group(1)] = a.group(2)
    name = m.group(4).strip()
    options: list[str] = []
    tail = ""
    if m.group(2).lower() == "select" and " options: " in f" {name}":
        head, _, tail = f" {name}".rpartition(" options: ")
        name, options = head.strip(), [o.strip() for o in tail.split(", ") if o.strip()]
    return Line(text=raw, index=int(m.group(1)), tag=m.group(2).lower(), attrs=attrs, flags=frozenset(flags),
                name=name, options=options, options_text=tail.strip())


def parse_page(observation: str) -> PageView:
    """Read an observation message (anything before ``OBSERVATION`` is ignored)."""
    view = PageView()
    in_page = False
    for raw in observation.split("\n"):
        if not in_page:
            key, _, value = raw.partition(":")
            if raw.strip() == "PAGE:":
                in_page = True
            elif key == "URL":
                view.url = value.strip()
            elif key == "TITLE":
                view.title = value.strip()
            elif key == "NOTE":
                view.notes.append(value.strip())
            continue
        if _STEP.match(raw):
            break
        if not raw.strip():
            continue
        element = parse_element(raw)
        view.lines.append(element if element is not None else Line(text=raw.strip()))
    return view
