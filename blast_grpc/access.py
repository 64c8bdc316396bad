"""Who may call the engine: API keys from config and environment, and whether a bind is local.

Every server (the coordinator's gRPC port, the REST gateway and the Prometheus
``/metrics`` port) accepts the keys in ``settings.api_keys`` plus the comma-separated
``BLAST_API_KEYS`` environment variable, and warns at start-up when it listens beyond
loopback without any key. The HTTP servers take ``Authorization: Bearer <key>``
(``bearer_allowed``).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from typing import Iterable, Mapping

API_KEYS_ENV = "BLAST_API_KEYS"


def api_keys(configured: Iterable[str], environ: Mapping[str, str] = os.environ) -> list[str]:
    """``settings.api_keys`` and ``BLAST_API_KEYS``: stripped, without empty ones or repeats."""
    keys: list[str] = []
    for key in [*configured, *environ.get(API_KEYS_ENV, "").split(",")]:
        key = key.strip()
        if key and key not in keys:
            keys.append(key)
    return keys


IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def unmapped(ip: IP) -> IP:
    """An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) as the IPv4 address it is, so every
    check of an address (loopback, link-local, private) sees it as what it reaches."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_loopback(host: str) -> bool:
    """Whether a host name or bound address is reachable from this machine only
    (``localhost``, 127.0.0.0/8, ``::1``, IPv4-mapped loopback; "" and ``0.0.0.0`` are not)."""
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return False
    return unmapped(ip).is_loopback


def bearer_allowed(header: bytes, keys: Iterable[bytes]) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer <one of keys>``.

    Every key is compared in constant time, with no early exit, so timing does not tell
    which key (or how much of one) matched."""
    scheme, _, token = header.partition(b" ")
    token = token.strip()
    if scheme.lower() != b"bearer" or not token:
        return False
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(token, key)
    return matched
