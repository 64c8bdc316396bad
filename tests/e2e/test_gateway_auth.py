"""API keys and the body limit, on a second gateway started with ``api_keys`` and a 64 KiB limit."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import httpx
import openai
import pytest

from blast_grpc import Engine
from blast_grpc.demo_site.facts import GORILLAS
from blast_grpc.demo_site.server import DemoSite

from ..conftest import ROOT, stop_process, wait_ready_file
from .conftest import API_KEY, SMALL_BODY_LIMIT, Gateway, gorilla_task, start_gateway

MODEL = "gpt-4.1"


@pytest.fixture
def keyed_url(keyed_gateway: Gateway, api_suffix: str) -> str:
    return keyed_gateway.url + api_suffix


@pytest.fixture
def keyed(keyed_url: str) -> Iterator[openai.OpenAI]:
    """A client with the right key."""
    with openai.OpenAI(base_url=keyed_url, api_key=API_KEY, max_retries=0, timeout=60) as client:
        yield client


def test_a_wrong_key_is_refused(keyed_url: str) -> None:
    wrong = "sk-not-the-right-key"
    with openai.OpenAI(base_url=keyed_url, api_key=wrong, max_retries=0) as oai:
        with pytest.raises(openai.AuthenticationError) as e:
            oai.responses.create(model=MODEL, input="find it")
        body = e.value.body
        assert isinstance(body, dict) and body["code"] == "invalid_api_key" and body["param"] is None
        assert wrong not in body["message"] and API_KEY not in body["message"]
        with pytest.raises(openai.AuthenticationError):
            oai.models.list()
    r = httpx.get(f"{keyed_url}/models", timeout=10)  # no Authorization header at all
    assert r.status_code == 401 and "Authorization" in r.json()["error"]["message"]


def test_the_right_key_works(keyed: openai.OpenAI, site: DemoSite) -> None:
    assert [m.id for m in keyed.models.list()] == ["gpt-4.1", "gpt-4.1-mini"]
    resp = keyed.responses.create(model=MODEL, input=gorilla_task(site, "Asia"))
    assert GORILLAS["Asia"].name in resp.output_text


def test_probes_need_no_key(keyed_gateway: Gateway) -> None:
    assert httpx.get(f"{keyed_gateway.url}/healthz", timeout=10).status_code == 200
    assert httpx.get(f"{keyed_gateway.url}/readyz", timeout=10).status_code == 200


def test_a_body_over_the_limit_is_413(keyed: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as e:
        keyed.responses.create(model=MODEL, input="x" * (SMALL_BODY_LIMIT + 1000))
    assert e.value.status_code == 413
    body = e.value.body
    assert isinstance(body, dict) and body["code"] == "request_too_large"
    assert str(SMALL_BODY_LIMIT) in body["message"] and "max_request_bytes" in body["message"]
    assert keyed.models.list().data  # still serving


def test_keys_from_the_environment_work_and_are_never_logged(engine: Engine, tmp_path: Path) -> None:
    config_key, env_key, other_env_key = "sk-blast-config-5551", "sk-blast-env-7773", "sk-blast-env-other-9"
    wrong = "sk-blast-wrong-4242"
    gw = start_gateway(engine.address, tmp_path, "env-keys", {"api_keys": [config_key]}, log_level="debug",
                       env={"BLAST_API_KEYS": f" {env_key} ,,{other_env_key}, "})
    try:
        url = f"{gw.url}/v1"
        for key in (env_key, other_env_key, config_key):
            with openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=60) as oai:
                assert [m.id for m in oai.models.list()] == ["gpt-4.1", "gpt-4.1-mini"]
                # Past the key check on a POST too: the body is what is wrong (no input), not the key.
                with pytest.raises(openai.BadRequestError) as bad:
                    oai.responses.create(model=MODEL, instructions="x")
                assert isinstance(bad.value.body, dict) and bad.value.body["param"] == "input"
        for key in (wrong, f"{env_key},{other_env_key}", env_key[:-1]):
            with openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=60) as oai:
                with pytest.raises(openai.AuthenticationError) as e:
                    oai.responses.create(model=MODEL, input="find it")
                assert e.value.status_code == 401 and isinstance(e.value.body, dict)
                assert e.value.body["code"] == "invalid_api_key" and key not in e.value.body["message"]
        r = httpx.get(f"{url}/models", headers={"authorization": f"Basic {env_key}"}, timeout=10)
        assert r.status_code == 401
    finally:
        stop_process(gw.proc)
    log = gw.stderr()
    # Debug logging was on (every request is in the access log) and counted the keys ...
    assert "DEBUG" in log and '"GET /v1/models HTTP/1.1" 200' in log
    assert '"POST /v1/responses HTTP/1.1" 400' in log and '"POST /v1/responses HTTP/1.1" 401' in log
    assert "3 API key(s) configured" in log
    # ... yet no key, right or wrong, appears in it.
    for secret in (config_key, env_key, other_env_key, wrong, "sk-blast"):
        assert secret not in log, secret


def test_the_gateway_sends_a_key_to_a_keyed_coordinator(tmp_path: Path) -> None:
    # The coordinator checks the same keys on gRPC: a gateway with keys calls it with its first
    # one; one without keys of its own sends BLAST_API_KEY. (A stand-in coordinator with the real
    # key interceptor: a real engine would start browser workers for nothing.)
    key = "sk-blast-shared-3141"
    ready = tmp_path / "coordinator.json"
    coordinator = subprocess.Popen([sys.executable, "-m", "tests.e2e.keyed_coordinator", "--key", key,
                                    "--ready-file", str(ready)], cwd=ROOT, start_new_session=True)
    try:
        address = str(wait_ready_file(ready, coordinator)["address"])
        with ThreadPoolExecutor(3) as pool:
            starting = [pool.submit(start_gateway, address, tmp_path, "own-key", {"api_keys": [key, "sk-other"]}),
                        pool.submit(start_gateway, address, tmp_path, "env-key", env={"BLAST_API_KEY": key}),
                        pool.submit(start_gateway, address, tmp_path, "no-key")]
            gateways = [s.result() for s in starting]
        own, env, none = gateways
        try:
            for gw, headers in ((own, {"authorization": "Bearer sk-other"}), (env, {})):
                probe = httpx.get(f"{gw.url}/readyz", timeout=10).json()
                assert probe["status"] == "ready", probe
                r = httpx.get(f"{gw.url}/v1/responses/resp_nothing", headers=headers, timeout=10)
                assert r.status_code == 404 and r.json()["error"]["param"] == "response_id", r.text
            # Without a key for it, the coordinator refuses the gateway; that shows, it does not crash.
            r = httpx.get(f"{none.url}/readyz", timeout=10)
            assert r.status_code == 503 and "UNAUTHENTICATED" in r.json()["reason"]
            # The client's request is fine; the gateway's setup is not: a 500 saying so, not a 401.
            r = httpx.get(f"{none.url}/v1/responses/resp_nothing", timeout=10)
            assert r.status_code == 500 and r.json()["error"]["code"] == "engine_auth_failed", r.text
            assert "BLAST_API_KEY" in r.json()["error"]["message"] and r.headers["x-should-retry"] == "false"
        finally:
            for gw in gateways:
                stop_process(gw.proc)
        assert not any(key in gw.stderr() for gw in gateways)
    finally:
        stop_process(coordinator)
