"""``python -m gateway``: serve the OpenAI-compatible REST gateway in front of a coordinator.

::

    python -m gateway --grpc-address 127.0.0.1:50051 [--host 127.0.0.1] [--port 8000]
                      [--config config.yaml] [--ready-file PATH]

From the config (default: the repository's ``config.yaml``) it reads
``settings.api_keys``, ``settings.max_request_bytes``, ``settings.gateway_host`` and
``settings.server_port`` (the defaults of ``--host`` and ``--port``), the slow-client
limits ``settings.gateway_header_timeout_s``, ``gateway_body_timeout_s`` and
``gateway_max_connections`` (``slow_clients.py``), and the models ``/v1/models`` lists. API keys may also come from the ``BLAST_API_KEYS`` environment
variable (comma-separated), in addition to ``settings.api_keys``; keys are never logged.
The coordinator checks the same keys on its gRPC API, so the gateway calls it with
``BLAST_API_KEY`` if that is set, otherwise with the first of its own keys.
It logs to stderr and to ``settings.logs_dir``/gateway.log (rotated, secret values
redacted: ``blast_grpc/logsetup.py``). Bound to a non-loopback address without any key,
it prints a warning line at start-up. ``--port 0`` picks a free port; once the gateway accepts
connections it writes ``{"url": "http://HOST:PORT"}`` to ``--ready-file`` (atomically).
SIGTERM or SIGINT stop it cleanly.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import signal
import socket
import sys
from typing import Callable, Iterator, Mapping

import uvicorn
import uvloop
from starlette.applications import Starlette

from blast_grpc.access import API_KEYS_ENV, api_keys, is_loopback
from blast_grpc.config import ConfigError, Settings, load_config
from blast_grpc.logsetup import setup_logging
from blast_grpc.procutil import write_ready_file

from .app import configured_models, create_app
from .slow_clients import guarded_protocol

log = logging.getLogger("gateway")

GRACEFUL_SHUTDOWN_S = 5


def engine_key(keys: list[str], environ: Mapping[str, str]) -> str:
    """The key the gateway sends to the coordinator: ``BLAST_API_KEY`` (what every blast-grpc
    client sends), else the first of its own keys (a gateway started by ``blast-grpc serve``
    reads the coordinator's config and environment, so its keys are the coordinator's); ""
    sends none."""
    return environ.get("BLAST_API_KEY", "").strip() or (keys[0] if keys else "")


def open_bind_warning(url: str) -> str:
    """The start-up warning for a gateway bound beyond loopback without any API key."""
    return (f"gateway: WARNING: listening on {url} without API keys: the API is open to the network; set "
            f"settings.api_keys or {API_KEYS_ENV} (comma-separated) to require 'Authorization: Bearer <key>'")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m gateway", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grpc-address", required=True, help="the coordinator, host:port")
    ap.add_argument("--host", default=None, help="address to bind (default: settings.gateway_host)")
    ap.add_argument("--port", type=int, default=None, help="port to bind, 0 for any free one "
                    "(default: settings.server_port)")
    ap.add_argument("--config", default=None, help="YAML config (default: the repository's config.yaml)")
    ap.add_argument("--metrics-url", default=None, help="the coordinator's Prometheus /metrics, passed on by "
                    "GET /metrics to callers that accept text/plain (blast-grpc serve sets it)")
    ap.add_argument("--ready-file", default=None, help='write {"url": ...} here once listening')
    ap.add_argument("--log-level", default=None, help="default: settings.blastai_log_level")
    return ap


class _Server(uvicorn.Server):
    """A uvicorn server that reports once its socket accepts connections."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_started()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn's version re-raises the signal after the graceful shutdown, so the process
        # dies "of" SIGTERM; a gateway that shut down cleanly should exit 0.
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _raise_file_limit(connections: int) -> None:
    """Raise the soft open-file limit to the hard one: each connection is a descriptor, and
    running out of them is what made ``/healthz`` fail under many slow clients."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > soft):
        soft = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft != resource.RLIM_INFINITY and connections + 100 > soft:
        log.warning("settings.gateway_max_connections = %d is close to the open-file limit (%d): the gateway may "
                    "run out of descriptors before it reaches the cap", connections, soft)


def main(argv: list[str] | None = None) -> int:
    """Run the gateway until SIGTERM/SIGINT; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    s = config.settings
    host = args.host or s.gateway_host
    port = s.server_port if args.port is None else args.port
    level = (args.log_level or s.blastai_log_level).upper()
    setup_logging(s, "gateway", level)
    models = configured_models(config.constraints.llm_model, config.constraints.llm_model_mini)
    keys = api_keys(s.api_keys, os.environ)
    app = create_app(args.grpc_address, api_keys=keys, max_request_bytes=s.max_request_bytes, models=models,
                     engine_api_key=engine_key(keys, os.environ), metrics_url=args.metrics_url)
    log.info("%d API key(s) configured", len(keys))
    _raise_file_limit(s.gateway_max_connections)
    return serve(app, "gateway", host, port, s, level, args.ready_file, open_bind_warning if not keys else None)


def serve(app: Starlette, what: str, host: str, port: int, s: Settings, level: str, ready_file: str | None,
          open_warning: Callable[[str], str] | None) -> int:
    """Bind ``host:port`` and serve ``app`` with uvicorn on uvloop until SIGTERM/SIGINT (the gateway
    and the dashboard, ``gateway/dashboard/__main__.py``): the slow-client guard, the graceful
    shutdown, ``{"url": ...}`` in ``ready_file`` once listening, and ``open_warning(url)`` on stderr
    when bound beyond loopback (given when no API keys are set). Returns the exit code."""
    try:
        sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as exc:
        print(f"{what}: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 2
    url = f"http://{f'[{host}]' if ':' in host else host}:{sock.getsockname()[1]}"
    if open_warning is not None and not is_loopback(sock.getsockname()[0]):
        print(open_warning(url), file=sys.stderr, flush=True)
    protocol = guarded_protocol(s.gateway_header_timeout_s, s.gateway_body_timeout_s, s.gateway_max_connections)
    uv_config = uvicorn.Config(app, log_level=level.lower(), lifespan="on", access_log=level == "DEBUG",
                               timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, log_config=None, http=protocol)

    def started() -> None:
        log.info("%s listening on %s", what, url)
        if ready_file:
            write_ready_file(ready_file, {"url": url})

    server = _Server(uv_config, started)
    uvloop.run(server.serve(sockets=[sock]))
    return 0 if server.started else 1
