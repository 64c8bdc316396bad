"""The browser tools the model calls, as Chat Completions function schemas, and their execution.

``parse_call`` turns a tool call into an ``Action`` or an ``ActionError`` that is
reported back to the model; ``PageActions.execute`` performs an action on the page and
returns the text the model gets as the tool result (``_do_<tool>`` per tool).

Elements are found by their observation number and checked against the observation's
fingerprint (``elements.py``); a click or hover on a covered element fails within about
a second naming what covers it, and never stops the page's loading. The pointer travels
to a click or hover target in a few steps (``_approach``), so hover handlers on the way
see it arrive, as with a person's mouse. A navigation the
model asked for (``go_to_url``, ``go_back``) that times out is stopped (the page that was
there stays usable); a URL that is a file download is refused. ``type`` works for every
kind of field and reads the value back (``inputs.py``), with secret placeholders swapped
for their values right before typing. Tabs belong to the worker's session (``HasTabs``).

A URL the policy refuses is answered ``Error: refused to open URL: reason``: checked
here before ``go_to_url`` loads anything, and, for what only the browser finds out
(a redirect hop, a name that resolves to a refused address), from the worker's note
about the failed navigation, which then replaces Chromium's bare ``net::ERR_...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Frame, Locator, Page, Position, Request
from playwright.async_api import TimeoutError as PlaywrightTimeout

from ..popups import blocked_popups, popup_note, tabs_opening
from ..prompts import OPENED, WENT_BACK
from .elements import ElementGone, locate, reach
from .inputs import FillError, fill_field
from .observe import Observation, is_context_lost, stop_loading
from .secrets import SecretError, Secrets
from .settle import Subresources, settle

NAVIGATING = frozenset({"go_to_url", "click", "type", "go_back"})  # actions that may start a page load
# Actions after which the page may still be moving (an animation, a list fading): settle.py.
MOVING = frozenset({"go_to_url", "click", "type", "go_back", "select_option", "send_keys", "hover", "scroll",
                    "scroll_to_text", "drag_and_drop", "switch_tab", "close_tab"})
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
_TEXT = {"type": "string"}

# One list, always in this order: the prompt prefix stays the same from step to step.
BROWSER_TOOLS: list[dict[str, Any]] = [
    _fn("go_to_url", "Open a URL in the current tab.", {"url": _TEXT}, ["url"]),
    _fn("click", "Click an element (a link that opens a new tab makes that tab current). Fails at once, naming "
        "what is in the way, if something covers the element.", {"index": _INDEX}, ["index"]),
    _fn("type", "Replace the contents of a field (any input kind, textarea, editable element) with text, as typed "
        "by a person; dates like 2026-11-29, times like 14:05. The value is read back. submit=true presses Enter "
        "afterwards.", {"index": _INDEX, "text": _TEXT, "submit": {"type": "boolean"}}, ["index", "text"]),
    _fn("select_option", "Choose option(s) of a <select> by value or visible text; several values only for a "
        "select marked multiple (they replace the current selection).",
        {"index": _INDEX, "value": _TEXT, "values": {"type": "array", "items": _TEXT}}, ["index"]),
    _fn("send_keys", "Press keys, in order, separated by spaces: e.g. \"Enter\", \"Tab Tab\", \"Escape\", "
        "\"ArrowDown\", \"Control+a\", \"Shift+Tab\". With index, the element is focused first.",
        {"keys": _TEXT, "index": _INDEX}, ["keys"]),
    _fn("hover", "Move the mouse over an element (menus and tooltips that open on hover).", {"index": _INDEX},
        ["index"]),
    _fn("scroll", "Scroll the page up or down by most of a screen; with index, scroll inside that element (a "
        "scrollable list) or, without a direction, bring that element into view.",
        {"direction": {"type": "string", "enum": ["up", "down"]}, "index": _INDEX}, []),
    _fn("scroll_to_text", "Scroll to the first place on the page where the text appears.", {"text": _TEXT},
        ["text"]),
    _fn("drag_and_drop", "Drag one element onto another.",
        {"source": _INDEX, "target": _INDEX}, ["source", "target"]),
    _fn("switch_tab", "Make tab [index] of the TABS line current.", {"index": {"type": "integer"}}, ["index"]),
    _fn("close_tab", "Close tab [index] of the TABS line.", {"index": {"type": "integer"}}, ["index"]),
    _fn("go_back", "Go back to the previous page.", {}, []),
    _fn("wait", f"Wait for the page to change (at most {10} seconds).", {"seconds": {"type": "number"}},
        ["seconds"]),
    _fn(
        "extract_content",
        "Read the whole page (also what the observation cut off) and answer a question about it.",
        {"query": _TEXT},
        ["query"],
    ),
    _fn(
        "done",
        "Finish the task with the answer; success=false when it could not be done.",
        {"text": _TEXT, "success": {"type": "boolean"}},
        ["text", "success"],
    ),
]
UPLOAD_TOOL = _fn("upload_file", "Put a file from the upload folder into a file input.",
                  {"index": _INDEX, "filename": {"type": "string", "description": "a file name in the upload folder"}},
                  ["index", "filename"])
MAX_WAIT_S = 10.0
POINTER_STEPS = 4  # mouse moves on the way to a click or hover target (hover handlers fire along the way)


def browser_tools(upload: bool) -> list[dict[str, Any]]:
    """The browser tools offered to the model, ``upload_file`` (before extract_content) when an upload folder is set."""
    if not upload:
        return list(BROWSER_TOOLS)
    at = next(i for i, t in enumerate(BROWSER_TOOLS) if t["function"]["name"] == "extract_content")
    return [*BROWSER_TOOLS[:at], UPLOAD_TOOL, *BROWSER_TOOLS[at:]]


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
    for key in ("index", "source", "target"):
        if key in args and (not isinstance(args[key], int) or isinstance(args[key], bool)):
            try:
                args[key] = int(args[key])
            except (TypeError, ValueError):
                raise ActionError(f"{name}: {key} must be an integer, got {args[key]!r}") from None
    return Action(name, args, call_id)


class HasPage(Protocol):
    """Whatever holds the task's current page (it may be replaced, e.g. after parking)."""

    @property
    def page(self) -> Page: ...

    def take_notes(self) -> list[str]:
        """What the engine did on the page's behalf since the last call (dialogs, popups, downloads)."""
        ...


