"""Popup windows are not opened: a task keeps exactly one page, and the model is told where a popup wanted to go.

``BLOCK_POPUPS_SCRIPT`` runs in every document of a task's context before the page's own
scripts (the worker adds it to each new context). It makes ``window.open`` behave as
under a popup blocker (it returns ``null``) and stops clicks on links that target a new
window (``target=_blank`` or a name that is no frame) and submissions of such forms;
each time it records the address in the page. ``blocked_popups`` collects those
addresses after an action (or with an observation), and the model gets
``popup_note(url)`` for each: it can ``go_to_url`` there if it wants to. Anything
that still opens a window (say ``form.submit()`` from a script) is closed by the
worker's page guard with the same note.
"""

from __future__ import annotations

import asyncio

from playwright.async_api import Page

BLOCK_POPUPS_SCRIPT = """
(() => {
  if (window.__blastPopups) return;
  const seen = [];
  Object.defineProperty(window, '__blastPopups', {value: seen});
  const note = (url) => {
    try { seen.push(String(new URL(url === undefined || url === null || url === '' ? 'about:blank' : String(url),
                                   document.baseURI))); }
    catch (e) { seen.push(String(url)); }
  };
  window.open = function (url) { note(url); return null; };
  const newWindow = (target) => {
    if (!target || ['_self', '_parent', '_top'].includes(target.toLowerCase())) return false;
    if (target.toLowerCase() === '_blank') return true;
    try { return !window.top.frames[target]; } catch (e) { return true; }
  };
  window.addEventListener('click', (ev) => {
    const a = ev.target instanceof Element ? ev.target.closest('a[href]') : null;
    if (a && newWindow(a.getAttribute('target'))) { ev.preventDefault(); note(a.href); }
  }, true);
  window.addEventListener('submit', (ev) => {
    const f = ev.target;
    if (f instanceof HTMLFormElement && newWindow(ev.submitter?.getAttribute('formtarget') || f.target)) {
      ev.preventDefault();
      note(f.action);
    }
  }, true);
})();
"""

_TAKE = "() => (window.__blastPopups ? window.__blastPopups.splice(0) : [])"


def popup_note(url: str, closed: bool = False) -> str:
    how = "it was closed" if closed else "it was not opened"
    return f"the page tried to open a new window at {url}; {how} (a task keeps one page), use go_to_url to open it"


async def blocked_popups(page: Page, timeout_s: float) -> list[str]:
    """The addresses the page tried to open in new windows since the last call (cleared)."""
    try:
        async with asyncio.timeout(timeout_s):
            got = await page.evaluate(_TAKE)
    except Exception:  # mid-navigation or unresponsive: the next call gets them
        return []
    return [str(u) for u in got] if isinstance(got, list) else []
