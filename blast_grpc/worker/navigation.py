"""Where the agent's browser may go: allowed domains and the addresses it must never reach.

The policy is enforced at two points, because neither sees everything:

* ``install`` puts a route handler on every context: each request the page makes is
  judged by ``UrlPolicy.refusal`` on its URL (only http(s), about:blank and data:;
  host names and literals as written). Playwright's route handler sees only the
  first URL of a request, never its redirect hops, and judges host strings.
* ``egress.EgressProxy`` (one SOCKS5 proxy per context, which Chromium sends every
  connection through, every redirect hop and WebSocket included) judges what the
  browser will actually connect to: the name by ``name_refusal`` (metadata names,
  ``allowed_domains``), then every address the name resolves to by
  ``address_refusal``; it connects to the very address it checked.

Refused addresses: link-local and cloud metadata (169.254.0.0/16, fe80::/10,
fd00:ec2::254, metadata.google.internal, ...) unless ``settings.allow_link_local``;
loopback (127.0.0.0/8, ::1, and the unspecified 0.0.0.0/8 and ::, which Linux
connects to this machine) unless ``settings.allow_loopback``; private ranges
(10/8, 172.16/12, 192.168/16, 100.64/10 and fc00::/7) unless
``settings.allow_private_networks``; multicast and broadcast always. An IPv4-mapped
IPv6 address is judged as the IPv4 address it carries. A host written the way a
browser reads numbers (``0x7f000001``, ``2130706433``, ``127.1``, ``0177.0.0.1``)
is judged as the address the browser makes of it (the WHATWG URL standard's IPv4
parser), so the model is told why before anything is requested.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from playwright.async_api import BrowserContext, Route

from ..access import IP, unmapped
from ..config import Config

METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"}
METADATA_ADDRESSES = {ipaddress.ip_address("fd00:ec2::254")}  # AWS's IPv6 metadata address
PRIVATE_NETWORKS = [ipaddress.ip_network(n) for n in
                    ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")]
THIS_HOST = ipaddress.ip_network("0.0.0.0/8")  # "this network": Linux connects 0.x.x.x to this machine
BROADCAST = ipaddress.ip_address("255.255.255.255")


def _whatwg_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a browser makes of ``host`` (WHATWG URL "IPv4 parser"), or None if it is a name.

    Each dot-separated part is decimal, octal (leading 0) or hex (0x); the last part fills
    the remaining bytes: ``127.1`` is 127.0.0.1 and ``2130706433`` is 127.0.0.1.
    """
    parts = host.split(".")
    if parts and parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for p in parts:
        base = 10
        if p[:2].lower() == "0x":
            base, p = 16, p[2:]
        elif len(p) > 1 and p.startswith("0"):
            base, p = 8, p[1:]
        try:
            numbers.append(int(p, base) if p else 0)
        except ValueError:
            return None
        if not p and base != 16:
            return None
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        return None
    value = numbers[-1]
    for i, n in enumerate(numbers[:-1]):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def host_ip(host: str) -> IP | None:
    """The address a host literal names (as a browser reads it), or None for a name.

    An IPv4-mapped IPv6 address (``::ffff:a9fe:a9fe``) comes back as its IPv4 address.
    """
    host = host.strip("[]")
    try:
        ip: IP = ipaddress.ip_address(host)
    except ValueError:
        if not host or not (host[0].isdigit()):
            return None
        v4 = _whatwg_ipv4(host)
        if v4 is None:
            return None
        ip = v4
    return unmapped(ip)


