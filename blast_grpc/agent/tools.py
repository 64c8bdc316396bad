"""The browser tools the model calls, as Chat Completions function schemas, and their execution.

``parse_call`` turns a tool call into an ``Action`` or an ``ActionError`` that is
reported back to the model; ``Browser.execute`` performs an action on the page and
returns the text the model gets as the tool result. A navigation that times out is
stopped (the page that was there stays usable); a URL that is a file download is
refused; ``type`` swaps secret placeholders for their values right before ``fill()``.

A URL the policy refuses is answered ``Error: refused to open URL: reason``: checked
here before ``go_to_url`` loads anything, and, for what only the browser finds out
(a redirect hop, a name that resolves to a refused address), from the worker's note
about the failed navigation, which then replaces Chromium's bare ``net::ERR_...``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

from .observe import stop_loading
from .popups import blocked_popups, popup_note
from .secrets import SecretError, Secrets

NAVIGATING = frozenset({"go_to_url", "click", "type", "go_back"})  # actions that may start a page load
REFUSED = "refused to open "
UNREACHABLE = "could not open "


def refusal_note(url: str, reason: str) -> str:
    """What the model is told about a URL the policy refused (a tool result says ``Error: `` first)."""
    return f"{REFUSED}{url}: {reason}"


def unreachable_note(url: str, reason: str) -> str:
    """What the model is told about a URL that was allowed but could not be connected to."""
    return f"{UNREACHABLE}{url}: {reason}"


def _fn(name: str, description: str, props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": props, "required": required},
        },
    }


_INDEX = {"type": "integer", "description": "the element's [number] in the observation"}

BROWSER_TOOLS: list[dict[str, Any]] = [
    _fn("go_to_url", "Open a URL in the current tab.", {"url": {"type": "string"}}, ["url"]),
    _fn("click", "Click an element.", {"index": _INDEX}, ["index"]),
    _fn(
        "type",
        "Type text into an input; submit=true presses Enter afterwards.",
        {"index": _INDEX, "text": {"type": "string"}, "submit": {"type": "boolean"}},
        ["index", "text"],
    ),
    _fn(
        "select_option",
        "Choose an option of a <select> by its value or visible text.",
        {"index": _INDEX, "value": {"type": "string"}},
        ["index", "value"],
    ),
    _fn("scroll", "Scroll the page.", {"direction": {"type": "string", "enum": ["up", "down"]}}, ["direction"]),
    _fn("go_back", "Go back to the previous page.", {}, []),
    _fn(
        "extract_content",
        "Read the whole page (also what the observation cut off) and answer a question about it.",
        {"query": {"type": "string"}},
        ["query"],
    ),
    _fn(
        "done",
        "Finish the task with the answer; success=false when it could not be done.",
        {"text": {"type": "string"}, "success": {"type": "boolean"}},
        ["text", "success"],
    ),
]



class ActionError(ValueError):
    """A tool call the model must correct; the message is sent back to it."""


class ToolFailed(RuntimeError):
    """A tool could not do its work (e.g. an extraction process died); the model gets ``Error: ...``."""


@dataclass
class Action:
    name: str
    args: dict[str, Any]
    call_id: str

    def describe(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"{self.name}({inner})"


def parse_call(name: str, arguments: str, call_id: str, offered: dict[str, list[str]]) -> Action:
    """Check one tool call against the offered tools (name -> required arguments)."""
    if name not in offered:
        raise ActionError(f"unknown tool {name!r}; use one of: {', '.join(sorted(offered))}")
    try:
        args = json.loads(arguments or "{}")
    except json.JSONDecodeError as exc:
        raise ActionError(f"the arguments of {name} are not valid JSON ({exc.msg}); call it again") from exc
    if not isinstance(args, dict):
        raise ActionError(f"the arguments of {name} must be a JSON object")
    missing = [k for k in offered[name] if k not in args]
    if missing:
        raise ActionError(f"{name} needs {', '.join(missing)}")
    if "index" in args and not isinstance(args["index"], int):
        try:
            args["index"] = int(args["index"])
        except (TypeError, ValueError):
            raise ActionError(f"{name}: index must be an integer, got {args['index']!r}") from None
    return Action(name, args, call_id)


class HasPage(Protocol):
    """Whatever holds the task's current page (it may be replaced, e.g. after parking)."""

    @property
    def page(self) -> Page: ...

    def take_notes(self) -> list[str]:
        """What the engine did on the page's behalf since the last call (dialogs, popups, downloads)."""
        ...


