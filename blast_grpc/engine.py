"""``Engine``: start a local engine (coordinator and its workers) from Python, as BLAST does.

::

    async with Engine.create() as engine:          # or: engine = await Engine.create()
        task = await engine.run("Find ... on http://...")

Leaving the ``async with`` (or ``await engine.stop()``) stops every process it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Any, Generator

from .client import Client
from .config import load_config
from .procutil import StartError, stop_processes, wait_ready_file_async


class EngineStartError(RuntimeError):
    pass


class Engine:
    def __init__(self, proc: asyncio.subprocess.Process, address: str, workdir: str,
                 metrics_url: str | None = None, gateway_url: str | None = None) -> None:
        self.proc = proc
        self.address = address
        self.metrics_url = metrics_url
        self.gateway_url = gateway_url
        self.client = Client(address)
        self._workdir = workdir
        self.runtime_dir = ""  # the coordinator's runtime folder (sockets, workers' $TMPDIR)
        self.dashboard_url: str | None = None  # the web dashboard (settings.dashboard), when it runs

    @classmethod
    def create(cls, config_path: str | None = None, *, overrides: dict[str, Any] | None = None,
               timeout: float = 90.0) -> _Starting:
        """Start an engine; ``overrides`` are merged over the config file (validated here first)."""
        return _Starting(config_path, overrides or {}, timeout)

    async def run(self, task: str, **kw: Any) -> Any:
        return await self.client.run(task, **kw)

    async def get_metrics(self) -> dict[str, Any]:
        """BLAST's ``engine.get_metrics()``: its keys, units (memory in GiB) and rounding, plus
        token, LLM-call and time totals (``blast_metrics.py`` lists them)."""
        return await self.client.get_metrics()

    async def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM the coordinator (it drains and stops its workers); SIGKILL after ``timeout``."""
        await self.client.close()
        await stop_processes([self.proc], timeout)
        code = await self.proc.wait()
        _rmtree(self._workdir)
        return code

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _rmtree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


class _Starting:
    """What ``Engine.create`` returns: awaitable, and usable directly with ``async with``."""

    def __init__(self, config_path: str | None, overrides: dict[str, Any], timeout: float) -> None:
        self._args = (config_path, overrides, timeout)
        self._engine: Engine | None = None

    def __await__(self) -> Generator[Any, None, Engine]:
        return self._start().__await__()

    async def __aenter__(self) -> Engine:
        self._engine = await self._start()
        return self._engine

    async def __aexit__(self, *exc: object) -> None:
        if self._engine is not None:
            await self._engine.stop()

    async def _start(self) -> Engine:
        config_path, overrides, timeout = self._args
        config = load_config(config_path, overrides)  # fail here, in the caller, on a bad key
        if "gateway" not in (overrides.get("settings") or {}):
            # A library engine is used through its Client; the REST gateway is opt-in here.
            config.settings.gateway = False
        if "dashboard" not in (overrides.get("settings") or {}):
            config.settings.dashboard = False  # the web dashboard too
        workdir = tempfile.mkdtemp(prefix="blast-engine-")
        ready = Path(workdir) / "ready.json"
        # The config goes through a pipe, not a file: it may hold API keys, which never touch the disk.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "blast_grpc", "serve", "--config", "-", "--ready-file", str(ready),
            stdin=asyncio.subprocess.PIPE, start_new_session=True,
        )
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # it exited: reported below
            proc.stdin.write(config.model_dump_json().encode())
            await proc.stdin.drain()
            proc.stdin.close()
        try:
            info = await wait_ready_file_async(ready, proc, timeout, what="the engine")
        except StartError as exc:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            _rmtree(workdir)
            raise EngineStartError(str(exc)) from None
        engine = Engine(proc, str(info["grpc_address"]), workdir, info.get("metrics_url"), info.get("gateway_url"))
        engine.runtime_dir = str(info.get("runtime_dir") or "")
        engine.dashboard_url = info.get("dashboard_url")
        return engine
