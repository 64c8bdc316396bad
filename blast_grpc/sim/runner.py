"""Run the simulated model: ``SimServer`` (uvicorn in a background thread) and the ``main`` CLI.

The server binds its socket before starting uvicorn, so port 0 works and the
real port is known at once. Running uvicorn off the main thread also keeps it
from taking over SIGINT/SIGTERM; ``main`` handles those itself and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import uvicorn

from ..procutil import write_ready_file
from .faults import KINDS, Fault, FaultError, FaultQueue, parse_fault_list
from .latency import LatencyError, LatencyModel
from .scenarios import ScenarioError, ScenarioSet, load_scenarios
from .server import SimState, create_app
from .stats import Stats

START_TIMEOUT_S = 10.0


class SimServer:
    """An OpenAI-compatible simulated model on ``host:port`` (0 = any free port).

    ``latency`` is a latency YAML path, an already-parsed mapping, or a
    ``LatencyModel``; ``faults`` are fault kinds (or ``Fault`` objects) queued at
    start. Use as ``with SimServer() as sim: AsyncOpenAI(base_url=sim.base_url, ...)``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        scenario_dirs: Iterable[str | Path] | None = None,
        latency: str | Path | dict[str, Any] | LatencyModel | None = None,
        seed: int = 0,
        faults: Iterable[str | Fault] | None = None,
        scenarios: ScenarioSet | None = None,
    ) -> None:
        self.host = host
        self.port = port
        if isinstance(latency, LatencyModel):
            latency_model = latency
        elif isinstance(latency, (str, Path)):
            latency_model = LatencyModel.from_file(latency, seed)
        else:
            latency_model = LatencyModel.from_config(latency, seed)
        self.state = SimState(
            scenarios=scenarios if scenarios is not None else load_scenarios(scenario_dirs),
            latency=latency_model,
            faults=FaultQueue([f if isinstance(f, Fault) else Fault(f) for f in faults or []]),
            stats=Stats(),
        )
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` (no trailing slash)."""
        if self._server is None:
            raise RuntimeError("SimServer is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI ``base_url``: ``http://host:port/v1``."""
        return self.url + "/v1"

    def start(self) -> SimServer:
        """Bind, start serving in a daemon thread and wait until requests are accepted."""
        if self._server is not None:
            raise RuntimeError("SimServer is already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self.state.closing.clear()
        config = uvicorn.Config(create_app(self.state), log_level="warning", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=2)
        server = uvicorn.Server(config)
        self._sock, self._server, self._error = sock, server, None
        self._thread = threading.Thread(target=self._run, args=(server, config, sock),
                                        name=f"sim-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"simulated model failed to start: {self._error!r}")
            time.sleep(0.01)
        return self

    def _run(self, server: uvicorn.Server, config: uvicorn.Config, sock: socket.socket) -> None:
        factory = config.get_loop_factory()
        loop = factory() if factory is not None else asyncio.new_event_loop()
        try:
            loop.run_until_complete(server.serve(sockets=[sock]))
        except BaseException as exc:  # reported by start()
            self._error = exc
        finally:
            loop.close()

    def stop(self) -> None:
        """Stop serving: ends stalled and delayed requests, waits for the thread, frees the port."""
        if self._server is None:
            return
        self.state.closing.set()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def add_faults(self, *kinds: str, model: str | None = None) -> None:
        """Queue faults for the next requests (of ``model`` only, if given)."""
        self.state.faults.add([Fault(k, model) for k in kinds])

    def stats(self) -> dict[str, Any]:
        """The same counts as ``GET /sim/stats``."""
        return {**self.state.stats.snapshot(), "faults_pending": len(self.state.faults.pending()),
                "stalled_now": self.state.stalled}

    def requests(self) -> list[str]:
        """The recent request bodies, like ``GET /sim/requests``."""
        return self.state.requests.snapshot()

    def reset(self) -> None:
        """Clear counts, recorded requests and pending faults (like ``POST /sim/reset``)."""
        self.state.stats.reset()
        self.state.requests.clear()
        self.state.faults.clear()

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m blast_grpc.sim",
                                description="Serve the simulated OpenAI-compatible model.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    p.add_argument("--scenarios", action="append", metavar="DIR",
                   help="scenario directory; repeatable (default: the shipped scenarios)")
    p.add_argument("--latency", metavar="FILE.yaml", help="per-model latency (default: instant)")
    p.add_argument("--seed", type=int, default=0, help="seed for sampled latencies")
    p.add_argument("--faults", default="", metavar="KIND,KIND,...",
                   help="faults queued at start: " + ", ".join(KINDS))
    p.add_argument("--ready-file", metavar="PATH", help='write {"base_url": ...} here once listening')
    return p


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; exit 0, or 2 on bad configuration."""
    args = build_parser().parse_args(argv)
    try:
        sim = SimServer(args.host, args.port, scenario_dirs=args.scenarios, latency=args.latency,
                        seed=args.seed, faults=parse_fault_list(args.faults))
    except (ScenarioError, LatencyError, FaultError) as exc:
        print(f"sim: error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with sim:
        if args.ready_file:
            write_ready_file(args.ready_file, {"base_url": sim.base_url})
        print(f"simulated model at {sim.base_url}", flush=True)
        while not stop.wait(0.5):  # a timed wait keeps the main thread responsive to signals
            pass
    return 0
