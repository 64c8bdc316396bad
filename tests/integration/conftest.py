"""Fixtures for tests that drive one real Chromium directly (observation and tools, no engine)."""

from __future__ import annotations

from typing import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext

from blast_grpc.agent.observe import Observation, observe
from blast_grpc.agent.tools import Action
from blast_grpc.agent.tools import PageActions as Tools
from blast_grpc.worker.contexts import IdleContexts
from blast_grpc.worker.egress import Egress
from blast_grpc.worker.navigation import UrlPolicy
from blast_grpc.worker.session import BrowserSession

from .agent_pages import PageServer

NO_HANG_S = 30  # generous: a bound that says "did not wait for the action timeout over and over", not a speed


@pytest.fixture(scope="module")
def pages() -> Iterator[PageServer]:
    with PageServer() as server:
        yield server


async def _noop(*_: object) -> None:
    return None


@pytest_asyncio.fixture
async def tab_session(chromium: Browser) -> AsyncIterator[BrowserSession]:
    """A task's session as the worker makes it (init scripts, guard, tabs), in a fresh context."""
    # The worker's egress proxies, with the loopback test pages allowed.
    egress = Egress(UrlPolicy(None, allow_loopback=True, allow_link_local=False))
    idle = IdleContexts(chromium, warm=0, keep_alive_s=0, prepare=_noop, egress=egress)
    registry: dict[str, BrowserContext] = {}
    s = BrowserSession(idle.new_context, "task_tools", registry, nav_timeout_s=5, refusals=idle.refusals)
    await s.open()
    try:
        yield s
    finally:
        await s.close()
        await idle.close()
        await egress.close()


class Driver:
    """Observe, then act by element name, as the agent loop does (``tools.seen`` is the last observation)."""

    def __init__(self, session: BrowserSession, base: str, upload_dir: str | None = None) -> None:
        self.session = session
        self.base = base
        self.tools = Tools(session, 5.0, upload_dir=upload_dir)
        self.obs: Observation | None = None

    async def open(self, path: str) -> Observation:
        await self.session.page.goto(self.base + path, wait_until="load")
        return await self.observe()

    async def observe(self, **kw: object) -> Observation:
        self.obs = await observe(self.session.page, 10, tabs=self.session.tabs, **kw)  # type: ignore[arg-type]
        self.tools.seen = self.obs
        return self.obs

    def index(self, name: str, tag: str | None = None) -> int:
        assert self.obs is not None
        found = [i for i, e in self.obs.elements.items() if e.name == name and (tag is None or e.tag == tag)]
        assert len(found) == 1, (name, self.obs.render(1, 1, 100000))
        return found[0]

    def line(self, name: str, tag: str | None = None) -> str:
        assert self.obs is not None
        line = self.obs.element_line(self.index(name, tag))
        assert line is not None
        return line

    async def do(self, tool: str, **args: object) -> str:
        return await self.tools.execute(Action(tool, dict(args), "t"))


@pytest_asyncio.fixture
async def driver(tab_session: BrowserSession, pages: PageServer) -> Driver:
    return Driver(tab_session, pages.url)
