"""What the agent sees: the page as numbered elements interleaved with its visible text.

The observation message (``Observation.render``; ``sim/protocol.py`` parses it)::

    OBSERVATION
    URL: <url>
    TITLE: <title>
    TABS: [0] <title> <url> (current) | [1] <title> <url>      (only with more than one tab)
    NOTE: <note>                                                (zero or more)
    SCROLL: <n>px above, <m>px below (viewport WxH)
    PAGE:
    <a line of visible text>
    [3] <button>Submit
    [4] <input type="text" name="q" placeholder="Search" value="Hello" focused>Search
    [5] <input type="checkbox" checked>Remember me
    [6] <select name="fruit" multiple selected="Apple, Plum">Fruits options: Apple, Pear, Plum
    IFRAME <src>:
    ...the frame's lines...
    END IFRAME
    STEP: n/max

An element line is ``[N] <tag attrs>name``: ``tag`` the lowercase tag name; ``attrs`` in
this order and only when present: ``role`` (explicit), ``type`` (inputs), ``href`` (as
written), ``name``, ``placeholder``, ``value`` (the live value), ``selected`` (a select's
selected options), then the flags ``checked selected multiple disabled readonly required
focused`` (bare ``selected``: the current tab/option, ``aria-selected``) and
``expanded="true|false"``. ``name`` is the accessible name (labels,
aria-labelledby, aria-label, alt, own text, title, placeholder), at most 100 characters;
a select's line ends with `` options: A, B, C``. Other lines are visible text, in
document order. What lies outside the viewport is included; ``SCROLL`` says how much.
Which elements are listed, and how, is decided by the page script (``dom_script.py``).

Identity: the page script sets ``data-blast-idx="N"`` on element N in its own document
(numbers are unique across the frames of the page, valid until the next observation).
``Observation.elements`` keeps for each N the frame it lives in and a fingerprint
(tag, role, name) so an action can find an element that was re-rendered since, or say
that it is gone (``tools.py``).

Reading has a deadline: a page stuck in a navigation that never commits blocks every
script, so ``observe`` stops the load (``stop_loading``) and reads what is still there.
Only a navigation that destroyed the page's script context mid-read reads as "the page
is loading"; any other failure of the page script becomes a ``NOTE`` naming the error
(with the page's plain text), and a frame that cannot be read (detached, crashed) is
named in a ``NOTE`` while the rest of the page is shown.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Frame, Page

from ..popups import popup_note
from ..prompts import observation_message
from .dom_script import SNAPSHOT_SCRIPT

MAX_ELEMENTS = 500
MAX_NODES = 60_000  # nodes one frame's walk visits at most (50,000-element pages end with a note, not a hang)
MAX_FRAMES = 20
TAB_TITLE_CHARS = 40
_LOADING = ("Execution context was destroyed", "Cannot find context with specified id",
            "Execution context is not available")


@dataclass
class ElementRef:
    """Where element N lives and what it was when observed (its fingerprint)."""

    tag: str
    role: str
    name: str
    frame: Frame | None = field(default=None, compare=False, repr=False)


@dataclass
class Observation:
    url: str
    title: str
    page: list[str]
    notes: list[str] = field(default_factory=list)
    tabs: list[str] = field(default_factory=list)
    scroll: str = ""
    elements: dict[int, ElementRef] = field(default_factory=dict)
    screenshot: bytes | None = None

    @property
    def text(self) -> str:
        """The PAGE section as one string (what the replay hash and text conditions read)."""
        return "\n".join(self.page)

    def element_line(self, index: int) -> str | None:
        """Element ``index``'s line without its ``[N] `` prefix, if it was listed."""
        prefix = f"[{index}] "
        return next((line[len(prefix):] for line in self.page if line.startswith(prefix)), None)

    def render(self, step: int, max_steps: int, max_chars: int) -> str:
        """The observation message the model reads (the format the simulated model parses)."""
        body: list[str] = []
        used = 0
        for i, line in enumerate(self.page):
            if used + len(line) > max_chars:
                rest = sum(len(x) + 1 for x in self.page[i:])
                body.append(f"[... {rest} more characters; scroll or use extract_content]")
                break
            body.append(line)
            used += len(line) + 1
        return observation_message(self.url, self.title, body, step, max_steps, tabs=self.tabs, notes=self.notes,
                                   scroll=self.scroll)

    def image_url(self) -> str | None:
        """The screenshot as a data URL for an ``image_url`` content part (None without vision)."""
        if self.screenshot is None:
            return None
        return "data:image/jpeg;base64," + base64.b64encode(self.screenshot).decode()


