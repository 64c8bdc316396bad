"""``blast-grpc``: serve the engine, run a task, or try it all offline with ``demo``.

::

    blast-grpc serve [--config config.yaml]      coordinator + workers (make serve)
    blast-grpc run "task" [--url U]              stream one task's events, exit 1 if it fails
    blast-grpc demo                              simulated model + demo site + engine + one task
    blast-grpc sim-llm | demo-site | worker      the parts, one at a time
    blast-grpc worker --coordinator HOST:PORT    a worker on another host (README: Adding a host)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from .config import ConfigError, load_config


def cmd_serve(args: argparse.Namespace) -> int:
    import uvloop

    from .coordinator.server import run_coordinator
    from .logsetup import setup_logging

    overrides: dict[str, Any] = {}
    if args.grpc_port is not None:
        overrides.setdefault("settings", {})["grpc_port"] = args.grpc_port
    config = load_config(args.config, overrides)
    setup_logging(config.settings, "coordinator")
    return uvloop.run(run_coordinator(config, args.ready_file))


def format_event(ev: Any) -> str:
    """One readable line per event (used by ``run`` and ``demo``)."""
    kind = ev.WhichOneof("kind")
    body = getattr(ev, kind)
    who = ev.task_id[-8:] + (f" (sub of {ev.parent_task_id[-8:]})" if ev.parent_task_id else "")
    t = ev.time.ToDatetime().strftime("%H:%M:%S.%f")[:-3]
    if kind == "step":
        detail = f"#{body.number} {body.action}  @ {body.url}" + (f"\n      thought: {body.thought}" if body.thought else "")
    elif kind == "completed":
        detail = f"{'success' if body.success else 'gave up'}: {body.result}"
    elif kind == "failed":
        detail = body.error
    elif kind == "cancelled":
        detail = body.reason
    elif kind == "started":
        detail = f"on worker {body.worker_id} (attempt {body.attempt})"
    elif kind == "plan":
        detail = body.text
    elif kind == "waiting":
        detail = body.reason
    elif kind == "subtask_launched":
        detail = f"{body.subtask_id[-8:]}: {body.description}"
    else:
        detail = str(body).strip().replace("\n", " ")
    return f"[{t}] {who} #{ev.seq:<3} {kind:<16} {detail}"


async def stream_task(address: str, task: str, url: str) -> int:
    from .client import Client

    async with Client(address) as client:
        code = 1
        async for ev in client.run(task, stream=True, initial_url=url):
            print(format_event(ev), flush=True)
            if not ev.parent_task_id and ev.WhichOneof("kind") == "completed":
                code = 0 if ev.completed.success else 1
        return code


def cmd_run(args: argparse.Namespace) -> int:
    import grpc

    try:
        return asyncio.run(stream_task(args.address, args.task, args.url or ""))
    except grpc.aio.AioRpcError as exc:
        print(f"blast-grpc run: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Parts with their own argument parsers.
    passthrough = {"worker": ("blast_grpc.worker.main", "main"), "sim-llm": ("blast_grpc.sim", "main"),
                   "demo-site": ("blast_grpc.demo_site.server", "main"), "demo": ("blast_grpc.demo", "main")}
    if argv and argv[0] in passthrough:
        import importlib

        mod, fn = passthrough[argv[0]]
        return int(getattr(importlib.import_module(mod), fn)(argv[1:]) or 0)
    ap = argparse.ArgumentParser(prog="blast-grpc", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the coordinator and its workers")
    s.add_argument("--config", default=None,
                   help="YAML config (default: the repository's config.yaml); '-' reads it from standard input")
    s.add_argument("--ready-file", default=None, help="write {grpc_address} here once serving")
    s.add_argument("--grpc-port", type=int, default=None, help="override settings.grpc_port (0: any free port)")
    s.set_defaults(fn=cmd_serve)
    r = sub.add_parser("run", help="run one task and stream its events")
    r.add_argument("task")
    r.add_argument("--url", default="", help="page to open first")
    r.add_argument("--address", default="127.0.0.1:50051")
    r.set_defaults(fn=cmd_run)
    for name in passthrough:
        sub.add_parser(name, help=f"see blast-grpc {name} --help")
    args = ap.parse_args(argv)
    try:
        return int(args.fn(args))
    except ConfigError as exc:
        print(f"blast-grpc: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
