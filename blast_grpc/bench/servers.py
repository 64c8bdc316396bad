"""The servers a workload needs besides the engine: the simulated model and a static site.

* ``SimProcess`` runs ``python -m blast_grpc sim-llm`` as a child process (its own
  interpreter, so the bench's event loop never competes with it for the GIL) with a
  latency file written from a dict, the bench scenarios and a seed.
* ``TimedSite`` serves a directory on loopback from a thread and records the wall-clock
  time of every request, so a workload can tell when a browser first asked for a page.

Both are context managers that stop what they started.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from ..procutil import StartError, stop_process, wait_ready_file

SCENARIOS_DIR = Path(__file__).parent / "scenarios"


class SimProcess:
    """The simulated model in a child process; ``base_url`` once started."""

    def __init__(self, workdir: Path, latency: dict[str, Any], seed: int,
                 scenario_dirs: list[Path] | None = None, name: str = "sim", log: Path | None = None,
                 policies: list[str] | None = None) -> None:
        self.workdir = workdir
        self.latency = latency
        self.seed = seed
        self.scenario_dirs = scenario_dirs or [SCENARIOS_DIR]
        self.name = name
        self.log = log
        self.policies = policies or []
        self.base_url = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> SimProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        latency_file = self.workdir / f"{self.name}-latency.yaml"
        latency_file.write_text(yaml.safe_dump(self.latency, sort_keys=True), encoding="utf-8")
        ready = self.workdir / f"{self.name}-ready.json"
        ready.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "blast_grpc", "sim-llm", "--port", "0", "--ready-file", str(ready),
               "--latency", str(latency_file), "--seed", str(self.seed)]
        for d in self.scenario_dirs:
            cmd += ["--scenarios", str(d)]
        for policy in self.policies:
            cmd += ["--policy", policy]
        stderr = open(self.log, "ab") if self.log is not None else None  # noqa: SIM115 (the child keeps it)
        try:
            self._proc = subprocess.Popen(cmd, start_new_session=True, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=stderr)
        finally:
            if stderr is not None:
                stderr.close()
        try:
            info = wait_ready_file(ready, self._proc, timeout, what="the simulated model")
        except StartError:
            self.stop()
            raise
        self.base_url = str(info["base_url"])
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc)

    def __enter__(self) -> SimProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(SimpleHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self.server.site.record(self.path)
        super().do_GET()

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")  # every visit reaches the server
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    site: TimedSite

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that gives up on a page (a cancelled task) is not an error worth printing."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class TimedSite:
    """A static site on ``127.0.0.1`` (free port) that logs ``(time.time(), path)`` per request."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = ""
        self._log: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> TimedSite:
        server = _Server(("127.0.0.1", 0), partial(_Handler, directory=str(self.root)))
        server.site = self
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}/"
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="bench-site", daemon=True)
        self._thread.start()
        return self

    def record(self, path: str) -> None:
        with self._lock:
            self._log.append((time.time(), path))

    def requests_since(self, t0: float, path_contains: str = "") -> list[tuple[float, str]]:
        """Requests logged at or after wall time ``t0`` whose path contains ``path_contains``."""
        with self._lock:
            return [(t, p) for t, p in self._log if t >= t0 and path_contains in p]

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> TimedSite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
