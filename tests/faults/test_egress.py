"""The URL policy holds for every hop and every name, against engines with the default policy.

The allowed site (``egress_site.py``) runs in a network namespace created here, reached
over a veth pair at a non-loopback, non-private address (198.18.0.0/15, the benchmarking
range), so the engine under test keeps ``allow_loopback: false``; the namespace also
holds a private address (10.254.x.x) for ``allow_private_networks``. The forbidden
targets are real servers on this machine's loopback (127.0.0.1 and ::1) whose pages
carry a marker: a test proves both that the model was told why ("refused to open URL:
reason") and that the forbidden server was never even connected to (its access log),
so its text cannot have reached the model. The simulated model says LEAK if it is ever
shown a forbidden page (scenario ``egress-probe``).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import AsyncIterator, Iterator
from urllib.parse import quote

import httpx
import pytest
import pytest_asyncio

from blast_grpc import Engine
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.procutil import stop_process, wait_ready_file

from ..conftest import Sim, engine_overrides
from .conftest import collect, final, steps, wait_for

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]

HERE = Path(__file__).resolve().parent


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@dataclass
class Namespace:
    site: str  # http://198.18.x.2:PORT, the allowed site
    private: str  # http://10.254.x.2:PORT, the same server at a private address
    host_side: Forbidden  # a server at this machine's end of the veth: neither loopback nor private

    def log(self) -> list[str]:
        return list(httpx.get(f"{self.site}/_log", timeout=30).json())


@pytest.fixture(scope="module")
def netns() -> Iterator[Namespace]:
    """A network namespace with the allowed site in it, joined to this one by a veth pair."""
    k = os.getpid() % 16384  # a /30 of 198.18.0.0/16 and an address of 10.254.0.0/16 of our own
    net = f"198.18.{k // 64}.{(k % 64) * 4}"
    base = net.rsplit(".", 1)[0] + "."
    last = int(net.rsplit(".", 1)[1])
    host_ip, ns_ip, private_ip = f"{base}{last + 1}", f"{base}{last + 2}", f"10.254.{k // 256}.{k % 256}"
    name, here, there = f"blast-egress-{os.getpid()}", f"egh{k}", f"egn{k}"
    _ip("netns", "add", name)
    try:
        _ip("link", "add", here, "type", "veth", "peer", "name", there)
        _ip("link", "set", there, "netns", name)
        _ip("addr", "add", f"{host_ip}/30", "dev", here)
        _ip("link", "set", here, "up")
        _ip("-n", name, "addr", "add", f"{ns_ip}/30", "dev", there)
        _ip("-n", name, "addr", "add", f"{private_ip}/32", "dev", there)
        _ip("-n", name, "link", "set", there, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("route", "add", f"{private_ip}/32", "via", ns_ip)
        with tempfile.TemporaryDirectory() as d:
            ready = Path(d) / "site.json"
            proc = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, str(HERE / "egress_site.py"),
                                     "--ready-file", str(ready)], start_new_session=True)
            try:
                port = wait_ready_file(ready, proc, what="the egress site")["port"]
                host_side = Forbidden(host_ip)
                try:
                    yield Namespace(f"http://{ns_ip}:{port}", f"http://{private_ip}:{port}", host_side)
                finally:
                    host_side.stop()
            finally:
                stop_process(proc)
    finally:
        subprocess.run(["ip", "link", "del", here], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


class _SecretHandler(BaseHTTPRequestHandler):
    """A forbidden server: every page carries the server's marker; every request is logged."""

    marker = ""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        body = f"<html><title>secret</title><body>{self.server.marker}</body></html>".encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return


class Forbidden(ThreadingHTTPServer):
    """A server the browser must never reach (on loopback); its pages say EGRESS-SECRET-<hex>."""

    def __init__(self, host: str) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, 0), _SecretHandler)
        self.hits: list[str] = []
        self.marker = f"EGRESS-SECRET-{secrets.token_hex(6)}"
        self.host = f"[{host}]" if ":" in host else host
        self.port = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    def url(self, host: str | None = None, path: str = "/secret") -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture(scope="module")
def v4() -> Iterator[Forbidden]:
    s = Forbidden("127.0.0.1")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def v6() -> Iterator[Forbidden]:
    s = Forbidden("::1")
    yield s
    s.stop()


