"""A gateway stopped while a blocking request still waits answers it in OpenAI's error shape.

uvicorn waits ``GRACEFUL_SHUTDOWN_S`` for requests in flight, then cancels them; on its own it
would answer a plain-text 500. The request here waits on a model call the simulated model
holds (a ``stall`` fault), so it is still waiting when the gateway gets SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest

from blast_grpc import Engine
from blast_grpc.states import is_terminal

from ..conftest import Sim, stop_process
from .conftest import apoll, start_gateway

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]

DEADLINE_S = 90.0  # generous; never a timing claim


async def test_a_request_cut_off_by_shutdown_gets_an_openai_shaped_503(engine: Engine, sim: Sim,
                                                                      tmp_path: Path) -> None:
    gw = start_gateway(engine.address, tmp_path, "shutdown")
    try:
        sim.inject("stall")
        async with httpx.AsyncClient(base_url=gw.url, timeout=DEADLINE_S) as http:
            waiting = asyncio.ensure_future(http.post("/v1/chat/completions", json={
                "model": "gpt-4.1", "messages": [{"role": "user", "content": "say hello"}]}))
            try:
                held = await apoll(lambda: asyncio.to_thread(sim.stats), lambda s: s["stalled_now"] == 1,
                                   timeout=DEADLINE_S)
                assert held["stalled_now"] == 1, held
                gw.proc.send_signal(signal.SIGTERM)
                answer = await asyncio.wait_for(waiting, DEADLINE_S)
            finally:
                waiting.cancel()
                await asyncio.gather(waiting, return_exceptions=True)
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.json()["error"]["code"] == "gateway_shutting_down"
        assert await asyncio.to_thread(gw.proc.wait, DEADLINE_S) == 0
    finally:
        stop_process(gw.proc)
        # The task ends with the gateway's RunTask stream; should it still run, end it, and let
        # the model's held request go.
        for t in await engine.client.list_tasks():
            if t.spec.description == "say hello" and not is_terminal(t.state):
                await engine.client.cancel(t.task_id, "test cleanup")
        settled = await apoll(lambda: asyncio.to_thread(sim.stats), lambda s: s["stalled_now"] == 0,
                              timeout=DEADLINE_S)
        sim.reset()
        assert settled["stalled_now"] == 0, settled
