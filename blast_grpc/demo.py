"""``blast-grpc demo`` (``make demo``): the whole engine offline, in one command.

Starts the simulated model and the demo site on loopback, an engine pointed at
them, runs one task through the gRPC client and prints its events as they stream.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

from .cli import format_event
from .demo_site.server import DemoSite
from .engine import Engine
from .procutil import StartError, stop_process, wait_ready_file


def start_sim(workdir: str, extra: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    ready = Path(workdir) / "sim.json"
    proc = subprocess.Popen([sys.executable, "-m", "blast_grpc", "sim-llm", "--port", "0",
                             "--ready-file", str(ready), *extra], start_new_session=True)
    try:
        info = wait_ready_file(ready, proc, 30, what="the simulated model")
    except StartError as exc:
        proc.kill()
        raise SystemExit(f"demo: {exc}") from None
    return proc, str(info["base_url"])


async def run_demo(task: str | None, sim_url: str, site_url: str) -> int:
    overrides = {"settings": {"grpc_port": 0, "metrics_port": 0, "gateway": False, "allow_loopback": True,
                              "llm_endpoints": {"default": {"base_url": sim_url}}}}
    task = task or f"On {site_url.rstrip('/')}/index.html find the largest gorilla in Asia"
    print(f"demo: simulated model at {sim_url}, demo site at {site_url}", flush=True)
    async with Engine.create(overrides=overrides) as engine:
        print(f"demo: engine at {engine.address}; running: {task}", flush=True)
        code = 1
        async for ev in engine.client.run(task, stream=True):
            print(format_event(ev), flush=True)
            if ev.HasField("completed") and not ev.parent_task_id:
                code = 0 if ev.completed.success else 1
        return code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="blast-grpc demo", description=__doc__)
    ap.add_argument("task", nargs="?", default=None, help="a task for the demo site (default: a gorilla lookup)")
    ap.add_argument("--sim-arg", action="append", default=[], help="extra argument for sim-llm (repeatable)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir, DemoSite(host="127.0.0.1", port=0) as site:
        sim, sim_url = start_sim(workdir, args.sim_arg)
        try:
            return asyncio.run(run_demo(args.task, sim_url, site.url))
        finally:
            stop_process(sim, grace_s=5)