def loopback_name() -> str:
    """A host name this machine's resolver maps to loopback other than ``localhost``, from /etc/hosts.

    Debian lists ``ip6-localhost`` / ``ip6-loopback`` (::1); containers often add their own
    host name at 127.0.0.1. The engine has to find out by resolving it.
    """
    for line in Path("/etc/hosts").read_text(encoding="utf-8").splitlines():
        fields = line.split("#")[0].split()
        if len(fields) >= 2 and (fields[0].startswith("127.") or fields[0] == "::1"):
            names = [n for n in fields[1:] if n != "localhost" and not n.endswith(".localhost")]
            if names:
                return names[0]
    raise AssertionError("/etc/hosts names no loopback host other than localhost; this test needs one")


@pytest_asyncio.fixture(scope="module")
async def strict_policy(sim: Sim) -> AsyncIterator[Engine]:
    """An engine with the default policy: no loopback, no link-local, no private networks."""
    eng = await Engine.create(overrides=engine_overrides(sim, workers=1, allow_loopback=False))
    try:
        yield eng
    finally:
        await eng.stop()


def redirect(ns: Namespace, to: str, status: int = 302, via: str = "redirect") -> str:
    return f"{ns.site}/{via}?status={status}&to={quote(to, safe='')}"


def everything_told(events: list[pb.TaskEvent]) -> str:
    """All the engine told the model, as the step events carry it (results, notes, answer)."""
    return "\n".join(f"{s.result}\n{s.detail}" for s in steps(events)) + "\n" + str(final(events))


async def probe(eng: Engine, url: str) -> tuple[list[pb.TaskEvent], str]:
    events = await collect(eng.client, f"Probe {url} for egress")
    done = final(events)
    assert done.HasField("completed") and done.completed.success, [str(e) for e in events[-3:]]
    return events, everything_told(events)


def told_refused(told: str, target: str, reason: str) -> None:
    lines = [ln for ln in told.splitlines() if "refused to open" in ln]
    assert any(target in ln and reason in ln for ln in lines), (target, reason, told)


@pytest.mark.parametrize(("status", "server", "reason"), [
    (302, "v4", "127.0.0.1 is a loopback address (settings.allow_loopback)"),
    (307, "v6", "::1 is a loopback address (settings.allow_loopback)"),
])
async def test_a_redirect_to_loopback_is_refused_and_explained(strict_policy: Engine, netns: Namespace,
                                                               v4: Forbidden, v6: Forbidden, status: int,
                                                               server: str, reason: str) -> None:
    target = v4 if server == "v4" else v6
    start = redirect(netns, target.url(), status)
    events, told = await probe(strict_policy, start)
    first = steps(events)[0]
    assert first.result == f"Error: refused to open {target.url()} (redirected from {start}): {reason}", first.result
    assert target.hits == [] and target.marker not in told  # never connected: nothing of it reached the model
    assert f"/redirect?status={status}&to={quote(target.url(), safe='')}" in netns.log()  # the hop was served


async def test_a_redirect_to_the_metadata_address_is_refused(strict_policy: Engine, netns: Namespace) -> None:
    target = "http://169.254.169.254/latest/meta-data/"
    events, told = await probe(strict_policy, redirect(netns, target))
    assert steps(events)[0].result.startswith(f"Error: refused to open {target} (redirected from ")
    told_refused(told, target, "169.254.169.254 is a link-local or cloud-metadata address")


@pytest.mark.parametrize("via", ["js", "meta"])
async def test_a_pages_own_navigation_to_a_redirect_is_refused_and_noted(strict_policy: Engine, netns: Namespace,
                                                                         v4: Forbidden, v6: Forbidden,
                                                                         via: str) -> None:
    target = v4 if via == "js" else v6
    hop = redirect(netns, target.url())
    events, told = await probe(strict_policy, f"{netns.site}/{via}?to={quote(hop, safe='')}")
    assert steps(events)[0].result.startswith(f"Opened {netns.site}/{via}?")  # the page itself was allowed
    # Said as a note of a later step (the page navigated on its own, after the action).
    told_refused(told, f"{target.url()} (redirected from {hop})", "is a loopback address (settings.allow_loopback)")
    assert target.hits == [] and target.marker not in told
    assert any(p.startswith("/redirect?") for p in netns.log())  # the page really went for it


