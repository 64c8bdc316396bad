"""Slow clients cannot hold the gateway: headers and bodies have deadlines, connections a cap.

A gateway with small limits (2 s for a header, 2 s of body pause, 20 connections) in front
of the session engine. Real sockets play slowloris: each sends a request line and then one
header byte at a time, never finishing. Every one of them must be closed by the gateway
(with a 408 in OpenAI's shape) well within a generous deadline, while ``/healthz`` keeps
answering, even with more slow connections than the cap.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from blast_grpc import Engine

from ..conftest import stop_process
from .conftest import start_gateway

pytestmark = [pytest.mark.asyncio]

LIMITS = {"gateway_header_timeout_s": 2, "gateway_body_timeout_s": 2, "gateway_max_connections": 20}
SLOW = 36  # more than the cap
DEADLINE_S = 60.0  # generous: "closed by the server", never a timing claim


async def _slowloris(host: str, port: int, stop: asyncio.Event) -> bytes:
    """Send a request header one byte at a time until the server closes; return what it answered."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        received = b""

        async def trickle() -> None:
            while not stop.is_set():
                await asyncio.sleep(0.5)
                writer.write(b"X")
                await writer.drain()

        drip = asyncio.ensure_future(trickle())
        try:
            while chunk := await reader.read(4096):
                received += chunk
        finally:
            drip.cancel()
            await asyncio.gather(drip, return_exceptions=True)
        return received
    finally:
        writer.close()


def _status_and_error(raw: bytes) -> tuple[int, dict[str, str]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)["error"]


async def test_slow_headers_are_cut_off_and_healthz_still_answers(engine: Engine, tmp_path: Path) -> None:
    gw = start_gateway(engine.address, tmp_path, "slow", LIMITS)
    try:
        host, port = gw.url.removeprefix("http://").rsplit(":", 1)
        stop = asyncio.Event()
        slow = [asyncio.ensure_future(_slowloris(host, int(port), stop)) for _ in range(SLOW)]
        try:
            async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
                while not all(t.done() for t in slow):
                    assert (await http.get("/healthz")).json() == {"status": "ok"}
                    await asyncio.wait(slow, timeout=0.5)
            answers = await asyncio.wait_for(asyncio.gather(*slow), DEADLINE_S)
        finally:
            stop.set()
            for t in slow:
                t.cancel()
            await asyncio.gather(*slow, return_exceptions=True)
        for raw in answers:
            status, err = _status_and_error(raw)
            assert status == 408 and err["code"] == "request_timeout", raw
        reasons = {e["message"] for e in (_status_and_error(r)[1] for r in answers)}
        assert any("gateway_header_timeout_s" in m for m in reasons), reasons
        assert any("gateway_max_connections" in m for m in reasons), reasons  # the cap made room
        # A stalled body is cut off too.
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /v1/responses HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                     b"content-length: 100\r\n\r\n{\"model\":")
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), DEADLINE_S)
        writer.close()
        status, err = _status_and_error(raw)
        assert status == 408 and "gateway_body_timeout_s" in err["message"], raw
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
            assert (await http.get("/healthz")).status_code == 200
    finally:
        stop_process(gw.proc)
