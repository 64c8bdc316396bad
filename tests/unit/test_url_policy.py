"""The navigation policy judges every URL a task's browser requests and every address it connects to.

No browser here: ``refusal`` on URLs as written, ``name_refusal`` / ``address_refusal`` as
the egress proxy uses them, and ``Refusals.match`` (how a failed request finds its reason).
"""

from __future__ import annotations

import ipaddress

import pytest

from blast_grpc.worker.navigation import Refusal, Refusals, UrlPolicy, host_ip

STRICT = UrlPolicy(None, allow_loopback=False, allow_link_local=False)


@pytest.mark.parametrize("url, why", [
    ("file:///etc/passwd", "file scheme"),
    ("chrome://settings", "chrome scheme"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[::ffff:a9fe:a9fe]/latest/meta-data/", "link-local"),  # 169.254.169.254, IPv4-mapped
    ("http://metadata.google.internal/computeMetadata/v1/", "cloud-metadata"),
    ("http://[fe80::1]/", "link-local"),
    ("http://127.0.0.1:8080/", "loopback"),
    ("http://[::ffff:7f00:1]/", "loopback"),  # 127.0.0.1, IPv4-mapped
    ("http://0.0.0.0:8080/", "loopback"),  # Linux connects the unspecified address to this machine
    ("http://[::]:8080/", "loopback"),
    ("http://app.localhost/", "loopback"),
    ("http://localhost./", "loopback"),  # the trailing dot names the same host
    ("http://0x7f000001/", "127.0.0.1 is a loopback"),  # how the browser reads these numbers
    ("http://2130706433/", "127.0.0.1 is a loopback"),
    ("http://127.1/", "127.0.0.1 is a loopback"),
    ("http://0177.0.0.1/", "127.0.0.1 is a loopback"),
    ("http://0xa9.254.169.254/", "169.254.169.254 is a link-local"),
    ("http://0.1.2.3/", "loopback"),  # 0.0.0.0/8: this host
    ("http://10.1.2.3/", "private network"),
    ("http://172.20.0.1/", "private network"),
    ("http://192.168.1.1/", "private network"),
    ("http://100.64.0.1/", "private network"),  # carrier-grade NAT
    ("http://[fd00::1]/", "private network"),
    ("http://[fd00:ec2::254]/", "cloud-metadata"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[::1/", "not a valid URL"),
])
def test_refused_by_default(url: str, why: str) -> None:
    refusal = STRICT.refusal(url)
    assert refusal is not None and why in refusal, (url, refusal)


@pytest.mark.parametrize("url", ["https://example.com/", "http://192.0.2.1/", "about:blank", "data:text/html,hi",
                                 "http://1.example/", "http://0x7f000001.example/", "http://172.32.0.1/"])
def test_allowed_by_default(url: str) -> None:
    assert STRICT.refusal(url) is None


def test_switches_and_allowed_domains() -> None:
    local = UrlPolicy(None, allow_loopback=True, allow_link_local=True)
    assert local.refusal("http://127.0.0.1/") is None and local.refusal("http://169.254.169.254/") is None
    assert local.refusal("file:///etc/passwd") is not None  # schemes are never switched on
    only = UrlPolicy(["*.example.com"], allow_loopback=False, allow_link_local=False)
    assert only.refusal("https://example.com/a") is None and only.refusal("https://docs.example.com/") is None
    assert "allowed_domains" in (only.refusal("https://example.org/") or "")
    assert "allowed_domains" in (only.refusal("https://badexample.com/") or "")


def test_private_networks_switch() -> None:
    private = UrlPolicy(None, allow_loopback=False, allow_link_local=False, allow_private_networks=True)
    assert private.refusal("http://10.1.2.3/") is None and private.refusal("http://[fd12::1]/") is None
    assert "loopback" in (private.refusal("http://127.0.0.1/") or "")  # one switch opens one range


@pytest.mark.parametrize("host, ip", [
    ("0x7f000001", "127.0.0.1"), ("2130706433", "127.0.0.1"), ("127.1", "127.0.0.1"), ("10.0x10.1", "10.16.0.1"),
    ("0300.0250.1.1", "192.168.1.1"), ("[::ffff:7f00:1]", "127.0.0.1"), ("1.2.3.4.", "1.2.3.4"),
    ("example.com", None), ("1.2.3.4.5", None), ("256.1.1.1", None), ("08.1.1.1", None), ("4294967296", None),
])
def test_host_ip_reads_numbers_as_a_browser_does(host: str, ip: str | None) -> None:
    got = host_ip(host)
    assert (str(got) if got is not None else None) == ip


def test_address_and_name_refusals() -> None:
    def refused(ip: str) -> str | None:
        return STRICT.address_refusal(ipaddress.ip_address(ip))

    assert refused("93.184.216.34") is None and refused("2606:2800::1") is None
    assert "loopback" in (refused("::ffff:127.0.0.1") or "") and "loopback" in (refused("::") or "")
    assert "link-local" in (refused("169.254.169.254") or "")
    assert "private network" in (refused("fc00::1") or "")
    assert "broadcast" in (refused("255.255.255.255") or "")
    assert "loopback" in (STRICT.name_refusal("LocalHost.") or "")
    assert "cloud-metadata" in (STRICT.name_refusal("metadata.google.internal.") or "")
    assert STRICT.name_refusal("example.com") is None
    only = UrlPolicy(["example.com"], allow_loopback=True, allow_link_local=False)
    assert "allowed_domains" in (only.name_refusal("evil.test") or "")
    assert only.name_refusal("www.example.com.") is None


def test_refusals_match_a_failed_request_to_its_reason() -> None:
    r = Refusals(limit=3)
    r.add(Refusal("127.0.0.1", 8080, "loopback"))
    r.add(Refusal("ip6-localhost", 443, "resolves to ::1"))
    r.add(Refusal("", None, "file scheme", "file:///etc/passwd"))
    assert (m := r.match("http://127.0.0.1:8080/secret?x=1")) is not None and m.reason == "loopback"
    assert r.match("http://127.0.0.1:8081/") is None  # another port was not refused
    assert (m := r.match("https://IP6-localhost./")) is not None and m.reason == "resolves to ::1"
    assert (m := r.match("file:///etc/passwd")) is not None and m.reason == "file scheme"
    r.add(Refusal("[::1]", 80, "newest"))
    assert r.match("http://127.0.0.1:8080/") is None  # bounded: the oldest was dropped
