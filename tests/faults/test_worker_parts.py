"""Parts of the worker on real Chromium and real sockets, without an engine.

These are the paths whose timing the engine tests cannot pin down: a popup that opens
despite the blocker (a script submitting a ``target=_blank`` form) is closed as soon as
it appears, a dialog fired by a timer between two actions is answered and noted,
reading a page whose navigation hangs returns within its deadline, an endpoint that
trickles its answer byte by byte is cut off at ``llm_timeout_s``, and a model that
never answers fails the task after ``MAX_SILENT_STEPS`` step timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext
from playwright.async_api import TimeoutError as PlaywrightTimeout

from blast_grpc.agent.loop import MAX_SILENT_STEPS, Agent, AgentFailed, StepReport
from blast_grpc.agent.observe import observe
from blast_grpc.config import Config, config_from_dict
from blast_grpc.demo_site.server import DemoSite
from blast_grpc.extraction import cleanup_blocks
from blast_grpc.extraction.blocks import create_block, release_block
from blast_grpc.llm import LLM, LLMUnavailable, UsageMeter
from blast_grpc.worker.contexts import IdleContexts
from blast_grpc.worker.egress import Egress
from blast_grpc.worker.navigation import UrlPolicy
from blast_grpc.worker.session import BrowserSession

from ..conftest import tcp_server
from .conftest import now, wait_for

pytestmark = [pytest.mark.browser]


@pytest.fixture(scope="module")
def browser(chromium: Browser) -> Browser:
    return chromium


async def _noop(*_: object) -> None:
    return None


def _egress() -> Egress:
    """The worker's egress proxies, with the demo site (on 127.0.0.1) allowed."""
    return Egress(UrlPolicy(None, allow_loopback=True, allow_link_local=False))


@pytest_asyncio.fixture
async def session(browser: Browser) -> AsyncIterator[BrowserSession]:
    """A task's session as the worker makes it: a fresh context (downloads off, popups blocked), guarded."""
    idle = IdleContexts(browser, warm=0, keep_alive_s=0, prepare=_noop, egress=_egress())
    registry: dict[str, BrowserContext] = {}
    s = BrowserSession(idle.new_context, "task_guard", registry, nav_timeout_s=3)
    await s.open()
    try:
        yield s
    finally:
        await s.close()
        await idle.egress.close()
        assert registry == {}


@pytest.mark.asyncio
async def test_a_window_the_page_opens_becomes_a_tab_until_the_tab_limit(session: BrowserSession,
                                                                         site: DemoSite) -> None:
    site.clear_access_log()
    session.max_tabs = 2
    page = session.page
    await page.goto(f"{site.url}_popup.html", wait_until="domcontentloaded")
    async with page.context.expect_page() as opened:
        await page.get_by_text("Send a form to a new window").click()
    tab = await opened.value
    await wait_for(now(lambda: session.page is tab), "the new tab to become current", timeout=30)
    assert session.tabs == [page, tab]
    notes = await wait_for(now(session.take_notes), "the new tab's note", timeout=30)
    assert notes == ["a new tab [1] was opened; it is now the current tab"]
    # A third tab is over the limit: it is closed, and the note says where it wanted to go.
    async with page.context.expect_page() as opened:
        await page.get_by_text("Send a form to a new window").click()
    third = await opened.value
    await wait_for(now(third.is_closed), "the guard to close the tab over the limit", timeout=30)
    notes = await wait_for(now(session.take_notes), "the closed tab's note", timeout=30)
    assert len(notes) == 1 and notes[0].startswith("the page opened a new tab at ") and "it was closed" in notes[0]
    assert session.tabs == [page, tab] and session.page is tab
    assert "/_popup_target.html?via=form" in site.access_log()  # it really opened


@pytest.mark.asyncio
async def test_a_dialog_fired_by_a_timer_between_actions_is_answered(session: BrowserSession, site: DemoSite) -> None:
    page = session.page
    await page.goto(f"{site.url}index.html", wait_until="domcontentloaded")
    await page.evaluate("setTimeout(() => { window.answer = confirm('Leave now?'); }, 50)")
    notes = await wait_for(now(session.take_notes), "the dialog's note", timeout=30)
    assert notes == ['the page opened a JavaScript confirm dialog saying "Leave now?"; it was dismissed (Cancel)']
    assert await page.evaluate("window.answer") is False  # the page was not left blocked


@pytest.mark.asyncio
async def test_reading_a_page_whose_navigation_hangs_returns_in_time(session: BrowserSession, site: DemoSite) -> None:
    page = session.page
    await page.goto(f"{site.url}index.html", wait_until="domcontentloaded")
    with pytest.raises(PlaywrightTimeout):
        await page.goto(f"{site.url}_slow?seconds=300", wait_until="domcontentloaded", timeout=1000)
    t0 = time.monotonic()
    obs = await observe(page, timeout_s=2)
    assert time.monotonic() - t0 < 30  # bounded (two reads of at most 2 s and a stop), not forever
    assert obs.url == f"{site.url}index.html" and obs.title == "Gorilla Records"
    assert obs.notes == ["the page did not respond within 2s; its loading was stopped"]


