"""constraints.allow_vision: each observation carries a JPEG with the element numbers drawn on it.

The agent runs in-process against the shared simulated model, whose ``vision-check``
scenario answers from whether an image part arrived with the observation.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest

from blast_grpc.agent.loop import Agent, StepReport
from blast_grpc.agent.observe import observe
from blast_grpc.agent.secrets import Secrets, placeholder
from blast_grpc.agent.tools import Action
from blast_grpc.agent.tools import PageActions as Tools
from blast_grpc.config import config_from_dict
from blast_grpc.llm import LLM, UsageMeter
from blast_grpc.worker.session import BrowserSession

from ..conftest import Sim
from .agent_pages import PageServer

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's start-of-frame marker."""
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    i = 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        i += 2 + length
    raise AssertionError("no frame header in the JPEG")


async def test_the_screenshot_is_a_bounded_jpeg_and_the_overlay_is_removed(tab_session: BrowserSession,
                                                                           pages: PageServer) -> None:
    page = tab_session.page
    await page.goto(f"{pages.url}/form.html", wait_until="load")
    obs = await observe(page, 10, vision=True)
    assert obs.screenshot is not None
    width, height = jpeg_size(obs.screenshot)
    assert width <= 1280 and height <= 720 and len(obs.screenshot) < 300_000
    assert obs.image_url() is not None and obs.image_url().startswith("data:image/jpeg;base64,")  # type: ignore[union-attr]
    assert await page.evaluate("document.getElementById('__blast_overlay')") is None  # drawn only for the shot
    assert (await observe(page, 10)).screenshot is None


@pytest.mark.parametrize("vision", [True, False])
async def test_the_model_gets_an_image_only_with_allow_vision(sim: Sim, tab_session: BrowserSession,
                                                              pages: PageServer, vision: bool) -> None:
    config = config_from_dict({
        "settings": {"llm_endpoints": {"default": {"base_url": sim.base_url}}, "planner": False,
                     "allow_loopback": True, "max_steps": 4},
        "constraints": {"allow_vision": vision},
    })
    steps: list[StepReport] = []

    async def on_step(r: StepReport) -> None:
        steps.append(r)

    before: Any = sim.stats()["observation_images"]
    llm = LLM(config)
    try:
        outcome = await Agent(config, llm, UsageMeter(), on_step).run(
            tab_session, f"Say whether you can see {pages.url}/form.html")
    finally:
        await llm.close()
    images = sim.stats()["observation_images"] - before
    if vision:
        assert outcome.text == "I see a screenshot of Form" and images == 2  # one per observation sent
    else:
        assert outcome.text == "I have no screenshot" and images == 0
    assert outcome.success and len(steps) == 2


async def test_no_screenshot_when_a_secret_is_on_the_page_or_was_typed_into_it(sim: Sim, tab_session: BrowserSession,
                                                                               pages: PageServer) -> None:
    config = config_from_dict({
        "settings": {"llm_endpoints": {"default": {"base_url": sim.base_url}}, "planner": False,
                     "allow_loopback": True},
        "constraints": {"allow_vision": True},
    })
    secrets = Secrets({"pw": "hunter2-Zq"})
    llm = LLM(config)
    agent = Agent(config, llm, UsageMeter(), _ignore, secrets=secrets)
    tools = Tools(tab_session, 5.0, secrets=secrets)
    page = tab_session.page
    why = "no screenshot with this observation"
    try:
        await page.goto(f"{pages.url}/form.html", wait_until="load")
        obs = await agent._observe(tab_session, typed_secret=tools.typed_secret_here())
        assert obs.screenshot is not None and not any(why in n for n in obs.notes)  # nothing secret here
        # Typed into a password field: the page shows only dots, the picture might not.
        tools.seen = obs
        index = next(i for i, e in obs.elements.items() if e.name == "Secret")
        got = await tools.execute(Action("type", {"index": index, "text": placeholder("pw")}, "t"))
        assert got.startswith(f"Typed into [{index}]"), got
        assert tools.typed_secret_here()
        obs = await agent._observe(tab_session, typed_secret=tools.typed_secret_here())
        assert obs.screenshot is None
        assert any("a secret was typed into this page" in n for n in obs.notes), obs.notes
        # A new document is a new page: the secret is no longer in it.
        await page.goto(f"{pages.url}/next.html", wait_until="load")
        assert not tools.typed_secret_here()
        assert (await agent._observe(tab_session, typed_secret=tools.typed_secret_here())).screenshot is not None
        # A page that shows the value (it echoes it): the text is redacted, the picture is withheld.
        await page.evaluate("document.body.insertAdjacentHTML('beforeend', '<p>your password: hunter2-Zq</p>')")
        obs = await agent._observe(tab_session, typed_secret=tools.typed_secret_here())
        assert f"your password: {placeholder('pw')}" in obs.page
        assert obs.screenshot is None
        assert any("a secret value is shown on this page" in n for n in obs.notes), obs.notes
    finally:
        await llm.close()


async def _ignore(*_: object) -> None:
    pass
