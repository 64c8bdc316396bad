"""The last way to find Chromium, Playwright's own download, works for the engine's workers.

``find_chromium`` asks Playwright's sync API for its download's path, which refuses to run
inside an event loop, as a worker's is: the coordinator resolves the binary once, off its
loop, and hands it to every worker. Here no Chromium is on ``PATH`` and Playwright's
"download" (under ``PLAYWRIGHT_BROWSERS_PATH``) is a link to the system's binary.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

import psutil
import pytest
from playwright.sync_api import sync_playwright

from blast_grpc import Engine
from blast_grpc.chromium import find_chromium
from blast_grpc.demo_site.server import DemoSite

from ..conftest import Sim, engine_overrides

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]


def fake_download(target: str) -> str:
    """Put a link to ``target`` where Playwright's download of Chromium would be; returns its path."""
    with sync_playwright() as p:
        download = Path(p.chromium.executable_path)
    download.parent.mkdir(parents=True)
    download.symlink_to(target)
    return str(download)


def browser_executables(engine: Engine) -> set[str]:
    out = set()
    for p in psutil.Process(engine.proc.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            cmd = p.cmdline()
            if "--remote-debugging-pipe" in cmd and not any(a.startswith("--type=") for a in cmd):
                out.add(cmd[0])
    return out


async def test_workers_use_playwrights_download_when_nothing_else_is_found(
        sim: Sim, site: DemoSite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = find_chromium()  # the real binary, found the usual way before the environment changes
    monkeypatch.delenv("BLAST_CHROMIUM", raising=False)
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path / "ms-playwright"))
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))  # no chromium on PATH
    download = await asyncio.to_thread(fake_download, system)
    assert await asyncio.to_thread(find_chromium) == download

    overrides = engine_overrides(sim, workers=1, local_browser_path="auto", worker_start_timeout_s=30)
    async with Engine.create(overrides=overrides) as engine, asyncio.timeout(90):  # a worker without Chromium hangs
        task = await engine.client.run(f"Report the title of {site.url}asia.html")
        assert task.success and "Asia" in task.result, (task.error, task.result)
        assert browser_executables(engine) == {download}


async def test_find_chromium_inside_an_event_loop_says_how_to_call_it(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    monkeypatch.delenv("BLAST_CHROMIUM", raising=False)
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path))
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))
    with pytest.raises(RuntimeError, match="asyncio.to_thread"):
        find_chromium()  # before, the fallback failed silently here: "no Chromium found"
