"""``python -m gateway.dashboard``: serve the web dashboard in front of a coordinator.

::

    python -m gateway.dashboard --grpc-address 127.0.0.1:50051 [--host 127.0.0.1] [--port 3000]
                                [--config config.yaml] [--ready-file PATH]

``blast-grpc serve`` starts it on ``settings.web_port`` (bound on ``settings.gateway_host``)
when ``settings.dashboard`` is on. It takes the same API keys as the gateway
(``settings.api_keys`` and ``BLAST_API_KEYS``; a browser logs in with one, ``auth.py``) and
calls the coordinator with ``BLAST_API_KEY`` or the first of them. ``--port 0`` picks a free
port; once it accepts connections it writes ``{"url": ...}`` to ``--ready-file``. SIGTERM or
SIGINT stop it cleanly.
"""

from __future__ import annotations

import argparse
import os
import sys

from blast_grpc.access import api_keys
from blast_grpc.config import ConfigError, load_config
from blast_grpc.logsetup import setup_logging

from ..main import engine_key, serve
from .app import create_app


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m blast_grpc_gateway.dashboard", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grpc-address", required=True, help="the coordinator, host:port")
    ap.add_argument("--host", default=None, help="address to bind (default: settings.gateway_host)")
    ap.add_argument("--port", type=int, default=None, help="port to bind, 0 for any free one "
                    "(default: settings.web_port)")
    ap.add_argument("--config", default=None, help="YAML config (default: the repository's config.yaml)")
    ap.add_argument("--ready-file", default=None, help='write {"url": ...} here once listening')
    ap.add_argument("--log-level", default=None, help="default: settings.blastai_log_level")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the dashboard until SIGTERM/SIGINT; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"dashboard: {exc}", file=sys.stderr)
        return 2
    s = config.settings
    host = args.host or s.gateway_host
    port = s.web_port if args.port is None else args.port
    level = (args.log_level or s.blastai_log_level).upper()
    setup_logging(s, "dashboard", level)
    keys = api_keys(s.api_keys, os.environ)
    app = create_app(args.grpc_address, keys, engine_api_key=engine_key(keys, os.environ))
    return serve(app, "dashboard", host, port, s, level, args.ready_file, None if keys else _open_warning)


def _open_warning(url: str) -> str:
    return (f"dashboard: WARNING: listening on {url} without API keys: anyone on the network can run and "
            "cancel tasks; set settings.api_keys or BLAST_API_KEYS")


if __name__ == "__main__":
    sys.exit(main())