@runtime_checkable
class HasTabs(Protocol):
    """A holder with several tabs (the worker's ``BrowserSession``)."""

    @property
    def tabs(self) -> list[Page]: ...

    def switch_tab(self, index: int) -> Page: ...

    async def close_tab(self, index: int) -> Page: ...


class PageActions:
    """Carries out page actions on the holder's page; ``timeout_s`` bounds each Playwright call.

    ``seen`` is the observation the model decided on: element numbers are checked against
    its fingerprints (``elements.locate``).
    """

    def __init__(self, holder: HasPage, timeout_s: float,
                 refusal: Callable[[str], str | None] = lambda url: None, secrets: Secrets | None = None,
                 upload_dir: str | None = None) -> None:
        self._holder = holder
        self._timeout_ms = timeout_s * 1000
        self._refusal = refusal  # the navigation policy (the context also enforces it on every request)
        self._secrets = secrets or Secrets()
        self._pending: list[str] = []  # notes taken from the holder while explaining a failed navigation
        self._upload_dir = Path(upload_dir).resolve() if upload_dir else None
        self.seen: Observation | None = None
        # Tab -> the URL of the document a secret was typed into (a navigation leaves it behind).
        self._secret_typed: weakref.WeakKeyDictionary[Page, str] = weakref.WeakKeyDictionary()

    @property
    def page(self) -> Page:
        return self._holder.page

    def typed_secret_here(self) -> bool:
        """Whether a secret was typed into the document now in the current tab."""
        return self._secret_typed.get(self.page) == self.page.url

    def take_notes(self) -> list[str]:
        notes, self._pending = self._pending, []
        return notes + self._holder.take_notes()

    async def _element(self, index: int) -> tuple[Locator, str]:
        return await locate(self.page, self.seen, index)

    async def _settle(self) -> None:
        """Wait (bounded) for a navigation the action started; a page that does not load is left loading."""
        try:
            await self.page.wait_for_load_state("domcontentloaded", timeout=self._timeout_ms)
        except PlaywrightError:
            pass

    async def execute(self, action: Action) -> str:
        """Run the action; failures come back as ``Error: ...`` text for the model."""
        try:
            page = self.page
            with Subresources(page) as loads:
                result = await self._execute(action)
                if action.name in MOVING:  # the next observation shows the page at rest, not mid-slide
                    await settle(self.page, loads=loads if self.page is page else None)
            if action.name in NAVIGATING or action.name in ("select_option", "send_keys"):
                popups = await blocked_popups(self.page, self._timeout_ms / 1000)
                result += "".join(f"\nNote: {popup_note(u)}" for u in popups)
            return result
        except (ElementGone, ActionError) as exc:
            return f"Error: {action.name}: {exc}"
        except (FillError, SecretError) as exc:
            return f"Error: {action.name} into [{action.args.get('index')}]: {exc}"
        except PlaywrightTimeout:
            seconds = f"{self._timeout_ms / 1000:g}s"
            if action.name not in ("go_to_url", "go_back"):
                return f"Error: {action.name} timed out after {seconds}"
            await stop_loading(self.page, self._timeout_ms / 1000)
            return (f"Error: {action.name} timed out after {seconds}: the page did not finish loading, so loading "
                    f"was stopped; the current page is {self.page.url}")
        except PlaywrightError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if action.name not in NAVIGATING:
                return self._failure(action, exc, first)
            # A navigation the policy refused (or the egress proxy could not connect) fails with a bare
            # net::ERR_...; the worker's note says why,
            # and becomes the result (the other notes are handed out by take_notes as usual).
            self._pending += self._holder.take_notes()
            refused = next((n for n in self._pending if n.startswith((REFUSED, UNREACHABLE))), None)
            if refused is None:
                return self._failure(action, exc, first)
            self._pending.remove(refused)
            return f"Error: {refused}"

    @staticmethod
    def _failure(action: Action, exc: PlaywrightError, first: str) -> str:
        if "Download is starting" in first:
            return (f"Error: {action.args.get('url', 'the page')} is a file download, not a page; "
                    "downloads are refused (the file was not saved)")
        if is_context_lost(exc):
            return f"Error: {action.name}: the page navigated away during the action; look at the new page"
        return f"Error: {action.name} failed: {first}"

    async def _execute(self, a: Action) -> str:
        t = self._timeout_ms
        handler = getattr(self, f"_do_{a.name}", None)
        if handler is None:
            raise ActionError(f"unknown tool {a.name!r}")
        if a.name == "go_to_url":
            why = self._refusal(str(a.args["url"]))
            if why:
                return f"Error: {refusal_note(str(a.args['url']), why)}"
            await self.page.goto(str(a.args["url"]), timeout=t, wait_until="domcontentloaded")
            return f"{OPENED} {self.page.url}"
        return str(await handler(a))

    async def _do_go_to_url(self, a: Action) -> str:  # handled in _execute (refusal first)
        raise AssertionError

    async def _approach(self, el: Locator, point: Position) -> None:
        """Move the pointer to ``point`` of the element in a few steps, as a person's pointer travels.

        A pointer that jumps leaves hover state behind: a menu that tracks the item under the
        pointer (jQuery UI's autocomplete) still holds the item it was resting on when the click
        lands. Moving through intermediate points fires mouseover/mousemove on the way.
        """
        box = await el.bounding_box(timeout=self._timeout_ms)
        if box is None:
            return  # not rendered: the click itself reports it
        await self.page.mouse.move(box["x"] + point["x"], box["y"] + point["y"], steps=POINTER_STEPS)

    async def _do_click(self, a: Action) -> str:
        index = a.args["index"]
        el, note = await self._element(index)
        point = await reach(el, index)
        before = self.page
        loop = asyncio.get_running_loop()
        popup: asyncio.Future[Page] = loop.create_future()
        leaving: asyncio.Future[str] = loop.create_future()  # a navigation of this tab started
        arrived: asyncio.Future[None] = loop.create_future()  # ... and committed

        def on_popup(p: Page) -> None:
            if not popup.done():
                popup.set_result(p)

        def on_request(r: Request) -> None:
            if r.is_navigation_request() and r.frame == before.main_frame and not leaving.done():
                leaving.set_result(r.url)

        def on_navigated(f: Frame) -> None:
            if f == before.main_frame and leaving.done() and not arrived.done():
                arrived.set_result(None)

        events: tuple[tuple[Any, Any], ...] = (("popup", on_popup), ("request", on_request),
                                               ("framenavigated", on_navigated))
        for event, handler in events:
            before.on(event, handler)
        late = ""
        try:
            # Not waiting inside click() for a navigation: one that never commits must not stop the page.
            await self._approach(el, point)
            await el.click(timeout=self._timeout_ms, no_wait_after=True, position=point)
            wait_s = self._timeout_ms / 1000
            if not popup.done() and await tabs_opening(before, wait_s):
                with contextlib.suppress(TimeoutError):  # the tab is on its way: let the session adopt it
                    await asyncio.wait_for(asyncio.shield(popup), wait_s)
            if leaving.done():
                try:
                    await asyncio.wait_for(asyncio.shield(arrived), wait_s)
                except TimeoutError:
                    late = (f"; it started loading {leaving.result()}, which did not answer within {wait_s:g}s "
                            "(it is still loading)")
        finally:
            for event, handler in events:
                before.remove_listener(event, handler)
        await asyncio.sleep(0)  # the guard's "page" handler adopts the tab in this turn of the loop
        if not late:
            await self._settle()
        opened = "" if self.page is before else f"; it opened a new tab, now current: {self.page.url}"
        return f"Clicked [{index}]{opened}{late}" + (f" ({note})" if note else "")

    async def _do_type(self, a: Action) -> str:
        index = a.args["index"]
        el, note = await self._element(index)
        text = str(a.args["text"])
        revealed = self._secrets.reveal(text)
        if revealed != text:  # a secret goes into this page: no screenshot of it from now on (loop.py)
            self._secret_typed[self.page] = self.page.url
        got = await fill_field(el, revealed, self._timeout_ms)
        if a.args.get("submit"):
            await el.press("Enter", timeout=self._timeout_ms)
            await self._settle()
        shown = got if len(got) <= 100 else got[:99] + "…"
        return (f"Typed into [{index}]; it now holds {shown!r}" + (" and Enter was pressed" if a.args.get("submit")
                                                                   else "") + (f" ({note})" if note else ""))

    async def _do_select_option(self, a: Action) -> str:
        index = a.args["index"]
        raw = a.args.get("values", a.args.get("value"))
        wanted = [str(v) for v in raw] if isinstance(raw, list) else ([] if raw is None else [str(raw)])
        if not wanted:
            raise ActionError("select_option needs value (or values for a multiple select)")
        el, note = await self._element(index)
        found = await el.evaluate(_FIND_OPTIONS, wanted, timeout=self._timeout_ms)
        if isinstance(found, str):
            return f"Error: select_option on [{index}]: {found}"
        await el.select_option(index=[int(i) for i in found], timeout=self._timeout_ms)
        chosen = await el.evaluate("(el) => Array.from(el.selectedOptions).map(o => o.text.trim())")
        return f"Selected {', '.join(map(repr, chosen))} in [{index}]" + (f" ({note})" if note else "")

    async def _do_send_keys(self, a: Action) -> str:
        keys = str(a.args["keys"]).split()
        if not keys:
            raise ActionError("send_keys needs keys, e.g. \"Enter\" or \"Control+a\"")
        if "index" in a.args:
            el, _ = await self._element(a.args["index"])
            await el.focus(timeout=self._timeout_ms)
        for key in keys:
            try:
                await self.page.keyboard.press(key)
            except PlaywrightError as exc:
                if "Unknown key" in str(exc):
                    return (f"Error: send_keys: unknown key {key!r}; use names like Enter, Tab, Escape, ArrowDown, "
                            "Backspace, a, Control+a")
                raise
        await self._settle()
        return f"Pressed {' '.join(keys)}"

    async def _do_hover(self, a: Action) -> str:
        el, note = await self._element(a.args["index"])
        point = await reach(el, a.args["index"])
        await self._approach(el, point)
        await el.hover(timeout=self._timeout_ms, position=point)
        return f"Hovering over [{a.args['index']}]" + (f" ({note})" if note else "")

    async def _do_scroll(self, a: Action) -> str:
        direction = a.args.get("direction")
        if direction not in (None, "up", "down"):
            raise ActionError(f"scroll: direction must be up or down, got {direction!r}")
        if "index" in a.args:
            el, _ = await self._element(a.args["index"])
            if direction is None:
                await el.scroll_into_view_if_needed(timeout=self._timeout_ms)
                return f"Scrolled [{a.args['index']}] into view"
            pos = await el.evaluate(_SCROLL_ELEMENT, 1 if direction == "down" else -1, timeout=self._timeout_ms)
            return f"Scrolled [{a.args['index']}] {direction}: {pos}"
        if direction is None:
            raise ActionError("scroll needs a direction (up or down) or an index")
        pos = await self.page.evaluate(_SCROLL_PAGE, 1 if direction == "down" else -1)
        return f"Scrolled {direction}: {pos}"

    async def _do_scroll_to_text(self, a: Action) -> str:
        text = str(a.args["text"]).strip()
        if not text:
            raise ActionError("scroll_to_text needs a text to look for")
        for frame in self.page.frames:
            loc = frame.get_by_text(text, exact=False)
            try:
                n = await loc.count()
                for i in range(min(n, 20)):
                    if await loc.nth(i).is_visible():
                        await loc.nth(i).scroll_into_view_if_needed(timeout=self._timeout_ms)
                        return f"Scrolled to {text!r}"
            except PlaywrightError:
                continue  # a frame that went away meanwhile
        return f"Error: scroll_to_text: {text!r} does not appear on the page"

    async def _do_drag_and_drop(self, a: Action) -> str:
        src, _ = await self._element(a.args["source"])
        dst, _ = await self._element(a.args["target"])
        await reach(src, a.args["source"])
        await src.drag_to(dst, timeout=self._timeout_ms)
        return f"Dragged [{a.args['source']}] onto [{a.args['target']}]"

    def _tabs(self) -> HasTabs:
        if not isinstance(self._holder, HasTabs):
            raise ActionError("this browser has a single tab")
        return self._holder

    async def _do_switch_tab(self, a: Action) -> str:
        try:
            page = self._tabs().switch_tab(int(a.args["index"]))
        except IndexError as exc:
            return f"Error: switch_tab: {exc}"
        with contextlib.suppress(PlaywrightError):
            await page.bring_to_front()
        return f"Switched to tab [{a.args['index']}]: {page.url}"

    async def _do_close_tab(self, a: Action) -> str:
        try:
            page = await self._tabs().close_tab(int(a.args["index"]))
        except IndexError as exc:
            return f"Error: close_tab: {exc}"
        return f"Closed tab [{a.args['index']}]; the current tab is {page.url}"

    async def _do_go_back(self, a: Action) -> str:
        await self.page.go_back(timeout=self._timeout_ms, wait_until="domcontentloaded")
        return f"{WENT_BACK} {self.page.url}"

    async def _do_wait(self, a: Action) -> str:
        try:
            seconds = float(a.args["seconds"])
        except (TypeError, ValueError):
            raise ActionError(f"wait: seconds must be a number, got {a.args['seconds']!r}") from None
        seconds = min(max(seconds, 0.0), MAX_WAIT_S)
        await asyncio.sleep(seconds)  # the model asked for time to pass (bounded)
        return f"Waited {seconds:g}s"

    async def _do_upload_file(self, a: Action) -> str:
        if self._upload_dir is None:
            raise ActionError("upload_file is not available: no upload folder is configured")
        path = (self._upload_dir / str(a.args["filename"])).resolve()
        if not path.is_relative_to(self._upload_dir):
            return f"Error: upload_file: {a.args['filename']!r} is outside the upload folder"
        if not path.is_file():
            names = sorted(p.name for p in self._upload_dir.iterdir() if p.is_file())[:20]
            return f"Error: upload_file: there is no file {a.args['filename']!r}; available: {', '.join(names)}"
        el, _ = await self._element(a.args["index"])
        if not await el.evaluate("(el) => el.tagName === 'INPUT' && el.type === 'file'"):
            return f"Error: upload_file: [{a.args['index']}] is not a file input"
        await el.set_input_files(path, timeout=self._timeout_ms)
        return f"Put {path.name} into [{a.args['index']}]"


