"""What a page may do on its own, handled for the agent: dialogs, popup windows, downloads.

A ``PageGuard`` watches one task's browser context while the task holds it:

* **dialogs** (alert, confirm, prompt, beforeunload; also one fired while a page
  loads) are answered at once so the page never blocks: an alert is accepted (its
  only button), a beforeunload is accepted (the navigation the agent asked for goes
  on), a confirm or prompt is dismissed (Cancel: nothing the model did not ask for
  is confirmed);
* **new tabs**: a page opened by the task (a ``target=_blank`` link, ``window.open``
  in answer to a click) is handed to ``adopt`` (the session) and becomes the current
  tab; one beyond the session's tab limit is closed, with a note giving its address.
  Windows a page opens on its own (no click: e.g. while loading) are not opened in the
  first place (``popups.py``);
* **downloads** are refused (contexts are created with ``accept_downloads=False``,
  so nothing is written to disk) and reported;
* **refused navigations**: when a navigation request of any frame fails (a redirect
  hop, a page's own JavaScript navigation or meta refresh, a go_to_url), it is
  matched to what the URL policy refused in this context (``navigation.Refusals``,
  written by the route handler and the egress proxy), and the note says
  "refused to open URL: reason" instead of leaving the model a bare
  ``net::ERR_...`` or a ``chrome-error://`` page.

Each of these becomes a note (a popup once it is closed); ``take_notes`` hands them
to the agent, which appends them to the tool result of the action during which they
happened (or shows them in the next observation). Handlers run as tasks owned here;
``close`` waits for them (bounded) and cancels what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Callable, Coroutine

from playwright.async_api import BrowserContext, Dialog, Download, Page, Request

from ..agent.tools import refusal_note, unreachable_note
from ..popups import popup_note
from .navigation import Refusals

log = logging.getLogger("blast_grpc.worker")

MAX_MESSAGE_CHARS = 200
_ANSWER = {"alert": "accepted (OK)", "beforeunload": "accepted (the page was left)"}


class PageGuard:
    """Watches ``context`` for one task; ``main()`` is the task's page (the only one kept open)."""

    def __init__(self, context: BrowserContext, main: Callable[[], Page | None], timeout_s: float,
                 refusals: Refusals | None = None,
                 adopt: Callable[[Page], int | None] = lambda page: None) -> None:
        self._context = context
        self._refusals = refusals
        self._main = main
        self._timeout_s = timeout_s
        self._notes: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._watched: Page | None = None
        self._adopt = adopt
        self._tabs: list[Page] = []  # adopted tabs whose downloads are watched too
        context.on("dialog", self._on_dialog)
        context.on("page", self._on_page)
        context.on("requestfailed", self._on_request_failed)
        self.watch(main())

    def watch(self, page: Page | None) -> None:
        """Follow downloads of the task's page (call again when the page is replaced)."""
        if self._watched is not None:
            self._watched.remove_listener("download", self._on_download)
        self._watched = page
        if page is not None:
            page.on("download", self._on_download)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_dialog(self, dialog: Dialog) -> None:
        kind, message = dialog.type, dialog.message[:MAX_MESSAGE_CHARS]
        answer = _ANSWER.get(kind, "dismissed (Cancel)")
        said = f' saying "{message}"' if message else ""
        self._notes.append(f"the page opened a JavaScript {kind} dialog{said}; it was {answer}")
        self._spawn(self._answer(dialog, kind in _ANSWER), f"dialog-{kind}")

    async def _answer(self, dialog: Dialog, accept: bool) -> None:
        with contextlib.suppress(Exception):  # the page may be gone already
            async with asyncio.timeout(self._timeout_s):
                await (dialog.accept() if accept else dialog.dismiss())

    def _on_request_failed(self, request: Request) -> None:
        if self._refusals is None or not request.is_navigation_request():
            return  # a refused image or fetch is just missing from the page, as any failed one is
        refusal = self._refusals.match(request.url)
        if refusal is None:
            return
        came = request.redirected_from
        via = f" (redirected from {came.url})" if came is not None else ""
        note = (refusal_note(request.url + via, refusal.reason) if refusal.refused
                else unreachable_note(request.url + via, refusal.reason))
        if note not in self._notes:
            self._notes.append(note)

    def _on_page(self, page: Page) -> None:
        if page is self._main():
            return
        index = self._adopt(page)
        if index is None:
            self._spawn(self._close(page), "close-popup")
            return
        page.on("download", self._on_download)
        self._tabs.append(page)
        self._notes.append(f"a new tab [{index}] was opened; it is now the current tab")

    async def _close(self, page: Page) -> None:
        url = page.url
        try:
            async with asyncio.timeout(self._timeout_s):
                await page.close()
        except Exception as exc:  # the context may be closing too
            log.debug("could not close a popup: %s", exc)
        # Noted once closed, so whoever reads the note sees the context without the popup.
        self._notes.append(popup_note(url, closed=True))  # the tab limit was reached

    def _on_download(self, download: Download) -> None:
        self._notes.append(f'the page started a download of "{download.suggested_filename}" from {download.url}; '
                           "downloads are refused, nothing was saved")
        self._spawn(self._cancel(download), "refuse-download")

    async def _cancel(self, download: Download) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._timeout_s):
                await download.cancel()

    def take_notes(self) -> list[str]:
        """The notes so far (cleared). A popup is noted once it is closed."""
        notes, self._notes = self._notes, []
        return notes

    async def close(self) -> None:
        """Stop watching; finish closing popups (bounded), cancel what is still being handled."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self._timeout_s)
        for event, handler in (("dialog", self._on_dialog), ("page", self._on_page),
                               ("requestfailed", self._on_request_failed)):
            with contextlib.suppress(Exception):
                self._context.remove_listener(event, handler)
        self.watch(None)
        for tab in self._tabs:
            with contextlib.suppress(Exception):
                tab.remove_listener("download", self._on_download)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