class Browser:
    """Carries out page actions on the holder's page; ``timeout_s`` bounds each Playwright call."""

    def __init__(self, holder: HasPage, timeout_s: float,
                 refusal: Callable[[str], str | None] = lambda url: None, secrets: Secrets | None = None) -> None:
        self._holder = holder
        self._timeout_ms = timeout_s * 1000
        self._refusal = refusal  # the navigation policy (the context also enforces it on every request)
        self._secrets = secrets or Secrets()
        self._pending: list[str] = []  # notes taken from the holder while explaining a failed navigation

    @property
    def page(self) -> Page:
        return self._holder.page

    def take_notes(self) -> list[str]:
        notes, self._pending = self._pending, []
        return notes + self._holder.take_notes()

    def _element(self, index: int) -> Any:
        return self.page.locator(f'[data-blast-idx="{index}"]').first

    async def _settle(self) -> None:
        try:
            await self.page.wait_for_load_state("domcontentloaded", timeout=self._timeout_ms)
        except PlaywrightError:
            pass

    async def execute(self, action: Action) -> str:
        """Run the action; failures come back as ``Error: ...`` text for the model."""
        try:
            result = await self._execute(action)
            if action.name in NAVIGATING or action.name == "select_option":
                popups = await blocked_popups(self.page, self._timeout_ms / 1000)
                result += "".join(f"\nNote: {popup_note(u)}" for u in popups)
            return result
        except PlaywrightTimeout:
            seconds = f"{self._timeout_ms / 1000:g}s"
            if action.name not in NAVIGATING:
                return f"Error: {action.name} timed out after {seconds}"
            await stop_loading(self.page, self._timeout_ms / 1000)
            return (f"Error: {action.name} timed out after {seconds}: the page did not finish loading, so loading "
                    f"was stopped; the current page is {self.page.url}")
        except SecretError as exc:
            return f"Error: {action.name}: {exc}"
        except PlaywrightError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if action.name not in NAVIGATING:
                return self._failure(action, first)
            # A navigation the policy refused (or the egress proxy could not connect) fails with a bare
            # net::ERR_...; the worker's note says why,
            # and becomes the result (the other notes are handed out by take_notes as usual).
            self._pending += self._holder.take_notes()
            refused = next((n for n in self._pending if n.startswith((REFUSED, UNREACHABLE))), None)
            if refused is None:
                return self._failure(action, first)
            self._pending.remove(refused)
            return f"Error: {refused}"

    @staticmethod
    def _failure(action: Action, first: str) -> str:
        if "Download is starting" in first:
            return (f"Error: {action.args.get('url', 'the page')} is a file download, not a page; "
                    "downloads are refused (the file was not saved)")
        return f"Error: {action.name} failed: {first}"

    async def _execute(self, a: Action) -> str:
        t = self._timeout_ms
        if a.name == "go_to_url":
            why = self._refusal(str(a.args["url"]))
            if why:
                return f"Error: {refusal_note(str(a.args['url']), why)}"
            await self.page.goto(str(a.args["url"]), timeout=t, wait_until="domcontentloaded")
            return f"Opened {self.page.url}"
        if a.name == "click":
            el = self._element(a.args["index"])
            if await el.count() == 0:
                return f"Error: no element [{a.args['index']}] on the page"
            await el.click(timeout=t)
            await self._settle()
            return f"Clicked [{a.args['index']}]"
        if a.name == "type":
            el = self._element(a.args["index"])
            if await el.count() == 0:
                return f"Error: no element [{a.args['index']}] on the page"
            await el.fill(self._secrets.reveal(str(a.args["text"])), timeout=t)
            if a.args.get("submit"):
                await el.press("Enter", timeout=t)
                await self._settle()
            return f"Typed into [{a.args['index']}]"
        if a.name == "select_option":
            el = self._element(a.args["index"])
            if await el.count() == 0:
                return f"Error: no element [{a.args['index']}] on the page"
            value = str(a.args["value"])
            try:
                await el.select_option(value=value, timeout=t)
            except PlaywrightError:
                await el.select_option(label=value, timeout=t)
            return f"Selected {value!r} in [{a.args['index']}]"
        if a.name == "scroll":
            dy = -1 if a.args.get("direction") == "up" else 1
            await self.page.mouse.wheel(0, dy * 800)
            return f"Scrolled {a.args.get('direction', 'down')}"
        if a.name == "go_back":
            await self.page.go_back(timeout=t, wait_until="domcontentloaded")
            return f"Went back to {self.page.url}"
        raise ActionError(f"unknown tool {a.name!r}")
