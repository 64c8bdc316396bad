"""A worker's idle browser contexts: warm ones ready for new tasks, kept ones for follow-ups.

::

    new task ──take()──▶ a warm context (or a new one)      refill() keeps `warm_contexts` ready
    follow-up ─take(prev)─▶ the previous task's kept context, if still kept
    task ends ──keep(task_id, ctx)──▶ kept for `context_keep_alive_s`, then closed

A warm context is fresh (no cookies, no storage) and is used by one task only;
nothing passes from one task to another except through ``keep``/``take(prev)``,
which is the conversation continuing. ``trim()`` closes every idle context (the
coordinator asks for it under memory pressure).

Every context is created with its own egress proxy (``egress.Egress``), which judges
each connection the context's pages make; the proxy closes with its context.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Awaitable, Callable

from playwright.async_api import Browser, BrowserContext

from ..agent.popups import BLOCK_POPUPS_SCRIPT
from .egress import Egress
from .navigation import Refusals

log = logging.getLogger("blast_grpc.worker")

Prepare = Callable[[BrowserContext, Refusals], Awaitable[None]]


class IdleContexts:
    def __init__(self, browser: Browser, warm: int, keep_alive_s: float, prepare: Prepare, egress: Egress) -> None:
        self._browser = browser
        self.egress = egress
        self._warm_target = warm
        self._keep_alive_s = keep_alive_s
        self._prepare = prepare  # installs the navigation policy on every context we create
        self._warm: list[BrowserContext] = []
        self._kept: dict[str, tuple[BrowserContext, float]] = {}
        self._refill: asyncio.Task[None] | None = None
        self._janitor: asyncio.Task[None] | None = None
        self._closed = False

    async def new_context(self, storage_state: Any = None) -> BrowserContext:
        """A fresh context (optionally with saved cookies and storage) with one page open.

        Downloads are refused (``accept_downloads=False``): a task never writes files on the worker;
        popup windows are blocked in every page (``BLOCK_POPUPS_SCRIPT``); every connection goes
        through the context's own egress proxy (no bypass list: loopback too).
        """
        proxy, server = await self.egress.open()
        try:
            ctx = await self._browser.new_context(storage_state=storage_state, accept_downloads=False,
                                                  proxy={"server": server})
        except BaseException:
            await proxy.close()
            raise
        self.egress.attach(ctx, proxy)  # from here the proxy closes with the context
        try:
            await ctx.add_init_script(BLOCK_POPUPS_SCRIPT)
            await self._prepare(ctx, proxy.refusals)
            await ctx.new_page()
        except BaseException:
            await _close(ctx)
            raise
        return ctx

    def refusals(self, ctx: BrowserContext) -> Refusals | None:
        """What the policy refused in ``ctx`` (its egress proxy and route handler record it)."""
        return self.egress.refusals(ctx)

    def start(self) -> None:
        self._janitor = asyncio.create_task(self._expire_loop(), name="kept-context-janitor")
        self.refill()

    def refill(self) -> None:
        """Top the warm contexts up in the background (one refill at a time)."""
        if self._closed or self._warm_target == 0 or (self._refill is not None and not self._refill.done()):
            return
        self._refill = asyncio.create_task(self._fill(), name="warm-contexts")

    async def _fill(self) -> None:
        while not self._closed and len(self._warm) < self._warm_target:
            try:
                self._warm.append(await self.new_context())
            except Exception as exc:  # the browser is going away; the worker exits on its own
                log.warning("could not create a warm context: %s", exc)
                return

    async def take(self, previous_task_id: str = "") -> tuple[BrowserContext, bool]:
        """A context for a task: the previous task's kept one (reused=True), a warm one, or a new one."""
        kept = self._kept.pop(previous_task_id, None) if previous_task_id else None
        if kept is not None:
            return kept[0], True
        if self._warm:
            ctx = self._warm.pop(0)
            self.refill()
            return ctx, False
        self.refill()
        return await self.new_context(), False

    async def keep(self, task_id: str, ctx: BrowserContext) -> None:
        """Keep a finished task's context for a follow-up (or close it when keeping is off)."""
        if self._closed or self._keep_alive_s <= 0:
            await _close(ctx)
            return
        self._kept[task_id] = (ctx, time.monotonic() + self._keep_alive_s)

    @property
    def warm_count(self) -> int:
        return len(self._warm)

    @property
    def kept_ids(self) -> list[str]:
        return sorted(self._kept)

    async def trim(self) -> int:
        """Close every idle context (warm and kept); returns how many were closed."""
        idle = self._warm + [c for c, _ in self._kept.values()]
        self._warm, self._kept = [], {}
        await asyncio.gather(*(_close(c) for c in idle))
        return len(idle)

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            expired = [tid for tid, (_, until) in self._kept.items() if until <= now]
            for tid in expired:
                ctx, _ = self._kept.pop(tid)
                await _close(ctx)

    async def close(self) -> None:
        self._closed = True
        for t in (self._refill, self._janitor):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        await self.trim()


async def _close(ctx: BrowserContext) -> None:
    with contextlib.suppress(Exception):
        await ctx.close()
