"""A browser worker process: uvloop, one Chromium, a gRPC server on its own address.

Started by the coordinator's supervisor (``blast-grpc worker ...``) or on another host
with ``--coordinator HOST:PORT`` (remote.py: it joins over TCP with the worker token). It
exits when its browser disconnects (so the supervisor restarts a whole, healthy worker), with ``EXIT_BROWSER_LOST`` after telling each running task
what died; when one of its long-lived loops crashes (they belong to a ``TaskSet``,
``supervise.py``), with ``EXIT_LOOP_CRASHED`` after logging the traceback; and on
SIGTERM, after closing its browser. It logs at
``settings.blastai_log_level`` to stderr and ``settings.logs_dir``/worker-<id>.log
(``logsetup.py``) and loads ``settings.secrets_file_path`` once at start; secret values
are redacted from its log output.

Nothing it starts outlives it, however it ends (``kill -9`` included)::

    worker ──▶ Node.js driver ──▶ Chromium ──▶ zygote, renderers, helpers
           PDEATHSIG=KILL     PDEATHSIG=KILL      (exit when the browser's pipes close)

Playwright starts the driver and the browser in process groups of their own, so a group
kill cannot reach them; instead both are started through a small wrapper
(``procutil.write_deathsig_wrapper``) that makes Linux SIGKILL them when their parent
dies. Chromium's profile folders go to ``$TMPDIR``, which the supervisor makes per worker
and removes when the worker is gone. The Chromium binary is resolved by the coordinator
(``--chromium``); a worker started by hand resolves it itself, off the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

import grpc
import uvloop
from playwright._impl._driver import compute_driver_executable
from playwright.async_api import async_playwright

from .._proto.blast.worker.v1 import worker_pb2_grpc as wgrpc
from ..agent.secrets import Secrets
from ..chromium import CHROMIUM_ARGS, find_chromium
from ..config import Config, ConfigError, load_config
from ..extraction import ExtractionPool
from ..llm import LLM
from ..logsetup import setup_logging
from ..procutil import die_with_parent, write_deathsig_wrapper
from ..supervise import TaskSet, first_of
from ..workerlink import LinkError, worker_token
from .contexts import IdleContexts
from .egress import Egress
from .exits import EXIT_BROWSER_LOST, EXIT_LOOP_CRASHED, EXIT_REFUSED
from .navigation import UrlPolicy
from .navigation import install as install_policy
from .remote import RemoteLink, default_worker_id
from .resources import blocked_resource_types
from .service import WorkerService

log = logging.getLogger("blast_grpc.worker")


def _wrap_children(chromium: str, bin_dir: Path) -> str:
    """Make Playwright's driver and browser die with this process; returns the browser to launch."""
    node, _ = compute_driver_executable()
    os.environ["PLAYWRIGHT_NODEJS_PATH"] = write_deathsig_wrapper(bin_dir / "node", node)
    return write_deathsig_wrapper(bin_dir / "chromium", chromium)


async def serve(worker_id: str, address: str, config: Config, broker_address: str | None,
                secrets: Secrets, chromium: str | None = None, remote: RemoteLink | None = None) -> int:
    if not chromium:  # find_chromium may start Playwright's sync API, which cannot run inside this loop
        chromium = await asyncio.to_thread(find_chromium, config.settings.local_browser_path)
    with tempfile.TemporaryDirectory(prefix="blast-worker-bin-") as bin_dir:
        return await _serve(worker_id, address, config, broker_address, _wrap_children(chromium, Path(bin_dir)),
                            secrets, remote)


