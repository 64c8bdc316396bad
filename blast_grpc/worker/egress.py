"""Each browser context's egress proxy: the URL policy judged on every connection the browser makes.

Playwright's route handler sees only the first URL of a request (not its redirect
hops) and judges host strings, not the addresses the browser connects to. So every
context is created with its own SOCKS5 proxy (``proxy={"server": "socks5://127.0.0.1:PORT"}``):
Chromium then opens every connection of that context through it, loopback included
(Playwright adds the ``<-loopback>`` bypass rule), each redirect hop and each
WebSocket as a CONNECT of its own, carrying the host *name* (SOCKS5 resolves remotely)::

    Chromium ──CONNECT host:port──▶ EgressProxy ── decide(): name_refusal(host)
                                        │             resolve host (all addresses)
                                        │             address_refusal(each address)
                                        ├─ refused: reply "not allowed by ruleset", record a Refusal
                                        └─ allowed: connect to the address just checked, pipe bytes

The proxy connects to the very address it judged, never looking the name up again,
so a name cannot resolve to an allowed address for the check and a refused one for
the connection (DNS rebinding). A name is refused if *any* of its addresses is.
What Chromium reports for a refused connection (``net::ERR_SOCKS_CONNECTION_FAILED``)
says nothing; the ``Refusal`` recorded in the context's ``Refusals`` lets the task's
``PageGuard`` tell the model why (and likewise for a name that does not resolve or a
connection the destination refused, which Chromium reports the same way).

Only the subset of SOCKS5 (RFC 1928) Chromium uses is spoken: no authentication,
CONNECT, IPv4 / IPv6 / domain addresses. The listener is on 127.0.0.1, port 0; only
this worker's Chromium knows the port. No maintained asyncio SOCKS5 *server* library
offers a per-connection decision hook on the resolved address, and this subset is
short, so it is written here.

Ownership: ``Egress`` (one per worker) starts a proxy for each new context and closes
it when the context closes (Playwright's ``close`` event, also fired when the browser
goes away); a proxy owns its listener and its connections' tasks; ``Egress.close``
closes whatever is left at worker shutdown.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
from typing import Awaitable, Callable

from playwright.async_api import BrowserContext

from .navigation import IP, Refusal, Refusals, UrlPolicy, host_ip

log = logging.getLogger("blast_grpc.worker")

Resolve = Callable[[str, int], Awaitable[list[IP]]]

# RFC 1928 reply codes
OK, GENERAL_FAILURE, NOT_ALLOWED, NETWORK_UNREACHABLE, HOST_UNREACHABLE, CONNECTION_REFUSED = 0, 1, 2, 3, 4, 5
COMMAND_NOT_SUPPORTED, ADDRESS_TYPE_NOT_SUPPORTED = 7, 8
HANDSHAKE_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 30.0
PIPE_CHUNK = 256 * 1024


class Refused(Exception):
    """The policy refuses this destination (the message says why)."""


async def system_resolve(host: str, port: int) -> list[IP]:
    """Every address the system resolver gives for ``host`` (in its order), off the event loop."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[IP] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if ip not in out:
            out.append(ip)
    return out


async def decide(policy: UrlPolicy, host: str, port: int, resolve: Resolve = system_resolve) -> list[IP]:
    """The addresses the browser may connect to for ``host:port``; raises ``Refused`` saying why.

    A literal is judged as itself; a name first as written (metadata names, ``localhost``,
    ``allowed_domains``), then by every address it resolves to: one refused address refuses
    the name (which address a connection would use is up to the resolver's order).
    """
    name = host.lower().rstrip(".")
    if not name:
        raise Refused("the destination has no host name")
    ip = host_ip(name)
    if ip is None:
        why = policy.name_refusal(name)
        if why is not None:
            raise Refused(why)
        try:
            addresses = await resolve(name, port)
        except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
            raise LookupError(f"{name} could not be resolved ({exc})") from exc
        if not addresses:
            raise LookupError(f"{name} has no address")
    else:
        addresses = [ip]
    for address in addresses:
        why = policy.address_refusal(address)
        if why is not None:
            raise Refused(why if str(address) == name else f"{name} resolves to {address}: {why}")
    if ip is not None and (why := policy.name_refusal(str(ip))) is not None:  # a literal and allowed_domains
        raise Refused(why)
    return addresses


