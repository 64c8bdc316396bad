"""API keys from config and environment, and which binds count as local."""

from __future__ import annotations

import pytest

from blast_grpc.access import api_keys, is_loopback


def test_keys_merge_config_and_env_without_blanks_or_repeats() -> None:
    env = {"BLAST_API_KEYS": " sk-b , ,sk-a,sk-c "}
    assert api_keys(["sk-a", " ", "sk-b"], env) == ["sk-a", "sk-b", "sk-c"]
    assert api_keys([], {}) == []


@pytest.mark.parametrize("host, local", [
    ("localhost", True), ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
    ("::ffff:127.0.0.1", True), ("fe80::1%eth0", False), ("0.0.0.0", False), ("::", False), ("", False),
    ("10.0.0.5", False), ("example.com", False),
])
def test_is_loopback(host: str, local: bool) -> None:
    assert is_loopback(host) is local
