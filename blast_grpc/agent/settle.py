"""Letting a page come to rest after an action, briefly and boundedly, before it is observed.

Right after a click the page is often still moving: a jQuery accordion sliding open, a
date picker or autocomplete list fading out over the button below it, images of a list
still loading. An observation taken then shows a half-drawn page (links of a section
missing, a button covered), and the model acts on that. A person glances until the
movement stops; ``settle`` does the same in the page: it waits, frame by frame
(``requestAnimationFrame``), until two frames in a row have no running finite animation
(``document.getAnimations()``: CSS animations and transitions, Web Animations), no jQuery
effect in its timer queue (``jQuery.timers``) and no visible image still loading, or until
``max_s`` has passed. Endless animations (spinners) are ignored: they never end.

Images drawn by CSS (``content: url(...)``, backgrounds) are not in ``document.images``; an
icon whose picture has not arrived has no size and cannot be listed. So ``Subresources``
counts the tab's image/font/stylesheet requests in flight while the action runs, and
``settle`` also waits (within the same bound) until none is left, then for the page to be
quiet again. It never sleeps for a fixed time, and whatever goes wrong (a navigation
replaced the document, a page that renders no frames) only ends the wait early: the
observation reports the page.
"""

from __future__ import annotations

import asyncio
import contextlib

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, Request

SETTLE_S = 0.4  # at most this long: jQuery's default effect lasts 400 ms, CSS transitions usually less

_QUIET_SCRIPT = r"""
async (maxMs) => {
  const until = performance.now() + maxMs;
  const finite = (a) => {
    if (a.playState !== 'running') return false;
    const t = a.effect && a.effect.getComputedTiming ? a.effect.getComputedTiming() : null;
    return !t || t.iterations !== Infinity;
  };
  const loading = (img) => {
    if (img.complete) return false;
    const r = img.getBoundingClientRect();
    return r.bottom > 0 && r.top < innerHeight && r.right > 0 && r.left < innerWidth || (r.width === 0 && r.height === 0);
  };
  const busy = () => document.getAnimations().some(finite)
    || (window.jQuery && window.jQuery.timers && window.jQuery.timers.length > 0)
    || Array.from(document.images).some(loading);
  let quiet = 0;
  while (performance.now() < until) {
    if (busy()) quiet = 0;
    else if (++quiet >= 2) return true;
    await new Promise(r => requestAnimationFrame(() => r()));
  }
  return false;
}
"""


class Subresources:
    """The tab's image, font and stylesheet requests in flight, counted while it is entered.

    Owned by one action (``tools.PageActions.execute``): the listeners are added on enter and
    removed on exit, so nothing outlives the action.
    """

    KINDS = frozenset({"image", "font", "stylesheet"})

    def __init__(self, page: Page) -> None:
        self._page = page
        self._pending: set[Request] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def _started(self, r: Request) -> None:
        if r.resource_type in self.KINDS:
            self._pending.add(r)
            self._idle.clear()

    def _ended(self, r: Request) -> None:
        self._pending.discard(r)
        if not self._pending:
            self._idle.set()

    def __enter__(self) -> Subresources:
        self._page.on("request", self._started)
        self._page.on("requestfinished", self._ended)
        self._page.on("requestfailed", self._ended)
        return self

    def __exit__(self, *exc: object) -> None:
        self._page.remove_listener("request", self._started)
        self._page.remove_listener("requestfinished", self._ended)
        self._page.remove_listener("requestfailed", self._ended)

    @property
    def busy(self) -> bool:
        return not self._idle.is_set()

    async def wait(self, timeout_s: float) -> bool:
        """Until none is in flight (True) or ``timeout_s`` passed (False)."""
        try:
            await asyncio.wait_for(self._idle.wait(), max(timeout_s, 0.0))
            return True
        except TimeoutError:
            return False


async def _quiet(page: Page, max_s: float) -> bool:
    with contextlib.suppress(PlaywrightError, TimeoutError):
        # The script bounds itself; the outer deadline covers a page that renders no frames at all.
        async with asyncio.timeout(max_s + 1.0):
            return bool(await page.evaluate(_QUIET_SCRIPT, int(max_s * 1000)))
    return False


async def settle(page: Page, max_s: float = SETTLE_S, loads: Subresources | None = None) -> bool:
    """Wait until the page's main frame has stopped moving and (with ``loads``) its pictures have
    arrived (True), or ``max_s`` passed (False)."""
    loop = asyncio.get_running_loop()
    until = loop.time() + max_s
    quiet = await _quiet(page, max_s)
    if loads is None or not loads.busy:
        return quiet
    if not await loads.wait(until - loop.time()):
        return False
    left = until - loop.time()
    return left > 0 and await _quiet(page, left)  # the arrived pictures are laid out and drawn
