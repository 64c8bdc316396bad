"""A worker's idle browser contexts: warm ones ready for new tasks, kept ones for follow-ups.

::

    new task ──take()──▶ a warm context (or a new one)      refill() keeps `warm_contexts` ready
    expect(n) ──▶ n more kept ready until n tasks took one  (announced subtasks, coordinator/prewarm.py)
    a burst of k tasks ──▶ up to k kept ready for a minute  (demand, ≤ warm_contexts_max; then trimmed)
    follow-up ─take(prev)─▶ the previous task's kept context, if still kept
    task ends ──keep(task_id, ctx)──▶ kept for `context_keep_alive_s`, then closed;
                                      at most `max_kept_contexts`: keeping one more closes
                                      the least recently kept

A warm context is fresh (no cookies, no storage) and is used by one task only;
nothing passes from one task to another except through ``keep``/``take(prev)``,
which is the conversation continuing. ``trim()`` closes every idle context (the
coordinator asks for it under memory pressure).

Every context is created with its own egress proxy (``egress.Egress``), which judges
each connection the context's pages make; the proxy closes with its context.

Every context this object creates ends closed, whoever gave up on it: a context
whose creation was cancelled half-way is closed once it exists, and the clean-up of a
finished task (``adopt``) runs as a task owned here, not in the gRPC handler, which
the coordinator cancels when it ends the stream. ``close()`` waits for those clean-ups.

The kept-context janitor and the warm refill run for the life of the worker and belong
to the worker's ``TaskSet`` (``supervise.py``): if one raises, its traceback is logged
and the worker exits with ``EXIT_LOOP_CRASHED`` rather than keep contexts forever or
stop refilling unnoticed. A clean-up belongs to one task, so one that fails is logged
with its traceback and the worker carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from typing import Any, Awaitable, Callable, Coroutine

from playwright.async_api import Browser, BrowserContext

from ..agent.dom_script import LISTENERS_SCRIPT
from ..popups import BLOCK_POPUPS_SCRIPT
from ..supervise import TaskSet, fault_point
from .egress import Egress
from .navigation import Refusals

log = logging.getLogger("blast_grpc.worker")

MAX_EXPECTED = 32  # contexts one worker makes ahead for announced tasks, at most
EXPECT_S = 30.0  # an announcement older than this is forgotten (its tasks went elsewhere or never came)
# Demand: tasks that arrive together (a first-of-N race's copies, a burst of submissions) count as
# one burst if they come within BURST_S; the warm pool is kept at the largest burst of the last
# DEMAND_S (at most ``warm_max``), so the next such burst starts from warm contexts too. Once the
# demand (or an announcement) has passed, the janitor closes the warm contexts beyond the target.
BURST_S = 0.5
DEMAND_S = 60.0

Prepare = Callable[[BrowserContext, Refusals], Awaitable[None]]


class IdleContexts:
    def __init__(self, browser: Browser, warm: int, keep_alive_s: float, prepare: Prepare, egress: Egress,
                 max_kept: int = 64, tasks: TaskSet | None = None, warm_max: int = 0) -> None:
        self._browser = browser
        self.tasks = tasks if tasks is not None else TaskSet()  # owns the janitor and the refill
        self.egress = egress
        self._warm_target = warm
        self._warm_max = warm_max  # the demand-sized pool's ceiling (<= warm: not sized from demand)
        # Tasks announced to arrive soon (``expect``): kept ready on top of ``warm`` until they
        # have taken their contexts or EXPECT_S has passed.
        self._expected = 0
        self._expected_until = 0.0
        self._takes: deque[float] = deque()  # when recent tasks took a context (within BURST_S)
        self._peak = (0, 0.0)  # the largest recent burst and when it was seen
        self._keep_alive_s = keep_alive_s
        self._max_kept = max_kept
        self._prepare = prepare  # installs the navigation policy on every context we create
        self._warm: list[BrowserContext] = []
        # Kept contexts by task id, least recently kept first (the first evicted), with their expiry.
        self._kept: OrderedDict[str, tuple[BrowserContext, float]] = OrderedDict()
        self._refill: asyncio.Task[None] | None = None
        self._janitor: asyncio.Task[None] | None = None
        self._cleanups: set[asyncio.Task[None]] = set()  # adopted clean-ups and late closes, see adopt()
        self._closed = False

    async def new_context(self, storage_state: Any = None) -> BrowserContext:
        """A fresh context (optionally with saved cookies and storage) with one page open.

        Downloads are refused (``accept_downloads=False``): a task never writes files on the worker;
        popup windows are blocked in every page (``BLOCK_POPUPS_SCRIPT``); every connection goes
        through the context's own egress proxy (no bypass list: loopback too). If the caller is
        cancelled meanwhile, the context is still made (Chromium does not know the caller left) and
        then closed, instead of living on unowned.
        """
        making = asyncio.ensure_future(self._make(storage_state))
        try:
            return await asyncio.shield(making)
        except asyncio.CancelledError:
            self.adopt(_close_when_made(making), "close-abandoned-context")
            raise

    async def _make(self, storage_state: Any) -> BrowserContext:
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
            await ctx.add_init_script(LISTENERS_SCRIPT)  # which elements have click/key handlers (observe)
            await self._prepare(ctx, proxy.refusals)
            await ctx.new_page()
        except BaseException:
            await _close(ctx)
            raise
        return ctx

    def adopt(self, cleanup: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``cleanup`` (closing or keeping a context) to its end as a task owned here.

        A gRPC handler's ``finally`` is no place to await that: the coordinator cancels the
        handler when it ends the stream, and an interrupted clean-up leaves a context (and its
        renderer process) neither kept nor closed. ``close()`` waits for adopted clean-ups.
        """
        task = asyncio.create_task(cleanup, name=name)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanup_done)

    def _cleanup_done(self, task: asyncio.Task[None]) -> None:
        self._cleanups.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("context clean-up %s failed", task.get_name(), exc_info=task.exception())

    def refusals(self, ctx: BrowserContext) -> Refusals | None:
        """What the policy refused in ``ctx`` (its egress proxy and route handler record it)."""
        return self.egress.refusals(ctx)

    def expect(self, count: int) -> int:
        """``count`` more tasks are about to arrive here (announced subtasks, ``coordinator/prewarm.py``):
        make their contexts now; returns how many warm contexts are ready at this moment.

        Contexts of an announcement whose tasks never came are closed by the janitor once it
        is EXPECT_S old (until then the next tasks take them; ``trim`` closes them under memory
        pressure).
        """
        self._expected = min(self._pending_expected() + max(count, 0), MAX_EXPECTED)
        self._expected_until = time.monotonic() + EXPECT_S
        self.refill()
        return len(self._warm)

    def _pending_expected(self) -> int:
        if self._expected and time.monotonic() > self._expected_until:
            self._expected = 0
        return self._expected

    def _demand(self) -> int:
        """The largest burst of takes in the last DEMAND_S (0 with no warm pool configured)."""
        peak, seen = self._peak
        if self._warm_target == 0 or time.monotonic() - seen > DEMAND_S:
            return 0
        return min(peak, self._warm_max)

    def _took(self) -> None:
        now = time.monotonic()
        self._takes.append(now)
        while self._takes and self._takes[0] < now - BURST_S:
            self._takes.popleft()
        if len(self._takes) >= self._peak[0] or now - self._peak[1] > DEMAND_S:
            self._peak = (len(self._takes), now)

    def _target(self) -> int:
        return max(self._warm_target, self._demand()) + self._pending_expected()

    def start(self) -> None:
        self._janitor = self.tasks.spawn(self._expire_loop(), name="kept-context-janitor")
        self.refill()

    def refill(self) -> None:
        """Top the warm contexts up in the background (one refill at a time)."""
        if self._closed or self._target() == 0 or (self._refill is not None and not self._refill.done()):
            return
        self._refill = self.tasks.spawn(self._fill(), name="warm-contexts")

    async def _fill(self) -> None:
        while not self._closed and len(self._warm) < self._target():
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
        if self._pending_expected():
            self._expected -= 1  # one announced task has arrived
        self._took()
        if self._warm:
            ctx = self._warm.pop(0)
            self.refill()
            return ctx, False
        self.refill()
        return await self.new_context(), False

    async def keep(self, task_id: str, ctx: BrowserContext) -> None:
        """Keep a finished task's context for a follow-up (or close it when keeping is off).

        Past ``max_kept`` the least recently kept context is closed: follow-ups to old tasks
        start fresh (with the conversation's history) rather than the worker growing without bound.
        """
        if self._closed or self._keep_alive_s <= 0 or self._max_kept <= 0:
            await _close(ctx)
            return
        self._kept[task_id] = (ctx, time.monotonic() + self._keep_alive_s)
        self._kept.move_to_end(task_id)
        evicted = []
        while len(self._kept) > self._max_kept:
            _, (old, _) = self._kept.popitem(last=False)
            evicted.append(old)
        await asyncio.gather(*(_close(c) for c in evicted))

    @property
    def warm_count(self) -> int:
        return len(self._warm)

    @property
    def kept_count(self) -> int:
        return len(self._kept)

    @property
    def kept_ids(self) -> list[str]:
        return sorted(self._kept)

    async def trim(self) -> int:
        """Close every idle context (warm and kept); returns how many were closed."""
        idle = self._warm + [c for c, _ in self._kept.values()]
        self._warm = []
        self._kept.clear()
        await asyncio.gather(*(_close(c) for c in idle))
        return len(idle)

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            fault_point("kept-context-janitor")
            now = time.monotonic()
            expired = [tid for tid, (_, until) in self._kept.items() if until <= now]
            for tid in expired:
                ctx, _ = self._kept.pop(tid)
                await _close(ctx)
            while len(self._warm) > self._target():  # a burst or announcement has passed
                await _close(self._warm.pop())

    async def close(self, cleanup_timeout_s: float = 10.0) -> None:
        """Stop refilling and expiring, let adopted clean-ups finish, close every idle context."""
        self._closed = True
        for t in (self._refill, self._janitor):
            if t is not None:
                t.cancel()
                # Its crash, if any, was reported to the TaskSet when it happened.
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        if self._cleanups:
            _, late = await asyncio.wait(set(self._cleanups), timeout=cleanup_timeout_s)
            for t in late:  # the browser is stuck; closing it ends these contexts anyway
                t.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self.trim()


async def _close(ctx: BrowserContext) -> None:
    with contextlib.suppress(Exception):  # the browser may be gone already
        await ctx.close()


async def _close_when_made(making: asyncio.Future[BrowserContext]) -> None:
    with contextlib.suppress(Exception):
        await _close(await making)