@pytest.mark.asyncio
async def test_detach_then_close_is_clean(browser: Browser) -> None:
    idle = IdleContexts(browser, warm=0, keep_alive_s=0, prepare=_noop, egress=_egress())
    registry: dict[str, BrowserContext] = {}
    s = BrowserSession(idle.new_context, "task_detach", registry, nav_timeout_s=3)
    await s.open()
    assert list(registry) == ["task_detach"]
    ctx = await s.detach()
    assert ctx is not None and registry == {}
    await s.close()  # nothing left to close: no error (it used to raise KeyError)
    await ctx.close()
    await idle.egress.close()
    assert idle.egress.open_count == 0


@contextlib.asynccontextmanager
async def http_server(answer: Callable[[asyncio.StreamWriter], Awaitable[None]]) -> AsyncIterator[str]:
    """A raw HTTP endpoint on 127.0.0.1 that reads a request and then runs ``answer``; yields its /v1 URL."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await answer(writer)

    async with tcp_server(serve) as port:
        yield f"http://127.0.0.1:{port}/v1"


async def trickle(writer: asyncio.StreamWriter) -> None:
    """Headers at once, then one byte of body every 0.2 s, forever: no read ever waits long."""
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
    while True:
        writer.write(b"1\r\n \r\n")
        await writer.drain()
        await asyncio.sleep(0.2)


async def silence(writer: asyncio.StreamWriter) -> None:
    """Never answer."""
    await asyncio.Event().wait()


def _config(base_url: str, **settings: object) -> Config:
    return config_from_dict({"settings": {"llm_endpoints": {"default": {"base_url": base_url}}, **settings}})


@pytest.mark.asyncio
async def test_an_endpoint_that_trickles_its_answer_is_cut_off() -> None:
    async with http_server(trickle) as url:
        llm = LLM(_config(url, llm_timeout_s=1, llm_max_retries=0))
        t0 = time.monotonic()
        try:
            with pytest.raises(LLMUnavailable) as failed:
                await llm.chat("gpt-4.1", [{"role": "user", "content": "hi"}], UsageMeter())
        finally:
            await llm.close()
    assert time.monotonic() - t0 < 30  # bounded by llm_timeout_s, although bytes kept coming
    assert str(failed.value) == ("model 'gpt-4.1' did not answer within settings.llm_timeout_s = 1s "
                                 "(tried once; settings.llm_max_retries = 0)")


@pytest.mark.asyncio
async def test_a_model_silent_for_several_steps_fails_the_task(session: BrowserSession) -> None:
    reports: list[StepReport] = []

    async def on_step(r: StepReport) -> None:
        reports.append(r)

    async with http_server(silence) as url:
        # The request limit is far away: only the step limit can end these waits.
        config = _config(url, llm_timeout_s=600, step_timeout_s=0.5, planner=False, max_steps=10)
        llm = LLM(config)
        agent = Agent(config, llm, UsageMeter(), on_step)
        t0 = time.monotonic()
        try:
            with pytest.raises(AgentFailed) as failed:
                await agent.run(session, "Say hello")
        finally:
            await llm.close()
    assert time.monotonic() - t0 < 30
    assert str(failed.value) == (f"the model did not answer within settings.step_timeout_s = 0.5s in "
                                 f"{MAX_SILENT_STEPS} steps in a row")
    assert [(r.number, r.action) for r in reports] == [(n, "(timed out)") for n in range(1, MAX_SILENT_STEPS + 1)]


def test_cleaning_up_after_a_dead_worker_spares_other_engines_blocks() -> None:
    """Every engine names its workers w1, w2, ...: a dead w1's cleanup must not unlink a live w1's blocks."""
    live = create_block("wfault", b"an extraction in flight elsewhere")
    try:
        assert cleanup_blocks("wfault", keep_live_owners=False, pid=os.getpid() + 1_000_000) == []
        assert Path(f"/dev/shm/{live.name}").exists()
        assert cleanup_blocks("wfault", keep_live_owners=False, pid=os.getpid()) == [live.name]
    finally:
        release_block(live)


def test_the_hazard_hooks_answer_as_documented(site: DemoSite) -> None:
    def get(path: str) -> httpx.Response:
        return httpx.get(site.url + path, follow_redirects=False, timeout=30)

    r = get("_redirect_loop?n=3")
    assert r.status_code == 302 and r.headers["location"] == "/_redirect_loop?n=4"
    r = get("_download?name=a.csv")
    assert r.status_code == 200 and r.headers["content-disposition"] == 'attachment; filename="a.csv"'
    assert get("_download?name=../etc").status_code == 400
    assert get("_dialog.html?kind=prompt&when=click").status_code == 200
    assert get("_dialog.html?kind=nope").status_code == 400 and get("_popup.html?when=never").status_code == 400
    assert "Opened via link." in get("_popup_target.html?via=link").text
