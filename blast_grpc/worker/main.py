"""A browser worker process: uvloop, one Chromium, a gRPC server on its own address.

Started by the coordinator's supervisor (``blast-grpc worker ...``) or by hand on
another host. It exits when its browser disconnects (so the supervisor restarts a
whole, healthy worker), with ``EXIT_BROWSER_LOST`` after telling each running task
what died, and on SIGTERM, after closing its browser. It logs at
``settings.blastai_log_level`` to stderr and ``settings.logs_dir``/worker-<id>.log
(``logsetup.py``) and loads ``settings.secrets_file_path`` once at start; secret values
are redacted from its log output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

import grpc
import uvloop
from playwright.async_api import async_playwright

from .._proto.blast.worker.v1 import worker_pb2_grpc as wgrpc
from ..agent.secrets import Secrets
from ..chromium import CHROMIUM_ARGS, find_chromium
from ..config import Config, load_config
from ..extraction import ExtractionPool
from ..llm import LLM
from ..logsetup import setup_logging
from ..procutil import die_with_parent
from .contexts import IdleContexts
from .egress import Egress
from .exits import EXIT_BROWSER_LOST
from .navigation import UrlPolicy
from .navigation import install as install_policy
from .service import WorkerService

log = logging.getLogger("blast_grpc.worker")


async def serve(worker_id: str, address: str, config: Config, broker_address: str | None,
                secrets: Secrets) -> int:
    chromium = find_chromium(config.settings.local_browser_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    exit_code = 0
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        service: WorkerService | None = None

        def lost(_: object) -> None:
            nonlocal exit_code
            if not stop.is_set():
                log.error("worker %s: Chromium disconnected; exiting so the supervisor restarts it", worker_id)
                exit_code = EXIT_BROWSER_LOST
                if service is not None:
                    service.browser_lost(f"the Chromium browser of worker {worker_id} died (its process exited or "
                                         "was killed) during the task")
                stop.set()

        browser.on("disconnected", lost)
        llm = LLM(config)
        broker_channel = grpc.aio.insecure_channel(broker_address) if broker_address else None
        broker = wgrpc.TaskBrokerServiceStub(broker_channel) if broker_channel is not None else None
        extraction = None
        warmup: asyncio.Task[None] | None = None
        if config.constraints.allow_parallelism.data:
            extraction = ExtractionPool(config, worker_id, config.settings.extraction_processes)
            # Spawn the readers in the background: the worker is ready without them, and the
            # first extraction simply shares the executor that is starting.
            warmup = asyncio.create_task(extraction.start(), name="extraction-warmup")
        policy = UrlPolicy.from_config(config)
        egress = Egress(policy)
        idle = IdleContexts(browser, config.settings.warm_contexts, config.settings.context_keep_alive_s,
                            lambda ctx, refusals: install_policy(ctx, policy, refusals), egress)
        idle.start()
        server = grpc.aio.server()
        service = WorkerService(worker_id, config, browser, llm, idle, policy, broker, extraction, secrets)
        wgrpc.add_WorkerServiceServicer_to_server(service, server)
        if server.add_insecure_port(address) == 0:
            raise SystemExit(f"worker {worker_id}: cannot listen on {address}")
        await server.start()
        log.info("worker %s ready on %s (pid %d)", worker_id, address, os.getpid())
        await stop.wait()
        await server.stop(grace=1.0)
        await idle.close()
        await egress.close()  # the proxies of contexts still open (their browser closes below)
        if warmup is not None:
            warmup.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await warmup
        if extraction is not None:
            await extraction.close()
        if broker_channel is not None:
            await broker_channel.close()
        await llm.close()
        if exit_code == 0:
            await browser.close()
    return exit_code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="blast-grpc worker")
    ap.add_argument("--worker-id", required=True)
    ap.add_argument("--address", required=True, help="gRPC address to listen on, e.g. unix:///tmp/w1.sock")
    ap.add_argument("--config", default=None)
    ap.add_argument("--broker", default=None, help="the coordinator's TaskBrokerService address")
    args = ap.parse_args(argv)
    die_with_parent()
    config = load_config(args.config)
    secrets = setup_logging(config.settings, f"worker-{args.worker_id}")
    return uvloop.run(serve(args.worker_id, args.address, config, args.broker, secrets))


if __name__ == "__main__":
    sys.exit(main())
