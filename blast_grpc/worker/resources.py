"""What a task's pages do not load (``settings.blocked_resource_types``: media and fonts by default,
images when asked), unless the model sees the page.

A text observation (``agent/observe.py``) reads the DOM: an ``<img>``'s alt text, a
video's controls and a label's text are all there without the bytes behind them.
Fetching and decoding those bytes is most of what Chromium spends on a typical page
(decode threads, raster, font shaping), so every context refuses them
(``settings.blocked_resource_types``) by their resource type, in the route handler every
context already has for the URL policy (``navigation.install``): the check costs
nothing extra. With ``constraints.allow_vision`` the model gets a screenshot, which must
show the page as a person sees it, so nothing is blocked.

A blocked request fails as ``net::ERR_BLOCKED_BY_CLIENT``; it is not a refusal of the URL
policy, so no note tells the model about it (as for any other failed image).

Images are not blocked by default: an image whose size the page does not set (CSS
``content:url(...)`` icons, ``<img>`` without width/height) collapses to nothing when its bytes
never come, and a clickable icon then disappears from the observation (MiniWoB++'s
email-inbox trash and star icons did).
"""

from __future__ import annotations

from ..config import Config


def blocked_resource_types(config: Config) -> frozenset[str]:
    """The Playwright resource types the worker's contexts abort (empty with vision on)."""
    if config.constraints.allow_vision:
        return frozenset()
    return frozenset(config.settings.blocked_resource_types)
