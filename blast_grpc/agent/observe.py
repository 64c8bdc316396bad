"""What the agent sees: URL, title, numbered interactive elements and visible text.

The page script tags each visible interactive element with ``data-blast-idx`` so
an action can find "element [3]" again; the numbers are valid until the next
observation. Reading a page has a deadline: a page stuck in a navigation that never
commits (a server that never answers) blocks every script, so ``observe`` stops the
load (``stop_loading``) and reads the page that is still there. Things the engine did
on the page's behalf since the last action (a dialog dismissed, a popup closed) come
as ``NOTE:`` header lines.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from playwright.async_api import Page

from .popups import popup_note

MAX_ELEMENTS = 200

_SCRIPT = """
(maxElements) => {
  const sel = 'a[href], button, input:not([type=hidden]), select, textarea, summary, '
            + '[role=button], [role=link], [onclick]';
  for (const e of document.querySelectorAll('[data-blast-idx]')) e.removeAttribute('data-blast-idx');
  const lines = [];
  let i = 0;
  for (const el of document.querySelectorAll(sel)) {
    const r = el.getBoundingClientRect();
    const st = getComputedStyle(el);
    if (st.display === 'none' || st.visibility === 'hidden' || (r.width === 0 && r.height === 0)) continue;
    el.setAttribute('data-blast-idx', String(i));
    const tag = el.tagName.toLowerCase();
    const attrs = [];
    for (const a of ['href', 'type', 'name', 'placeholder', 'value', 'aria-label', 'role']) {
      const v = el.getAttribute(a);
      if (v) attrs.push(a + '="' + v.slice(0, 100).replace(/"/g, "'") + '"');
    }
    let label = (el.innerText || '').trim().replace(/\\s+/g, ' ').slice(0, 100);
    if (tag === 'select') label = ' options: ' + Array.from(el.options).map(o => o.text.trim()).join(', ');
    lines.push('[' + i + '] <' + tag + (attrs.length ? ' ' + attrs.join(' ') : '') + '>' + label);
    i++;
    if (i >= maxElements) break;
  }
  const popups = window.__blastPopups ? window.__blastPopups.splice(0) : [];
  return {elements: lines, text: document.body ? document.body.innerText : '', popups: popups};
}
"""


@dataclass
class Observation:
    url: str
    title: str
    elements: list[str]
    text: str
    notes: list[str] = field(default_factory=list)

    def render(self, step: int, max_steps: int, max_chars: int) -> str:
        """The observation message the model reads (the format the simulated model parses)."""
        text = self.text.strip()
        if len(text) > max_chars:
            text = text[:max_chars] + f"\n[... {len(self.text) - max_chars} more characters; use extract_content]"
        return "\n".join(
            [
                "OBSERVATION",
                f"URL: {self.url}",
                f"TITLE: {self.title}",
                *(f"NOTE: {n}" for n in self.notes),
                "ELEMENTS:",
                *self.elements,
                "TEXT:",
                text,
                f"STEP: {step}/{max_steps}",
            ]
        )


async def stop_loading(page: Page, timeout_s: float = 5.0) -> None:
    """Stop a navigation that does not finish (Chromium's stop button); the committed page stays."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout_s):
            cdp = await page.context.new_cdp_session(page)
            try:
                await cdp.send("Page.stopLoading")
            finally:
                await cdp.detach()


async def _read(page: Page, timeout_s: float) -> tuple[dict[str, object], str] | None:
    try:
        async with asyncio.timeout(timeout_s):
            return dict(await page.evaluate(_SCRIPT, MAX_ELEMENTS)), await page.title()
    except TimeoutError:
        return None


async def observe(page: Page, timeout_s: float = 10.0) -> Observation:
    """Read the page within ``timeout_s`` (stopping a hung load once); mid-navigation reads as blank."""
    notes: list[str] = []
    try:
        got = await _read(page, timeout_s)
        if got is None:
            await stop_loading(page, timeout_s)
            got = await _read(page, timeout_s)
            notes.append(f"the page did not respond within {timeout_s:g}s; its loading was stopped")
        data, title = got if got is not None else ({"elements": [], "text": ""}, "")
    except Exception:  # navigation destroyed the context mid-read: show what we know
        data, title = {"elements": [], "text": ""}, ""
    elements, popups = data.get("elements"), data.get("popups")
    if isinstance(popups, list):
        notes += [popup_note(str(u)) for u in popups]
    return Observation(url=page.url, title=title, elements=[str(e) for e in elements] if isinstance(elements, list)
                       else [], text=str(data.get("text", "")), notes=notes)


async def page_text(page: Page, timeout_s: float = 10.0) -> str:
    """The page's whole visible text, for extract_content ('' if the page does not answer in time)."""
    try:
        async with asyncio.timeout(timeout_s):
            return str(await page.evaluate("() => document.body ? document.body.innerText : ''"))
    except Exception:
        return ""
