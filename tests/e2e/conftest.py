"""Fixtures for the gateway's end-to-end tests.

The gateway runs as a real subprocess (``python -m gateway``) in front of the shared
session ``engine``, on 127.0.0.1 port 0, and is driven with the official ``openai``
package. Every check runs against both base URLs: ``.../v1`` and the bare root.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, TypeVar

import openai
import pytest
import pytest_asyncio
import yaml

from blast_grpc import Engine
from blast_grpc.demo_site.server import DemoSite

from ..conftest import ROOT, stop_process, wait_ready_file

T = TypeVar("T")

API_KEY = "sk-blast-test-0123456789"
SMALL_BODY_LIMIT = 64 * 1024


@dataclass
class Gateway:
    """A gateway subprocess, its root URL (``http://127.0.0.1:PORT``) and the file its stderr goes to."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stderr(self) -> str:
        """Everything the gateway wrote to stderr so far (its log)."""
        return self.log.read_text(errors="replace")


def start_gateway(grpc_address: str, workdir: Path, name: str, settings: dict[str, Any] | None = None, *,
                  host: str = "127.0.0.1", port: int = 0, env: dict[str, str] | None = None,
                  log_level: str | None = None, metrics_url: str | None = None) -> Gateway:
    """Start ``python -m gateway`` with its own config file; returns once it listens.

    Its stderr goes to ``<workdir>/<name>.log``. ``BLAST_API_KEYS`` and ``BLAST_API_KEY`` are not
    inherited from the test run's environment (only what ``env`` adds), so each gateway's keys
    are its config's."""
    config = workdir / f"{name}.yaml"
    config.write_text(yaml.safe_dump({"settings": {"api_keys": [], "logs_dir": None, **(settings or {})}}))
    ready = workdir / f"{name}.ready.json"
    log = workdir / f"{name}.log"
    environ = {k: v for k, v in os.environ.items() if k not in ("BLAST_API_KEYS", "BLAST_API_KEY")}
    environ.update(env or {})
    args = [sys.executable, "-m", "gateway", "--grpc-address", grpc_address, "--host", host, "--port", str(port),
            "--config", str(config), "--ready-file", str(ready)]
    if log_level is not None:
        args += ["--log-level", log_level]
    if metrics_url is not None:
        args += ["--metrics-url", metrics_url]
    with log.open("wb") as err:
        proc = subprocess.Popen(args, cwd=ROOT, start_new_session=True, env=environ, stderr=err)
    try:
        info = wait_ready_file(ready, proc)
    except BaseException:
        stop_process(proc)
        raise
    return Gateway(str(info["url"]), proc, log)


@pytest.fixture(scope="session")
def gateway(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The open gateway (no API keys, default body limit) in front of the shared engine."""
    gw = start_gateway(engine.address, tmp_path_factory.mktemp("gateway"), "open")
    try:
        yield gw
    finally:
        stop_process(gw.proc)


@pytest.fixture(scope="session")
def keyed_gateway(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A second gateway that requires ``API_KEY`` and takes bodies up to 64 KiB."""
    gw = start_gateway(engine.address, tmp_path_factory.mktemp("gateway"), "keyed",
                       {"api_keys": [API_KEY], "max_request_bytes": SMALL_BODY_LIMIT})
    try:
        yield gw
    finally:
        stop_process(gw.proc)


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["/v1", ""], ids=["v1", "root"])
def api_suffix(request: pytest.FixtureRequest) -> str:
    suffix: str = request.param
    return suffix


@pytest.fixture
def base_url(gateway: Gateway, api_suffix: str) -> str:
    """The gateway's API base URL, once with ``/v1`` and once without."""
    return gateway.url + api_suffix


@pytest.fixture
def oai(base_url: str) -> Iterator[openai.OpenAI]:
    """The official sync client on ``base_url`` (no retries, so each status is seen as sent)."""
    with openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=60) as client:
        yield client


@pytest_asyncio.fixture
async def aoai(base_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official async client on ``base_url``.

    Closed explicitly: left to the garbage collector, its finalizer can run in the middle
    of an unrelated AST build, which CPython 3.11.7 reports as "AST constructor recursion
    depth mismatch" (its depth counter is not re-entrant)."""
    async with openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=60) as client:
        yield client


def gorilla_task(site: DemoSite, continent: str) -> str:
    """A task the simulated model answers with the largest gorilla of ``continent``."""
    return f"On {site.url}/index.html find the largest gorilla in {continent}"


def slow_task(site: DemoSite) -> str:
    """A ~3-4 s, 5-step task, for cancelling and disconnecting mid-task."""
    return f"Slowly tour Europe from {site.url}/index.html"


def poll(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 20.0, interval: float = 0.1) -> T:
    """``read()`` until ``done`` holds or ``timeout`` passes; returns the last value read
    (the caller asserts on it, so a timeout shows what the state was)."""
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(interval)
        value = read()
    return value


async def apoll(read: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout: float = 20.0,
                interval: float = 0.1) -> T:
    """``poll`` for coroutines."""
    deadline = time.monotonic() + timeout
    value = await read()
    while not done(value) and time.monotonic() < deadline:
        await asyncio.sleep(interval)
        value = await read()
    return value


def error_body(exc: openai.APIStatusError) -> dict[str, Any]:
    """The ``error`` object the SDK took from the body; it has all four OpenAI fields."""
    body = exc.body
    assert isinstance(body, dict), body
    assert set(body) == {"message", "type", "param", "code"}, body
    assert isinstance(body["message"], str) and body["message"]
    return body


def still_serving(oai: openai.OpenAI) -> None:
    """The gateway still answers (after a bad request)."""
    assert [m.id for m in oai.models.list()], "the gateway stopped answering"
