"""The navigation policy judges every URL a task's browser requests (no browser needed here)."""

from __future__ import annotations

import pytest

from blast_grpc.worker.navigation import UrlPolicy

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
])
def test_refused_by_default(url: str, why: str) -> None:
    refusal = STRICT.refusal(url)
    assert refusal is not None and why in refusal, (url, refusal)


@pytest.mark.parametrize("url", ["https://example.com/", "http://10.1.2.3/", "about:blank", "data:text/html,hi"])
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
