"""Bad requests get the right status and an OpenAI-shaped error, and the gateway keeps serving."""

from __future__ import annotations

import httpx
import openai
import pytest

from .conftest import error_body, still_serving

MODEL = "gpt-4.1"


def test_malformed_json(base_url: str, oai: openai.OpenAI) -> None:
    r = httpx.post(f"{base_url}/responses", content=b'{"model": "x", "input": ', timeout=10,
                   headers={"content-type": "application/json"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == "invalid_json"
    assert "JSON" in err["message"]
    r = httpx.post(f"{base_url}/chat/completions", json=["not", "an", "object"], timeout=10)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    still_serving(oai)


def test_wrong_types(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        oai.responses.create(model=MODEL, input=12345)  # type: ignore[arg-type]
    body = error_body(e.value)
    assert body["param"] == "input" and body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as e:
        oai.responses.create(model=MODEL, input="find it", extra_body={"background": "yes"})
    body = error_body(e.value)
    assert body["param"] == "background" and "boolean" in body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model=MODEL, messages="find it")  # type: ignore[arg-type]
    assert error_body(e.value)["param"] == "messages"
    still_serving(oai)


def test_missing_and_unknown_parameters(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        oai.responses.create(model=MODEL)
    body = error_body(e.value)
    assert body["param"] == "input" and body["code"] == "missing_required_parameter"
    assert "'input'" in body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        oai.responses.create(model=MODEL, input="find it", extra_body={"inptu": "typo"})
    body = error_body(e.value)
    assert body["param"] == "inptu" and body["code"] == "unknown_parameter"
    still_serving(oai)


def test_unsupported_input_is_named(oai: openai.OpenAI) -> None:
    image = {"role": "user", "content": [{"type": "input_image", "image_url": "http://x/y.png"}]}
    with pytest.raises(openai.BadRequestError) as e:
        oai.responses.create(model=MODEL, input=[image])  # type: ignore[list-item]
    assert error_body(e.value)["param"] == "input[0].content[0].type"
    with pytest.raises(openai.BadRequestError) as e:
        oai.responses.create(model=MODEL, input=[{"role": "assistant", "content": "hello"}])
    assert "user message" in error_body(e.value)["message"]
    with pytest.raises(openai.BadRequestError) as e:
        oai.responses.create(model=MODEL, input="find it",
                             tools=[{"type": "function", "name": "f", "parameters": {}, "strict": False}])
    assert error_body(e.value)["param"] == "tools"
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "find it"}], n=2)
    assert error_body(e.value)["param"] == "n"
    still_serving(oai)


def test_unknown_response_id(oai: openai.OpenAI) -> None:
    for call in (oai.responses.retrieve, oai.responses.cancel, oai.responses.delete):
        with pytest.raises(openai.NotFoundError) as e:
            call("resp_task_doesnotexist")
        body = error_body(e.value)
        assert body["param"] == "response_id" and "resp_task_doesnotexist" in body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        oai.responses.create(model=MODEL, input="And then?", previous_response_id="resp_task_doesnotexist")
    assert error_body(e.value)["param"] == "previous_response_id"
    still_serving(oai)


def test_two_megabyte_input(oai: openai.OpenAI) -> None:
    # 2 MB is under the gateway's body limit (4 MiB), so it reaches the coordinator, which
    # refuses a description over settings.max_task_chars: a 400 that names the limit.
    with pytest.raises(openai.BadRequestError) as e:
        oai.responses.create(model=MODEL, input="x" * 2_000_000)
    body = error_body(e.value)
    assert body["param"] == "input" and "max_task_chars" in body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x" * 2_000_000}])
    assert error_body(e.value)["param"] == "messages"
    still_serving(oai)


def test_unknown_url_and_method(base_url: str, oai: openai.OpenAI) -> None:
    r = httpx.get(f"{base_url}/no/such/thing", timeout=10)
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"
    r = httpx.put(f"{base_url}/responses", json={}, timeout=10)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    # The cancel URL takes POST only; an id with a slash is an unknown id, not an unknown URL.
    for method in ("GET", "DELETE"):
        r = httpx.request(method, f"{base_url}/responses/resp_x/cancel", timeout=10)
        assert r.status_code == 405 and "POST" in r.json()["error"]["message"], r.text
    r = httpx.get(f"{base_url}/responses/resp_a%2Fb", timeout=10)
    assert r.status_code == 404 and r.json()["error"]["param"] == "response_id", r.text
    still_serving(oai)
