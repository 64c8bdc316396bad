"""Run an ASGI app with uvicorn inside an event loop we own (the coordinator's, the gateway's).

uvicorn normally takes over SIGINT/SIGTERM; our processes turn signals into their
own drain, so ``EmbeddedServer`` leaves the handlers alone and is stopped by its owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Generator

import uvicorn

log = logging.getLogger("blast_grpc.http")
STOP_TIMEOUT_S = 5.0


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class EmbeddedServer:
    def __init__(self, app: Any, host: str, port: int, **options: Any) -> None:
        # log_config=None: uvicorn's records go to our root handlers (stderr, logs_dir, redaction).
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off",
                                access_log=False, log_config=None, **options)
        self._server = _QuietServer(config)
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> int:
        """Start serving; returns the bound port (useful with port 0)."""
        self._task = asyncio.create_task(self._server.serve(), name="http-server")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the start-up error
                raise RuntimeError("the HTTP server stopped while starting")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        task, self._task = self._task, None
        try:
            await asyncio.wait_for(task, STOP_TIMEOUT_S)
        except TimeoutError:  # wait_for cancelled it: connections that would not close
            log.warning("the HTTP server on port %d did not stop within %gs; cancelled", self.port, STOP_TIMEOUT_S)
        except Exception:  # its own failure: say so, the owner is stopping anyway
            log.exception("the HTTP server on port %d failed while stopping", self.port)