async def stop_loading(page: Page, timeout_s: float = 5.0) -> None:
    """Stop a navigation that does not finish (Chromium's stop button); the committed page stays."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout_s):
            cdp = await page.context.new_cdp_session(page)
            try:
                await cdp.send("Page.stopLoading")
            finally:
                await cdp.detach()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_context_lost(exc: BaseException) -> bool:
    """A navigation replaced the document while a script ran in it."""
    return isinstance(exc, PlaywrightError) and any(s in str(exc) for s in _LOADING)


class _Reader:
    """One observation's walk over the page's frames: numbering, lines, fingerprints, notes."""

    def __init__(self, max_elements: int, max_chars: int) -> None:
        self.next = 0
        self.max_elements = max_elements
        self.max_chars = max_chars
        self.elements: dict[int, ElementRef] = {}
        self.notes: list[str] = []
        self.frames = 0
        self.scroll: list[Any] = []
        self.popups: list[str] = []
        self.title = ""

    async def frame_lines(self, frame: Frame, main: bool) -> list[str]:
        left = max(self.max_elements - len(self.elements), 0)
        data = json.loads(await frame.evaluate(SNAPSHOT_SCRIPT, [self.next, left, self.max_chars, MAX_NODES]))
        self.next = int(data["next"])
        if main:
            self.scroll = [*data["scroll"], *data["viewport"]]
            self.popups = [str(u) for u in data.get("popups") or []]
            self.title = str(data.get("title") or "")
        if data.get("truncated"):
            what = {"elements": f"{self.max_elements} elements", "chars": f"{self.max_chars} characters",
                    "nodes": f"{MAX_NODES} nodes"}.get(str(data["truncated"]), "its limit")
            where = "the page" if main else f"the frame {frame.url}"
            self.notes.append(f"{where} is larger than one observation shows (truncated after {what}); "
                              "scroll, scroll_to_text or extract_content show the rest")
        children = await self._children(frame) if any(it[0] == "f" for it in data["items"]) else {}
        lines: list[str] = []
        run: list[str] = []

        def flush() -> None:
            if run:
                lines.append(" ".join(run))
                run.clear()

        for it in data["items"]:
            kind = it[0]
            if kind == "t":
                run.append(it[1])
            elif kind == "b":
                flush()
            elif kind == "e":
                flush()
                self.elements[int(it[1])] = ElementRef(it[3], it[4], it[5], frame)
                lines.append(f"[{it[1]}] {it[2]}")
            elif kind == "f":
                flush()
                lines += await self._frame(children.get(int(it[1])), str(it[2]))
        flush()
        return lines

    async def _children(self, frame: Frame) -> dict[int, Frame]:
        found: dict[int, Frame] = {}
        for child in frame.child_frames:
            try:
                handle = await child.frame_element()
                k = await handle.get_attribute("data-blast-frame")
                await handle.dispose()
            except PlaywrightError:
                continue  # detached meanwhile: it is named where it stood, if at all
            if k is not None and k.isdigit():
                found[int(k)] = child
        return found

    async def _frame(self, child: Frame | None, src: str) -> list[str]:
        label = src or (child.url if child else "")
        if child is None or child.is_detached():
            self.notes.append(f"the frame {label or '(no src)'} could not be read: it is not attached")
            return []
        if self.frames >= MAX_FRAMES:
            self.notes.append(f"the frame {label} is not shown (more than {MAX_FRAMES} frames)")
            return []
        self.frames += 1
        try:
            inner = await self.frame_lines(child, main=False)
        except PlaywrightError as exc:
            self.notes.append(f"the frame {child.url or label} could not be read: {_first_line(exc)}")
            return [f"IFRAME {child.url or label}: (not readable)"]
        return [f"IFRAME {child.url or label}:", *inner, "END IFRAME"]


async def _snapshot(page: Page, max_elements: int, max_chars: int) -> Observation:
    reader = _Reader(max_elements, max_chars)
    lines = await reader.frame_lines(page.main_frame, main=True)
    title = " ".join(reader.title.split())
    notes = reader.notes + [popup_note(u) for u in reader.popups]
    above, below, w, h = (reader.scroll + [0, 0, 0, 0])[:4]
    scroll = f"{int(above)}px above, {int(below)}px below (viewport {int(w)}x{int(h)})"
    return Observation(page.url, title, lines, notes, scroll=scroll, elements=reader.elements)


async def observe(page: Page, timeout_s: float = 10.0, max_elements: int = MAX_ELEMENTS,
                  max_chars: int = 6000, tabs: Sequence[Page] = (), vision: bool = False) -> Observation:
    """Read the page within ``timeout_s`` (stopping a hung load once); see the module docs for errors."""
    notes: list[str] = []
    obs: Observation | None = None
    for attempt in range(2):
        try:
            async with asyncio.timeout(timeout_s):
                obs = await _snapshot(page, max_elements, max_chars)
            break
        except TimeoutError:
            if attempt:
                notes.append(f"the page did not respond within {timeout_s:g}s twice; it could not be read")
                break
            await stop_loading(page, timeout_s)
            notes.append(f"the page did not respond within {timeout_s:g}s; its loading was stopped")
        except PlaywrightError as exc:
            if not is_context_lost(exc):
                if page.is_closed():
                    raise
                notes.append(f"the page's content could not be read ({_first_line(exc)}); "
                             "its plain text is shown instead")
                obs = Observation(page.url, "", (await page_text(page, timeout_s)).splitlines())
                with contextlib.suppress(PlaywrightError, TimeoutError):
                    async with asyncio.timeout(timeout_s):
                        obs.title = await page.title()
                break
            if attempt:
                notes.append("the page is loading (a navigation replaced it while it was read); "
                             "observe again or wait")
                break
            with contextlib.suppress(PlaywrightError):  # a navigation is under way: let it commit
                await page.wait_for_load_state("domcontentloaded", timeout=timeout_s * 1000)
    if obs is None:
        obs = Observation(page.url, "", [])
    obs.notes = notes + obs.notes
    if len(tabs) > 1:
        obs.tabs = [await _tab(i, t, t is page, timeout_s) for i, t in enumerate(tabs)]
    if vision and obs.elements:
        obs.screenshot = await screenshot(page, timeout_s)
    elif vision:
        obs.screenshot = await screenshot(page, timeout_s, overlay=False)
    return obs


async def _tab(i: int, tab: Page, current: bool, timeout_s: float) -> str:
    title = ""
    with contextlib.suppress(PlaywrightError, TimeoutError):
        async with asyncio.timeout(min(timeout_s, 2.0)):
            title = await tab.title()
    if len(title) > TAB_TITLE_CHARS:
        title = title[: TAB_TITLE_CHARS - 1] + "…"
    return f"[{i}] {title} {tab.url}" + (" (current)" if current else "")


_OVERLAY_ADD = """
() => {
  const layer = document.createElement('div');
  layer.id = '__blast_overlay';
  layer.style.cssText = 'position:fixed;left:0;top:0;width:0;height:0;z-index:2147483647;pointer-events:none';
  for (const el of document.querySelectorAll('[data-blast-idx]')) {
    const r = el.getBoundingClientRect();
    if (r.bottom < 0 || r.top > innerHeight || r.right < 0 || r.left > innerWidth) continue;
    const box = document.createElement('div');
    box.style.cssText = `position:fixed;left:${r.left}px;top:${r.top}px;width:${r.width}px;height:${r.height}px;`
      + 'outline:2px solid #e8175d;box-sizing:border-box';
    const tag = document.createElement('span');
    tag.textContent = el.getAttribute('data-blast-idx');
    tag.style.cssText = 'position:absolute;left:0;top:-1px;background:#e8175d;color:#fff;font:bold 11px sans-serif;'
      + 'padding:0 2px;line-height:13px';
    box.appendChild(tag);
    layer.appendChild(box);
  }
  document.documentElement.appendChild(layer);
}
"""
_OVERLAY_REMOVE = "() => { const l = document.getElementById('__blast_overlay'); if (l) l.remove(); }"
MAX_SCREENSHOT_WIDTH = 1280
SCREENSHOT_QUALITY = 60


async def screenshot(page: Page, timeout_s: float, overlay: bool = True) -> bytes | None:
    """A JPEG of the viewport (≤ 1280 px wide) with element numbers drawn on it; None if it fails."""
    try:
        async with asyncio.timeout(timeout_s):
            if overlay:
                await page.evaluate(_OVERLAY_ADD)
            try:
                size = page.viewport_size or {"width": MAX_SCREENSHOT_WIDTH, "height": 720}
                clip: Any = {"x": 0, "y": 0, "width": min(size["width"], MAX_SCREENSHOT_WIDTH),
                             "height": size["height"]}
                return await page.screenshot(type="jpeg", quality=SCREENSHOT_QUALITY, scale="css", clip=clip,
                                             timeout=timeout_s * 1000)
            finally:
                if overlay:
                    await page.evaluate(_OVERLAY_REMOVE)
    except (PlaywrightError, TimeoutError):
        return None


async def page_html(page: Page, timeout_s: float = 10.0) -> str:
    """The page's HTML as it is now (the DOM serialised), for extract_content ('' if it does not answer in time)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await page.content()
    except Exception:
        return ""


async def page_text(page: Page, timeout_s: float = 10.0) -> str:
    """The page's whole visible text, for extract_content ('' if the page does not answer in time)."""
    try:
        async with asyncio.timeout(timeout_s):
            return str(await page.evaluate("() => document.body ? document.body.innerText : ''"))
    except Exception:
        return ""
