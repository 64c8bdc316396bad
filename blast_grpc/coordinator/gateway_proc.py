"""The REST gateway as a child of ``blast-grpc serve`` (``settings.gateway``).

The gateway is stateless: it only translates HTTP to calls on the coordinator's
public gRPC address, so it runs as its own process and can be restarted freely.
It reads the coordinator's config file, which holds no API keys: it gets the keys in
its environment (``BLAST_API_KEYS``), so they are never on disk.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from ..access import API_KEYS_ENV
from ..config import Config
from ..procutil import StartError, die_with_parent, stop_processes, wait_ready_file_async
from .orphans import Orphans


class GatewayProcess:
    # What runs (``python -m MODULE``), what it is called in errors, and the setting with its port:
    # the dashboard (``dashboard_proc.py``) is started the same way.
    module = "blast_grpc_gateway"  # the gateway/ folder's installed name (setup.py): a wheel and a checkout
    what = "the REST gateway"
    port_key = "server_port"

    def __init__(self, config: Config, config_path: Path, runtime_dir: Path, keys: list[str],
                 orphans: Orphans) -> None:
        self.config = config
        self.keys = keys
        self.orphans = orphans
        self.config_path = config_path
        self.ready = runtime_dir / f"{self.module.rpartition('.')[2]}.json"
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self, grpc_port: int, timeout: float = 60.0, metrics_url: str | None = None) -> str:
        s = self.config.settings
        grpc_host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "") else s.host
        port = getattr(s, self.port_key)
        with self.orphans.launching():
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", self.module, "--grpc-address", f"{grpc_host}:{grpc_port}",
                "--config", str(self.config_path), "--host", s.gateway_host, "--port", str(port),
                "--ready-file", str(self.ready), *(["--metrics-url", metrics_url] if metrics_url else []),
                stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
                preexec_fn=die_with_parent,  # a coordinator killed with SIGKILL takes its gateway along
                env={**os.environ, API_KEYS_ENV: ",".join(self.keys)},
            )
            self.orphans.known.add(self.proc.pid)
        try:
            info = await wait_ready_file_async(self.ready, self.proc, timeout, what=self.what)
        except StartError as exc:
            hint = f" (is settings.{self.port_key}={port} free?)" if self.proc.returncode is not None else ""
            raise RuntimeError(f"{exc}{hint}") from None
        self.url = str(info["url"])
        return self.url

    async def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        await stop_processes([proc], timeout)
        self.orphans.known.discard(proc.pid)