_FIND_OPTIONS = """
(el, wanted) => {
  if (el.tagName !== 'SELECT') return 'this is not a <select>; click its options instead';
  const opts = Array.from(el.options);
  const norm = (s) => s.replace(/\\s+/g, ' ').trim().toLowerCase();
  const out = [];
  for (const w of wanted) {
    let i = opts.findIndex(o => o.value === w || o.text.trim() === w.trim());
    if (i < 0) i = opts.findIndex(o => norm(o.text) === norm(w) || norm(o.value) === norm(w));
    if (i < 0) return 'no option ' + JSON.stringify(w) + '; the options are: '
      + opts.slice(0, 50).map(o => o.text.trim()).join(', ');
    if (opts[i].disabled) return 'the option ' + JSON.stringify(w) + ' is disabled';
    out.push(i);
  }
  if (out.length > 1 && !el.multiple) return 'this select takes one option, not ' + out.length;
  return out;
}
"""
_POSITION = ("(e, vh) => Math.round(e.scrollTop) + 'px above, ' + "
             "Math.max(0, Math.round(e.scrollHeight - e.scrollTop - vh)) + 'px below'")
# After scrolling, one frame passes so the page's scroll handlers (infinite lists) have run.
_NEXT_FRAME = "await new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)));"
_SCROLL_PAGE = f"""
async (dir) => {{
  const e = document.scrollingElement || document.documentElement;
  window.scrollBy({{top: dir * Math.round(innerHeight * 0.8), behavior: 'instant'}});
  {_NEXT_FRAME}
  return ({_POSITION})(e, innerHeight);
}}
"""
_SCROLL_ELEMENT = f"""
async (el, dir) => {{
  el.scrollBy({{top: dir * Math.max(Math.round(el.clientHeight * 0.8), 40), behavior: 'instant'}});
  {_NEXT_FRAME}
  return ({_POSITION})(el, el.clientHeight);
}}
"""