@pytest.mark.parametrize("how", ["direct", "redirect"])
async def test_names_are_judged_by_the_address_they_resolve_to(strict_policy: Engine, netns: Namespace,
                                                               v4: Forbidden, how: str) -> None:
    name = loopback_name()
    for host, reason in [("localhost.", "localhost is a loopback address"),
                         (name, f"{name} resolves to "), ("LOCALHOST", "localhost is a loopback address")]:
        target = v4.url(host)
        start = target if how == "direct" else redirect(netns, target)
        events, told = await probe(strict_policy, start)
        result = steps(events)[0].result
        assert result.startswith("Error: refused to open ") and reason in result, (host, result)
        assert "is a loopback address" in result
    assert v4.hits == []


async def test_numbers_a_browser_reads_as_loopback_say_why(strict_policy: Engine, netns: Namespace,
                                                            v4: Forbidden) -> None:
    for host in ("0x7f000001", "2130706433", "127.1"):
        events, _ = await probe(strict_policy, v4.url(host))
        assert steps(events)[0].result == (f"Error: refused to open {v4.url(host)}: {host} is 127.0.0.1: "
                                           "127.0.0.1 is a loopback address (settings.allow_loopback)")
    # Through a redirect, Chromium writes the address out before the proxy sees it.
    events, told = await probe(strict_policy, redirect(netns, v4.url("2130706433")))
    told_refused(told, v4.url(), "127.0.0.1 is a loopback address")
    assert "ERR_BLOCKED_BY_CLIENT" not in told and "ERR_SOCKS" not in told
    assert v4.hits == []


async def test_an_allowed_address_that_refuses_the_connection_says_so(strict_policy: Engine,
                                                                       netns: Namespace) -> None:
    address, port = netns.site.rsplit(":", 1)
    target = f"{address}:{8082 if port == '8081' else 8081}/"  # only the site listens in the namespace
    events, _ = await probe(strict_policy, target)
    result = steps(events)[0].result
    assert result.startswith(f"Error: could not open {target}: ") and "the connection was refused" in result, result


async def test_a_private_address_is_refused_by_default(strict_policy: Engine, netns: Namespace) -> None:
    target = f"{netns.private}/private"
    events, told = await probe(strict_policy, redirect(netns, target))
    told_refused(told, target, "is a private network address (settings.allow_private_networks)")
    assert "/private" not in netns.log() and "PRIVATE-NETWORK-PAGE" not in told


async def test_a_websocket_to_loopback_goes_through_the_proxy_and_is_refused(strict_policy: Engine,
                                                                             netns: Namespace,
                                                                             v4: Forbidden) -> None:
    ws = f"ws://{v4.host}:{v4.port}/socket"
    await probe(strict_policy, f"{netns.site}/ws?to={quote(ws, safe='')}")

    async def told() -> list[str]:
        return [p for p in netns.log() if p.startswith("/ws_result")]

    assert await wait_for(told, "the page to report its WebSocket's fate") == ["/ws_result?state=error"]
    assert v4.hits == []


@pytest_asyncio.fixture(scope="module")
async def open_policy(sim: Sim, netns: Namespace) -> AsyncIterator[Engine]:
    """Private networks allowed, but only the namespace's site by ``allowed_domains`` (and localhost)."""
    allowed = [netns.site.split("//")[1].split(":")[0], netns.private.split("//")[1].split(":")[0], "localhost"]
    eng = await Engine.create(overrides=engine_overrides(sim, {"allowed_domains": allowed}, workers=1,
                                                         allow_loopback=False, allow_private_networks=True))
    try:
        yield eng
    finally:
        await eng.stop()


async def test_with_allowed_domains_and_private_networks(open_policy: Engine, netns: Namespace,
                                                         v4: Forbidden) -> None:
    # allow_private_networks opens the private address (it is in allowed_domains too).
    events = await collect(open_policy.client, f"Probe {redirect(netns, netns.private + '/private')} for egress")
    done = final(events)
    assert done.HasField("completed") and "LEAK: I was shown" in done.completed.result  # reached, as configured
    assert "/private" in netns.log()
    # A hop to loopback is still refused, also by a name allowed_domains lists.
    for target, reason in [(v4.url(), "127.0.0.1 is a loopback address"),
                           (v4.url("localhost"), "localhost is a loopback address")]:
        events, told = await probe(open_policy, redirect(netns, target, 307))
        told_refused(told, target, reason)
    # A hop to an address outside allowed_domains (this machine's end of the veth) is refused by name.
    target = netns.host_side.url()
    events, told = await probe(open_policy, redirect(netns, target))
    told_refused(told, target, "is not in constraints.allowed_domains")
    assert v4.hits == [] and netns.host_side.hits == []