class UrlPolicy:
    def __init__(self, allowed_domains: list[str] | None, allow_loopback: bool, allow_link_local: bool,
                 allow_private_networks: bool = False) -> None:
        self.allowed = [d.lower().removeprefix("*.").strip(".") for d in allowed_domains] if allowed_domains else None
        self.allow_loopback = allow_loopback
        self.allow_link_local = allow_link_local
        self.allow_private_networks = allow_private_networks

    @classmethod
    def from_config(cls, config: Config) -> UrlPolicy:
        s = config.settings
        return cls(config.constraints.allowed_domains, s.allow_loopback, s.allow_link_local,
                   s.allow_private_networks)

    def refusal(self, url: str) -> str | None:
        """Why ``url`` may not be loaded, or None when it may (judged on the URL as written)."""
        if url in ("about:blank", "about:srcdoc") or url.startswith("data:"):
            return None
        try:
            parts = urlsplit(url)
            hostname = parts.hostname
        except ValueError as exc:  # e.g. "http://[::1" (an unclosed IPv6 literal)
            return f"it is not a valid URL ({exc})"
        if parts.scheme not in ("http", "https"):
            return f"the {parts.scheme or 'empty'} scheme is not allowed (only http and https)"
        host = (hostname or "").lower()
        ip = host_ip(host)
        if ip is not None:
            why = self.address_refusal(ip)
            if why is not None:
                return why if str(ip) == host else f"{host} is {ip}: {why}"
        return self.name_refusal(host)

    def name_refusal(self, host: str) -> str | None:
        """Why a host name (or literal, as written) is refused before any lookup, or None."""
        host = host.lower().rstrip(".")
        if not self.allow_link_local and (host in METADATA_HOSTS or host.endswith(".metadata.google.internal")):
            return f"{host} is a link-local or cloud-metadata address (settings.allow_link_local)"
        if not self.allow_loopback and (host == "localhost" or host.endswith(".localhost")):
            return f"{host} is a loopback address (settings.allow_loopback)"
        if self.allowed is not None and not any(host == d or host.endswith("." + d) for d in self.allowed):
            return f"{host} is not in constraints.allowed_domains"
        return None

    def address_refusal(self, ip: IP) -> str | None:
        """Why connecting to ``ip`` is refused, or None when it may be reached."""
        ip = unmapped(ip)
        if not self.allow_link_local and (ip.is_link_local or ip in METADATA_ADDRESSES):
            return f"{ip} is a link-local or cloud-metadata address (settings.allow_link_local)"
        if not self.allow_loopback and (ip.is_loopback or ip.is_unspecified or ip in THIS_HOST):
            return f"{ip} is a loopback address (settings.allow_loopback)"
        if not self.allow_private_networks and any(ip in n for n in PRIVATE_NETWORKS):
            return f"{ip} is a private network address (settings.allow_private_networks)"
        if ip.is_multicast or ip == BROADCAST:
            return f"{ip} is a multicast or broadcast address"
        return None


@dataclass
class Refusal:
    """One thing the policy refused in a context: a URL (route handler) or a host:port (egress proxy).

    The proxy also records what it could not connect to: behind a proxy Chromium reports any
    failed connection as ``ERR_SOCKS_CONNECTION_FAILED``, so the reason is kept here too.
    """

    host: str  # lower-case, as the browser wrote it (no brackets, no trailing dot)
    port: int | None  # None: refused by URL, before a connection was tried
    reason: str
    url: str = ""
    refused: bool = True  # False: allowed, but the proxy could not connect (no such name, connection refused)


@dataclass
class Refusals:
    """What the policy refused in one context, for telling the model why a request failed.

    Written by the route handler and the context's egress proxy, read by the task's
    ``PageGuard`` when Chromium reports a failed request; bounded (oldest dropped).
    """

    limit: int = 256
    items: list[Refusal] = field(default_factory=list)

    def add(self, refusal: Refusal) -> None:
        self.items.append(refusal)
        del self.items[:-self.limit]

    def match(self, url: str) -> Refusal | None:
        """The latest refusal of ``url`` or of its host and port, or None."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").rstrip(".")
            port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
        except ValueError:
            return None
        for r in reversed(self.items):
            if r.url == url if r.port is None else (r.host == host and r.port == port):
                return r
        return None


async def install(context: BrowserContext, policy: UrlPolicy, refusals: Refusals | None = None,
                  blocked_types: frozenset[str] = frozenset()) -> None:
    """Abort every request (page, frame, image, fetch, ...) the policy refuses by its URL, and every
    request of a resource type in ``blocked_types`` (``resources.py``: images, media, fonts)."""

    async def handle(route: Route) -> None:
        if blocked_types and route.request.resource_type in blocked_types:
            await route.abort("blockedbyclient")
            return
        url = route.request.url
        why = policy.refusal(url)
        if why is None:
            await route.fallback()
            return
        if refusals is not None:
            try:
                host = (urlsplit(url).hostname or "").rstrip(".")
            except ValueError:
                host = ""
            refusals.add(Refusal(host, None, why, url))
        await route.abort("blockedbyclient")

    await context.route("**/*", handle)
