"""API keys and the body limit, on a second gateway started with ``api_keys`` and a 64 KiB limit."""

from __future__ import annotations

from typing import Iterator

import httpx
import openai
import pytest

from blast_grpc.demo_site.facts import GORILLAS
from blast_grpc.demo_site.server import DemoSite

from .conftest import API_KEY, SMALL_BODY_LIMIT, Gateway, gorilla_task

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
