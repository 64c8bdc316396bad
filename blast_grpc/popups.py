"""Windows a page opens on its own are not opened; the model is told where they wanted to go.

``BLOCK_POPUPS_SCRIPT`` runs in every document of a task's context before the page's own
scripts (the worker adds it to each new context). A ``window.open`` without a user
gesture (no transient user activation: a page opening windows while it loads or from
a timer) behaves as under a popup blocker (it returns ``null``) and its address is
recorded in the page. ``blocked_popups`` collects those addresses after an action (or
with an observation), and the model gets ``popup_note(url)`` for each: it can
``go_to_url`` there if it wants to. What a click opens (a ``target=_blank`` link,
``window.open`` in a click handler) becomes a new tab of the task (``worker/guard.py``,
``worker/session.py``); one beyond the tab limit is closed with the same note.

It sits beside ``agent/`` and ``worker/`` rather than in either: the worker installs the
script in each context and notes the tabs it closes, the agent reads what was blocked.
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
  // How many new tabs the page was asked to open since the last look (a click waits for them).
  const tabs = {n: 0};
  Object.defineProperty(window, '__blastTabs', {value: tabs});
  const open = window.open;
  window.open = function (url, ...rest) {
    if (navigator.userActivation && navigator.userActivation.isActive) {
      const w = open.call(window, url, ...rest);
      if (w) tabs.n++;
      return w;
    }
    note(url);
    return null;
  };
  const newWindow = (target) => {
    if (!target || ['_self', '_parent', '_top'].includes(target.toLowerCase())) return false;
    if (target.toLowerCase() === '_blank') return true;
    try { return !window.top.frames[target]; } catch (e) { return true; }
  };
  window.addEventListener('click', (ev) => {
    const a = ev.target instanceof Element ? ev.target.closest('a[href]') : null;
    if (a && !ev.defaultPrevented && newWindow(a.getAttribute('target'))) tabs.n++;
  });
  window.addEventListener('submit', (ev) => {
    const f = ev.target;
    if (f instanceof HTMLFormElement && newWindow(ev.submitter?.getAttribute('formtarget') || f.target)) tabs.n++;
  });
})();
"""

_TAKE = "() => (window.__blastPopups ? window.__blastPopups.splice(0) : [])"
_OPENING = "() => { const t = window.__blastTabs; if (!t) return 0; const n = t.n; t.n = 0; return n; }"


async def tabs_opening(page: Page, timeout_s: float) -> int:
    """How many new tabs the page started to open since the last call (cleared); 0 if it cannot say."""
    try:
        async with asyncio.timeout(timeout_s):
            return int(await page.evaluate(_OPENING))
    except Exception:  # navigated away or unresponsive: nothing to wait for
        return 0


def popup_note(url: str, closed: bool = False) -> str:
    if closed:
        return (f"the page opened a new tab at {url}; it was closed (the task has as many tabs as it may keep), "
                "close a tab or use go_to_url to open it")
    return (f"the page tried to open a new window at {url} on its own; it was not opened, "
            "use go_to_url to open it")


async def blocked_popups(page: Page, timeout_s: float) -> list[str]:
    """The addresses the page tried to open in new windows since the last call (cleared)."""
    try:
        async with asyncio.timeout(timeout_s):
            got = await page.evaluate(_TAKE)
    except Exception:  # mid-navigation or unresponsive: the next call gets them
        return []
    return [str(u) for u in got] if isinstance(got, list) else []
