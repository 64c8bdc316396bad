"""One task's browser state in a worker: a context and its tabs, which can be parked.

A task has up to ``max_tabs`` tabs (pages of its context); one is current, and the
agent acts on it (``page``). A page the task opens in a new tab (a ``target=_blank``
link, ``window.open`` after a click) is adopted by the guard and becomes current;
``switch_tab`` and ``close_tab`` are the agent's tools for the rest. This session is
the one owner of the tab list.

While a task waits for its subtasks it parks: its cookies and storage and the
current tab's URL are kept (other tabs are closed), the context is closed (so it holds no browser slot and no
memory), and on resume a fresh context gets the state back and reopens the URL.
That is what lets a parent give its slot to the subtasks it waits for.

While the session holds a context, a ``PageGuard`` answers the page's dialogs,
closes popup windows, refuses downloads and explains refused navigations (from the
context's ``Refusals``); ``take_notes`` says what it did.
"""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator, Awaitable, Callable

from playwright.async_api import BrowserContext, Page

from .guard import PageGuard
from .navigation import Refusals


class BrowserSession:
    def __init__(self, make_context: Callable[[Any], Awaitable[BrowserContext]], task_id: str,
                 registry: dict[str, BrowserContext], nav_timeout_s: float,
                 refusals: Callable[[BrowserContext], Refusals | None] = lambda ctx: None, max_tabs: int = 8) -> None:
        self._make_context = make_context  # storage_state (or None) -> a new context with one page
        self._refusals = refusals  # a context -> what the URL policy refused in it
        self.task_id = task_id
        self._registry = registry  # the worker's open contexts, by task id (what GetStatus reports)
        self._nav_timeout_s = nav_timeout_s
        self._context: BrowserContext | None = None
        self._page: Page | None = None  # the current tab
        self._tabs: list[Page] = []
        self.max_tabs = max_tabs
        self._guard: PageGuard | None = None
        self._notes: list[str] = []  # notes of a guard already stopped (parking), not yet taken
        self._state: Any = None
        self._url = ""

    @property
    def has_page(self) -> bool:
        """Whether the task has an open page now (not parked or closed)."""
        return self._page is not None

    @property
    def page(self) -> Page:
        if self._page is None:
            raise RuntimeError(f"task {self.task_id} has no open page (parked or closed)")
        return self._page

    @property
    def tabs(self) -> list[Page]:
        """The task's open tabs, oldest first (closed ones are dropped as they are noticed)."""
        self._tabs = [t for t in self._tabs if not t.is_closed()]
        return list(self._tabs)

    def adopt(self, page: Page) -> int | None:
        """Take a page the task opened as a new current tab; its index, or None when at ``max_tabs``."""
        if len(self.tabs) >= self.max_tabs:
            return None
        self._tabs.append(page)
        self._page = page
        return len(self._tabs) - 1

    def switch_tab(self, index: int) -> Page:
        tabs = self.tabs
        if not 0 <= index < len(tabs):
            raise IndexError(f"there is no tab [{index}]; open tabs: 0..{len(tabs) - 1}")
        self._page = tabs[index]
        return self._page

    async def close_tab(self, index: int) -> Page:
        """Close tab ``index`` (not the last one); the current tab becomes the one before it if it was closed."""
        tabs = self.tabs
        if not 0 <= index < len(tabs):
            raise IndexError(f"there is no tab [{index}]; open tabs: 0..{len(tabs) - 1}")
        if len(tabs) == 1:
            raise IndexError("the last tab cannot be closed")
        closing = tabs[index]
        self._tabs.remove(closing)
        if closing is self._page:
            self._page = self._tabs[max(index - 1, 0)]
        await closing.close()
        return self.page

    async def open(self, context: BrowserContext | None = None) -> None:
        """Use ``context`` (a warm or kept one) or create a new one, with the saved state if parked."""
        if context is None:
            context = await self._make_context(self._state)
        self._context = context
        self._registry[self.task_id] = context
        self._page = context.pages[0] if context.pages else await context.new_page()
        self._tabs = [self._page]
        for extra in context.pages[1:]:  # a kept context may still hold tabs of an earlier task
            with contextlib.suppress(Exception):
                await extra.close()
        self._guard = PageGuard(context, lambda: self._page, self._nav_timeout_s, self._refusals(context), self.adopt)

    def take_notes(self) -> list[str]:
        """What the guard did since the last call (dialogs answered, popups closed, downloads refused)."""
        notes, self._notes = self._notes, []
        if self._guard is not None:
            notes += self._guard.take_notes()
        return notes

    async def _unguard(self) -> None:
        guard, self._guard = self._guard, None
        if guard is not None:
            await guard.close()
            self._notes += guard.take_notes()

    def _release(self) -> BrowserContext | None:
        ctx, self._context, self._page, self._tabs = self._context, None, None, []
        if ctx is not None and self._registry.get(self.task_id) is ctx:
            del self._registry[self.task_id]
        return ctx

    async def close(self) -> None:
        await self._unguard()
        ctx = self._release()
        if ctx is not None:
            with contextlib.suppress(Exception):  # the browser may be gone already
                await ctx.close()

    async def detach(self) -> BrowserContext | None:
        """Hand the open context over (to be kept for a follow-up task) without closing it."""
        await self._unguard()
        return self._release()

    @contextlib.asynccontextmanager
    async def parked(self) -> AsyncIterator[None]:
        """Close the context for the duration of the block, then restore it."""
        if self._context is None:
            yield
            return
        self._url = self.page.url
        self._state = await self._context.storage_state()
        await self.close()
        try:
            yield
        finally:
            await self.open()
            if self._url and self._url != "about:blank":
                with contextlib.suppress(Exception):  # the agent sees whatever page it gets
                    await self.page.goto(self._url, timeout=self._nav_timeout_s * 1000, wait_until="domcontentloaded")