class EgressProxy:
    """One context's SOCKS5 proxy on 127.0.0.1 (see the module docs)."""

    def __init__(self, policy: UrlPolicy, refusals: Refusals, resolve: Resolve = system_resolve) -> None:
        self.policy = policy
        self.refusals = refusals
        self._resolve = resolve
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> str:
        """Listen; returns the proxy server address for ``browser.new_context(proxy=...)``."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return f"socks5://127.0.0.1:{self.port}"

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer), name=f"egress-{self.port}")
        self._conns.add(task)
        task.add_done_callback(self._conns.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                host, port = await self._handshake(reader, writer)
                if host is None:
                    return
                code, up = await self._connect(host, port)
                bound = up[1].get_extra_info("sockname") if up is not None else None
                writer.write(_reply(code, bound))
                await writer.drain()
            if up is None:
                return
            up_reader, upstream = up
            await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            log.debug("egress proxy connection ended: %r", exc)
        finally:
            for w in (upstream, writer):
                if w is not None:
                    w.close()

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[str | None, int]:
        """Read the greeting and the request; returns (host, port), or (None, 0) after refusing the request."""
        version, n = await reader.readexactly(2)
        methods = await reader.readexactly(n)
        if version != 5 or 0 not in methods:
            writer.write(b"\x05\xff")  # no acceptable method
            await writer.drain()
            return None, 0
        writer.write(b"\x05\x00")  # no authentication
        version, command, _, kind = await reader.readexactly(4)
        if kind == 1:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        elif kind == 4:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
        elif kind == 3:
            length = (await reader.readexactly(1))[0]
            host = (await reader.readexactly(length)).decode("ascii", "replace")
        else:
            writer.write(_reply(ADDRESS_TYPE_NOT_SUPPORTED))
            return None, 0
        port = struct.unpack("!H", await reader.readexactly(2))[0]
        if version != 5 or command != 1:  # only CONNECT (no BIND, no UDP ASSOCIATE)
            writer.write(_reply(COMMAND_NOT_SUPPORTED))
            return None, 0
        return host, port

    async def _connect(self, host: str, port: int
                       ) -> tuple[int, tuple[asyncio.StreamReader, asyncio.StreamWriter] | None]:
        """Judge ``host:port`` and connect to a checked address; (reply code, the upstream streams or None)."""
        try:
            addresses = await decide(self.policy, host, port, self._resolve)
        except Refused as exc:
            self.refusals.add(Refusal(host.lower().rstrip("."), port, str(exc)))
            log.info("egress refused %s:%d: %s", host, port, exc)
            return NOT_ALLOWED, None
        except LookupError as exc:
            self.refusals.add(Refusal(host.lower().rstrip("."), port, str(exc), refused=False))
            return HOST_UNREACHABLE, None
        last: OSError | None = None
        for address in addresses:  # each was checked; connect to exactly these (no second lookup)
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    return OK, await asyncio.open_connection(str(address), port, limit=PIPE_CHUNK)
            except (OSError, TimeoutError) as exc:
                last = exc if isinstance(exc, OSError) else OSError(str(exc) or "connect timed out")
        refused = isinstance(last, ConnectionRefusedError)
        why = "the connection was refused" if refused else f"the connection failed ({last})"
        self.refusals.add(Refusal(host.lower().rstrip("."), port, f"{host}:{port}: {why}", refused=False))
        return (CONNECTION_REFUSED if refused else HOST_UNREACHABLE), None

    async def close(self) -> None:
        """Stop listening and end every connection (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        if server is not None:
            await server.wait_closed()


def _reply(code: int, bound: tuple[str, int] | tuple[str, int, int, int] | None = None) -> bytes:
    if bound is None:
        return bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0])
    ip = ipaddress.ip_address(bound[0])
    kind = 1 if ip.version == 4 else 4
    return bytes([5, code, 0, kind]) + ip.packed + struct.pack("!H", bound[1])


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close (the other direction may still be talking)."""
    try:
        while data := await reader.read(PIPE_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()


class Egress:
    """The worker's egress proxies, one per open context (see the module docs)."""

    def __init__(self, policy: UrlPolicy, resolve: Resolve = system_resolve) -> None:
        self.policy = policy
        self._resolve = resolve
        self._proxies: dict[BrowserContext, EgressProxy] = {}
        self._closing: set[asyncio.Task[None]] = set()

    async def open(self) -> tuple[EgressProxy, str]:
        """A started proxy for a context about to be created, and its server address."""
        proxy = EgressProxy(self.policy, Refusals(), self._resolve)
        return proxy, await proxy.start()

    def attach(self, context: BrowserContext, proxy: EgressProxy) -> None:
        """Tie ``proxy`` to ``context``: it is closed when the context closes."""
        self._proxies[context] = proxy
        context.once("close", lambda _: self._closed(context))

    def refusals(self, context: BrowserContext) -> Refusals | None:
        proxy = self._proxies.get(context)
        return proxy.refusals if proxy is not None else None

    def _closed(self, context: BrowserContext) -> None:
        proxy = self._proxies.pop(context, None)
        if proxy is not None:
            task = asyncio.create_task(proxy.close(), name="egress-close")
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close every proxy (worker shutdown) and wait for those already closing."""
        proxies, self._proxies = list(self._proxies.values()), {}
        await asyncio.gather(*(p.close() for p in proxies), *self._closing, return_exceptions=True)

    @property
    def open_count(self) -> int:
        return len(self._proxies)
