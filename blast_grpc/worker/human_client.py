"""The worker's side of ``TaskBroker.AskHuman``: the ``Human`` a task's agent asks (``agent/human.py``).

The task parks while it waits, as a parent waiting for its subtasks does: its context is
closed (cookies, storage and the current URL kept) and the coordinator gives its browser
slot to others, answering only once the task has a slot again. A screenshot of the page
goes with the question, so that a person can see what the task saw (``GetTaskScreenshot``).

A screenshot cannot be redacted, so with secrets (``settings.secrets_file_path``) none is
taken of a page that shows a secret value or had one typed into it (``ScreenshotWithheld``),
as the model's own screenshots are withheld (``agent/loop.py``).
"""

from __future__ import annotations

import logging
from typing import Callable

import grpc
from playwright.async_api import Error as PlaywrightError

from .._proto.blast.worker.v1 import worker_pb2 as wpb
from .._proto.blast.worker.v1 import worker_pb2_grpc as wgrpc
from ..agent.human import HumanUnavailable
from ..agent.observe import page_text
from ..agent.secrets import Secrets
from .session import BrowserSession

log = logging.getLogger("blast_grpc.worker.human")
JPEG_QUALITY = 70


class ScreenshotWithheld(Exception):
    """The page shows a secret (or had one typed into it): no screenshot of it leaves the worker."""


async def screenshot(session: BrowserSession, timeout_s: float, secrets: Secrets,
                     typed_secret: Callable[[], bool]) -> tuple[bytes, str]:
    """A JPEG of the task's current page and its (redacted) URL; RuntimeError when it has no page."""
    page = session.page
    if secrets:
        if typed_secret():
            raise ScreenshotWithheld("a secret was typed into this page")
        text = await page_text(page, timeout_s)
        if secrets.redact(text) != text:
            raise ScreenshotWithheld("a secret value is shown on this page")
    jpeg = await page.screenshot(type="jpeg", quality=JPEG_QUALITY, timeout=timeout_s * 1000)
    return jpeg, secrets.redact(page.url)


class GrpcHuman:
    def __init__(self, stub: wgrpc.TaskBrokerServiceStub, task_id: str, session: BrowserSession,
                 shot_timeout_s: float, secrets: Secrets, typed_secret: Callable[[], bool]) -> None:
        self._stub = stub
        self._task_id = task_id
        self._session = session
        self._shot_timeout_s = shot_timeout_s
        self._secrets = secrets
        self._typed_secret = typed_secret

    async def ask(self, kind: str, question: str) -> str:
        try:
            jpeg, url = await screenshot(self._session, self._shot_timeout_s, self._secrets, self._typed_secret)
        except (PlaywrightError, RuntimeError, ScreenshotWithheld) as exc:  # the question goes without a picture
            log.warning("task %s: no screenshot for the person: %s", self._task_id, exc)
            jpeg, url = b"", ""
        try:
            async with self._session.parked():
                resp = await self._stub.AskHuman(wpb.AskHumanRequest(task_id=self._task_id,
                                                                     question=self._secrets.redact(question),
                                                                     kind=kind, jpeg=jpeg, url=url))
        except grpc.aio.AioRpcError as exc:
            raise HumanUnavailable(exc.details() or exc.code().name) from exc
        return resp.answer
