"""Where the agent's browser may go: allowed domains and the addresses it must never reach.

Every request of every context passes ``UrlPolicy.refusal``: only http(s) (and
about:blank) is allowed; link-local and cloud-metadata addresses (169.254.0.0/16,
fe80::/10, metadata.google.internal, ...) are refused unless
``settings.allow_link_local``; loopback only with ``settings.allow_loopback``; and
with ``constraints.allowed_domains`` set, only those domains and their subdomains.
IPv4-mapped IPv6 literals are judged as the IPv4 address they carry, and the
unspecified addresses (``0.0.0.0``, ``::``) as loopback. Host names are judged as
written (no DNS lookup), so a name that resolves to a refused address is not caught here.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from playwright.async_api import BrowserContext, Route

from ..config import Config

METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"}


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host literal names; an IPv4-mapped IPv6 address (``::ffff:a9fe:a9fe``) as its IPv4."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class UrlPolicy:
    def __init__(self, allowed_domains: list[str] | None, allow_loopback: bool, allow_link_local: bool) -> None:
        self.allowed = [d.lower().removeprefix("*.").strip(".") for d in allowed_domains] if allowed_domains else None
        self.allow_loopback = allow_loopback
        self.allow_link_local = allow_link_local

    @classmethod
    def from_config(cls, config: Config) -> UrlPolicy:
        s = config.settings
        return cls(config.constraints.allowed_domains, s.allow_loopback, s.allow_link_local)

    def refusal(self, url: str) -> str | None:
        """Why ``url`` may not be loaded, or None when it may."""
        if url in ("about:blank", "about:srcdoc") or url.startswith("data:"):
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            return f"the {parts.scheme or 'empty'} scheme is not allowed (only http and https)"
        host = (parts.hostname or "").lower()
        ip = _ip(host)
        if not self.allow_link_local and (host in METADATA_HOSTS or (ip is not None and ip.is_link_local)
                                          or host == "fd00:ec2::254"):
            return f"{host} is a link-local or cloud-metadata address (settings.allow_link_local)"
        # 0.0.0.0 and :: reach this machine too (Linux connects them to loopback).
        is_loopback = host == "localhost" or host.endswith(".localhost") or (
            ip is not None and (ip.is_loopback or ip.is_unspecified))
        if is_loopback and not self.allow_loopback:
            return f"{host} is a loopback address (settings.allow_loopback)"
        if self.allowed is not None and not any(host == d or host.endswith("." + d) for d in self.allowed):
            return f"{host} is not in constraints.allowed_domains"
        return None


async def install(context: BrowserContext, policy: UrlPolicy) -> None:
    """Abort every request (page, frame, image, fetch, ...) the policy refuses."""

    async def handle(route: Route) -> None:
        if policy.refusal(route.request.url) is None:
            await route.fallback()
        else:
            await route.abort("blockedbyclient")

    await context.route("**/*", handle)
