"""Step thumbnails for the dashboard (``settings.dashboard_screenshots``).

After each step the worker takes a small JPEG of the task's page and puts it in the step
event (``TaskStep.thumbnail``), so it lives exactly as long as the task's event log (the
task database's retention drops it with the task). With the setting off nothing is taken
and the field stays empty: the event stream keeps its size.

Chromium scales the image itself (``Page.captureScreenshot`` with a clip ``scale``), so a
thumbnail is a few KB and needs no image library. One ``Thumbnails`` per task attempt
bounds the count and the bytes; past either bound the steps go without one. A task whose
values are secret (``settings.secrets_file_path``) gets none: a picture cannot be redacted.
"""

from __future__ import annotations

import asyncio
import base64
import logging

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page

log = logging.getLogger(__name__)

THUMB_WIDTH = 320  # CSS pixels of the thumbnail; the viewport is scaled down to it
THUMB_QUALITY = 50
CAPTURE_TIMEOUT_S = 5.0


class Thumbnails:
    """Takes one task's step thumbnails while fewer than ``max_count`` / ``max_bytes`` were taken."""

    def __init__(self, max_count: int, max_bytes: int) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.count = 0
        self.bytes = 0

    async def take(self, page: Page) -> bytes:
        """A JPEG of ``page``'s viewport, THUMB_WIDTH wide; b"" past the bounds or if the page does not answer."""
        if self.count >= self.max_count or self.bytes >= self.max_bytes or page.url in ("", "about:blank"):
            return b""  # past the bounds, or nothing to see
        try:
            image = await asyncio.wait_for(_capture(page), CAPTURE_TIMEOUT_S)
        except (PlaywrightError, TimeoutError) as exc:
            log.debug("no thumbnail: %s", exc)
            return b""
        if self.bytes + len(image) > self.max_bytes:
            self.bytes = self.max_bytes  # the next one would not fit either, most likely: stop here
            return b""
        self.count += 1
        self.bytes += len(image)
        return image


async def _capture(page: Page) -> bytes:
    cdp = await page.context.new_cdp_session(page)
    try:
        # The clip is in page coordinates: start it where the page is scrolled to.
        view = (await cdp.send("Page.getLayoutMetrics"))["cssVisualViewport"]
        reply = await cdp.send("Page.captureScreenshot", {
            "format": "jpeg", "quality": THUMB_QUALITY,
            "clip": {"x": view["pageX"], "y": view["pageY"], "width": view["clientWidth"],
                     "height": view["clientHeight"], "scale": THUMB_WIDTH / max(view["clientWidth"], 1)},
        })
    finally:
        await cdp.detach()
    return base64.b64decode(reply["data"])