async def _serve(worker_id: str, address: str, config: Config, broker_address: str | None, chromium: str,
                 secrets: Secrets, remote: RemoteLink | None = None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    exit_code = 0
    # The owner of the worker's long-lived tasks (context janitor, warm refill, extraction
    # starts): a crash in one is logged with its traceback and the worker exits EXIT_LOOP_CRASHED.
    tasks = TaskSet()
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
        llm.prepare([config.constraints.llm_model, config.constraints.llm_model_mini])
        broker_channel = grpc.aio.insecure_channel(broker_address) if broker_address else None
        broker = wgrpc.TaskBrokerServiceStub(broker_channel) if broker_channel is not None else None
        if remote is not None:  # on another host: the broker is the coordinator's worker port
            broker = remote.broker()
        extraction = None
        if config.constraints.allow_parallelism.data:
            extraction = ExtractionPool(config, worker_id, config.settings.extraction_processes, tasks, llm)
            extraction.start_soon()
        policy = UrlPolicy.from_config(config)
        egress = Egress(policy)
        blocked = blocked_resource_types(config)
        idle = IdleContexts(browser, config.settings.warm_contexts, config.settings.context_keep_alive_s,
                            lambda ctx, refusals: install_policy(ctx, policy, refusals, blocked), egress,
                            max_kept=config.settings.max_kept_contexts, tasks=tasks,
                            warm_max=config.settings.warm_contexts_max)
        idle.start()
        server = remote.server() if remote is not None else grpc.aio.server()
        service = WorkerService(worker_id, config, browser, llm, idle, policy, broker, extraction, secrets)
        wgrpc.add_WorkerServiceServicer_to_server(service, server)
        if (remote.listen(server, address) if remote is not None else server.add_insecure_port(address)) == 0:
            raise SystemExit(f"worker {worker_id}: cannot listen on {address}")
        await server.start()
        log.info("worker %s ready on %s (pid %d)", worker_id, address, os.getpid())
        if remote is not None:
            remote.start(service, tasks, stop)
        await first_of(stop, tasks.failed)
        if remote is not None and remote.refused:
            log.critical("worker %s stopping: %s", worker_id, remote.refused)
            exit_code = EXIT_REFUSED
        elif tasks.failed.is_set() and not stop.is_set():
            log.critical("worker %s stopping: %s", worker_id, tasks.crash)
            exit_code = EXIT_LOOP_CRASHED
            # Running tasks end now with a step saying why, and the coordinator retries them.
            service.browser_lost(f"worker {worker_id} stopped because a long-lived loop of it crashed "
                                 f"({tasks.crash})", "(worker loop crashed)")
        elif remote is not None and exit_code == 0:
            await remote.drain(service)  # SIGTERM: running tasks finish first
        stop.set()  # from here the browser closing is this shutdown, not a lost browser
        if remote is not None:
            await remote.close()
        await server.stop(grace=1.0)
        await idle.close()
        await egress.close()  # the proxies of contexts still open (their browser closes below)
        if extraction is not None:
            await extraction.close()
        await tasks.aclose()  # anything of the TaskSet's the owners above did not stop
        if broker_channel is not None:
            await broker_channel.close()
        await llm.close()
        if exit_code != EXIT_BROWSER_LOST:  # a lost browser cannot be closed
            await browser.close()
    return exit_code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="blast-grpc worker")
    ap.add_argument("--worker-id", default=None, help="required for a local worker; remote: default the host name")
    ap.add_argument("--address", default=None,
                    help="gRPC address to listen on, e.g. unix:///tmp/w1.sock (remote: default 0.0.0.0:0, any port)")
    ap.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                    help="join this coordinator's settings.worker_listen over TCP (a worker on another host)")
    ap.add_argument("--token-file", default=None,
                    help="file holding the worker token (default: BLAST_WORKER_TOKEN, then settings.worker_token)")
    ap.add_argument("--advertise", default=None, metavar="HOST[:PORT]",
                    help="address the coordinator dials (default: this host's address towards it, the bound port)")
    ap.add_argument("--config", default=None)
    ap.add_argument("--broker", default=None, help="the coordinator's TaskBrokerService address")
    ap.add_argument("--chromium", default=None, help="the Chromium binary (default: find one, see blast_grpc.chromium)")
    args = ap.parse_args(argv)
    if args.coordinator is None and (args.worker_id is None or args.address is None):
        ap.error("--worker-id and --address are required (or --coordinator HOST:PORT for a worker on another host)")
    worker_id = args.worker_id or default_worker_id()
    die_with_parent()
    try:
        config = load_config(args.config)
        remote = (RemoteLink(config, worker_id, args.coordinator, worker_token(config.settings, args.token_file),
                             args.advertise) if args.coordinator else None)
    except (ConfigError, LinkError) as exc:
        print(f"blast-grpc worker: {exc}", file=sys.stderr)
        return 2
    secrets = setup_logging(config.settings, f"worker-{worker_id}")
    address = args.address or "0.0.0.0:0"
    return uvloop.run(serve(worker_id, address, config, args.broker, secrets, args.chromium, remote))


if __name__ == "__main__":
    sys.exit(main())
