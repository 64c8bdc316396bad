"""Slow clients cannot hold the gateway: headers and bodies have deadlines, connections a cap.

Gateways with small limits in front of the session engine. Real sockets play slowloris:
each sends a request line and then one header byte at a time, never finishing. Every one
of them must be closed by the gateway (with a 408 in OpenAI's shape) well within a
generous deadline while ``/healthz`` keeps answering; at the connection cap, the slowest
header reader makes room for a new connection.
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

LIMITS = {"gateway_header_timeout_s": 2, "gateway_body_timeout_s": 2}
SLOW = 36
DEADLINE_S = 60.0  # generous: "closed by the server", never a timing claim


async def _slowloris(host: str, port: int, stop: asyncio.Event, connected: asyncio.Event | None = None) -> bytes:
    """Send a request header one byte at a time until the server closes; return what it answered."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        if connected is not None:
            connected.set()
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
            assert "gateway_header_timeout_s" in err["message"], err
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


async def test_at_the_connection_cap_the_slowest_header_reader_makes_room(engine: Engine, tmp_path: Path) -> None:
    # Headers may take ten minutes here: only the cap can close these connections.
    cap = 4
    gw = start_gateway(engine.address, tmp_path, "capped",
                       {"gateway_header_timeout_s": 600, "gateway_max_connections": cap})
    try:
        host, port = gw.url.removeprefix("http://").rsplit(":", 1)
        stop = asyncio.Event()
        connected = [asyncio.Event() for _ in range(cap)]
        slow = [asyncio.ensure_future(_slowloris(host, int(port), stop, c)) for c in connected]
        try:
            await asyncio.wait_for(asyncio.gather(*(c.wait() for c in connected)), DEADLINE_S)
            # The server accepts in order: the cap is full of slow connections when this one comes.
            async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
                assert (await http.get("/healthz")).status_code == 200
            done, _ = await asyncio.wait(slow, timeout=DEADLINE_S, return_when=asyncio.FIRST_COMPLETED)
            assert done, "no slow connection was closed to make room"
            status, err = _status_and_error(next(iter(done)).result())
            assert status == 408 and "gateway_max_connections" in err["message"], err
        finally:
            stop.set()
            for t in slow:
                t.cancel()
            await asyncio.gather(*slow, return_exceptions=True)
    finally:
        stop_process(gw.proc)
