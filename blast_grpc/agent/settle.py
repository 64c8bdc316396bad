"""Letting a page come to rest after an action, briefly and boundedly, before it is observed.

Right after a click the page is often still moving: a jQuery accordion sliding open, a
date picker or autocomplete list fading out over the button below it, images of a list
still loading. An observation taken then shows a half-drawn page (links of a section
missing, a button covered), and the model acts on that. A person glances until the
movement stops; ``settle`` does the same in the page: it waits, frame by frame
(``requestAnimationFrame``), until two frames in a row have no running finite animation
(``document.getAnimations()``: CSS animations and transitions, Web Animations), no jQuery
effect in its timer queue (``jQuery.timers``) and no visible image still loading, or until
``max_s`` has passed. Endless animations (spinners) are ignored: they never end. It never
sleeps for a fixed time, and whatever goes wrong (a navigation replaced the document, a
page that renders no frames) only ends the wait early: the observation reports the page.
"""

from __future__ import annotations

import asyncio
import contextlib

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

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


async def settle(page: Page, max_s: float = SETTLE_S) -> bool:
    """Wait until the page's main frame has stopped moving (True) or ``max_s`` passed (False)."""
    with contextlib.suppress(PlaywrightError, TimeoutError):
        # The script bounds itself; the outer deadline covers a page that renders no frames at all.
        async with asyncio.timeout(max_s + 1.0):
            return bool(await page.evaluate(_QUIET_SCRIPT, int(max_s * 1000)))
    return False
