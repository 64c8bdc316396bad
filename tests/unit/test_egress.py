"""The egress proxy's decision and its SOCKS5 subset, with a fake resolver (no browser, no DNS).

``decide`` judges a destination by its name and then by every address a resolver gives;
``EgressProxy`` is driven here by a minimal SOCKS5 client over a socket on 127.0.0.1, the
way Chromium drives it, against a TCP echo server that stands for the destination.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from typing import AsyncIterator

import pytest
import pytest_asyncio

from blast_grpc.worker.egress import CONNECTION_REFUSED, HOST_UNREACHABLE, NOT_ALLOWED, OK, EgressProxy, Refused, decide
from blast_grpc.worker.navigation import IP, Refusals, UrlPolicy

from ..conftest import tcp_server

pytestmark = pytest.mark.asyncio

STRICT = UrlPolicy(None, allow_loopback=False, allow_link_local=False)
LOCAL = UrlPolicy(None, allow_loopback=True, allow_link_local=False)


class FakeResolver:
    """Answers from a table and counts the lookups (a second lookup would open a rebinding window)."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IP]:
        self.calls.append(host)
        if host not in self.table:
            raise OSError(f"no such host {host}")
        return [ipaddress.ip_address(a) for a in self.table[host]]


async def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    dns = FakeResolver({"shop.test": ["93.184.216.34"], "sneaky.test": ["93.184.216.34", "127.0.0.1"],
                        "meta.test": ["169.254.169.254"], "intranet.test": ["10.0.0.7"], "v6.test": ["::1"]})
    assert await decide(STRICT, "shop.test", 80, dns) == [ipaddress.ip_address("93.184.216.34")]
    for host, why in [("sneaky.test", "sneaky.test resolves to 127.0.0.1: 127.0.0.1 is a loopback address"),
                      ("meta.test", "link-local"), ("intranet.test", "private network"), ("V6.TEST.", "::1 is a loopback")]:
        with pytest.raises(Refused, match=why):
            await decide(STRICT, host, 80, dns)
    with pytest.raises(LookupError, match="could not be resolved"):
        await decide(STRICT, "nowhere.test", 80, dns)


async def test_names_and_literals_refused_without_a_lookup() -> None:
    dns = FakeResolver({})
    for host, why in [("localhost.", "loopback"), ("metadata.google.internal", "cloud-metadata"),
                      ("127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "link-local"), ("0.0.0.0", "loopback")]:
        with pytest.raises(Refused, match=why):
            await decide(STRICT, host, 80, dns)
    only = UrlPolicy(["shop.test"], allow_loopback=True, allow_link_local=False)
    for host in ("evil.test", "93.184.216.34"):
        with pytest.raises(Refused, match="allowed_domains"):
            await decide(only, host, 443, dns)
    assert dns.calls == []


@pytest_asyncio.fixture
async def echo() -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 that answers each line with "echo: " + the line."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(b"echo: " + line)
            await writer.drain()

    async with tcp_server(serve) as port:
        yield port


async def socks_connect(proxy_port: int, host: str, port: int
                        ) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter]:
    """Speak SOCKS5 as Chromium does (no auth, CONNECT by name or address); returns the reply code."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    writer.write(b"\x05\x01\x00")
    assert await reader.readexactly(2) == b"\x05\x00"
    try:
        ip = ipaddress.ip_address(host)
        address = bytes([1 if ip.version == 4 else 4]) + ip.packed
    except ValueError:
        address = bytes([3, len(host)]) + host.encode()
    writer.write(b"\x05\x01\x00" + address + struct.pack("!H", port))
    head = await reader.readexactly(4)
    await reader.readexactly((4 if head[3] == 1 else 16) + 2)
    return head[1], reader, writer


async def test_the_proxy_connects_to_the_address_it_checked(echo: int) -> None:
    dns = FakeResolver({"shop.test": ["127.0.0.1"]})
    proxy = EgressProxy(LOCAL, Refusals(), dns)
    await proxy.start()
    try:
        code, reader, writer = await socks_connect(proxy.port, "shop.test", echo)
        assert code == OK
        writer.write(b"hello\n")
        assert await reader.readline() == b"echo: hello\n"
        writer.close()
        assert dns.calls == ["shop.test"]  # looked up once; the connection went to that answer
    finally:
        await proxy.close()


async def test_a_refused_destination_is_recorded_and_never_connected(echo: int) -> None:
    dns = FakeResolver({"rebind.test": ["127.0.0.1"]})
    refusals = Refusals()
    proxy = EgressProxy(STRICT, refusals, dns)
    await proxy.start()
    try:
        for host in ("rebind.test", "127.0.0.1", "::1"):
            code, reader, writer = await socks_connect(proxy.port, host, echo)
            assert code == NOT_ALLOWED, host
            assert await reader.read() == b""  # closed: nothing was relayed
            writer.close()
        assert [(r.host, r.port) for r in refusals.items] == [("rebind.test", echo), ("127.0.0.1", echo),
                                                              ("::1", echo)]
        assert "rebind.test resolves to 127.0.0.1" in refusals.items[0].reason
        m = refusals.match(f"http://[::1]:{echo}/x")
        assert m is not None and "loopback" in m.reason
    finally:
        await proxy.close()


async def test_closing_the_proxy_ends_its_connections(echo: int) -> None:
    proxy = EgressProxy(LOCAL, Refusals(), FakeResolver({}))
    await proxy.start()
    code, reader, writer = await socks_connect(proxy.port, "127.0.0.1", echo)
    assert code == OK
    await proxy.close()
    assert await asyncio.wait_for(reader.read(), 30) == b""  # the relayed connection was closed
    writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", proxy.port)


async def test_only_connect_without_authentication_is_spoken() -> None:
    proxy = EgressProxy(LOCAL, Refusals(), FakeResolver({}))
    await proxy.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"\x05\x01\x02")  # username/password only
        assert await reader.readexactly(2) == b"\x05\xff"
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"\x05\x01\x00" + b"\x05\x03\x00\x01" + bytes(4) + b"\x00\x35")  # UDP ASSOCIATE
        assert await reader.readexactly(2) == b"\x05\x00"
        assert (await reader.readexactly(10))[1] == 7  # command not supported
        writer.close()
    finally:
        await proxy.close()


async def test_a_destination_that_cannot_be_reached_is_recorded_as_such() -> None:
    refusals = Refusals()
    proxy = EgressProxy(LOCAL, refusals, FakeResolver({}))
    await proxy.start()
    closed = socket_port_with_nothing_listening()
    try:
        code, _, writer = await socks_connect(proxy.port, "127.0.0.1", closed)
        writer.close()
        assert code == CONNECTION_REFUSED
        code, _, writer = await socks_connect(proxy.port, "nowhere.test", 80)
        writer.close()
        assert code == HOST_UNREACHABLE
        assert [(r.refused, r.reason) for r in refusals.items] == [
            (False, f"127.0.0.1:{closed}: the connection was refused"),
            (False, "nowhere.test could not be resolved (no such host nowhere.test)")]
    finally:
        await proxy.close()


def socket_port_with_nothing_listening() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again on return: nothing listens there
