"""The gateway keeps no state: after it is stopped and a new one is started on another port
in front of the same coordinator, every response is still there."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.responses import Response

from blast_grpc import Engine
from blast_grpc.demo_site.facts import GORILLAS
from blast_grpc.demo_site.server import DemoSite

from ..conftest import stop_process
from .conftest import closed_port, poll, slow_task, start_gateway

MODEL = "gpt-4.1"


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_responses_outlive_a_gateway_restart(engine: Engine, site: DemoSite, tmp_path: Path) -> None:
    first = start_gateway(engine.address, tmp_path, "first")
    try:
        with _client(first.url) as oai:
            # A ~4 s task in the background, still running when its gateway stops ...
            running = oai.responses.create(model=MODEL, input=slow_task(site), background=True)
            assert running.status in ("queued", "in_progress")
            # ... and a quick one to its end (one model call), meanwhile.
            done = oai.responses.create(model=MODEL, input="say hello", metadata={"case": "restart"})
            assert done.status == "completed" and done.output_text == "Hello."
        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(timeout=20) == 0
    finally:
        stop_process(first.proc)
    old_port = int(first.url.rsplit(":", 1)[1])
    port = closed_port()
    while port == old_port:
        port = closed_port()
    second = start_gateway(engine.address, tmp_path, "second", port=port)
    try:
        assert second.url == f"http://127.0.0.1:{port}"
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{first.url}/healthz", timeout=5)  # the first gateway is gone
        with _client(second.url) as oai:
            again = oai.responses.retrieve(done.id)
            assert (again.id, again.status, again.output_text, again.model) == \
                (done.id, "completed", done.output_text, MODEL)
            assert again.metadata == {"case": "restart"} and again.usage == done.usage
            final: Response = poll(lambda: oai.responses.retrieve(running.id),
                                   lambda r: r.status not in ("queued", "in_progress"), timeout=60)
            assert final.status == "completed" and final.background is True, final.status
            assert f"Toured Europe: {GORILLAS['Europe'].name}" in final.output_text
    finally:
        stop_process(second.proc)
