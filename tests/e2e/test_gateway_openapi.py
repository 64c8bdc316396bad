"""The OpenAPI document: the same set of operations as the app's routes, served open at
``/openapi.json`` and ``/v1/openapi.json``, with request bodies from the request models and
the error schema for every error status."""

from __future__ import annotations

import re
from typing import Any

import httpx
import jsonschema_rs
import pytest
import schemathesis
from starlette.routing import BaseRoute, Mount, Route

from gateway.app import create_app, default_models
from gateway.errors import ApiError
from gateway.openapi import document
from gateway.protocol import ChatRequest, ResponsesRequest
from gateway.submission import chat_submission, responses_submission

from .conftest import SMALL_BODY_LIMIT, Gateway

METHODS = {"get", "post", "put", "patch", "delete"}
MODELS = default_models()  # what a gateway with the default config serves


def app_operations(routes: list[BaseRoute], prefix: str = "") -> set[tuple[str, str]]:
    """(METHOD, path) of every route, ``{name:path}`` written ``{name}`` as OpenAPI does;
    the HEAD that Starlette adds to each GET is left out."""
    out: set[tuple[str, str]] = set()
    for r in routes:
        if isinstance(r, Mount):
            out |= app_operations(list(r.routes), prefix + r.path)
        else:
            assert isinstance(r, Route), r
            path = re.sub(r"\{(\w+):\w+\}", r"{\1}", prefix + r.path)
            out |= {(m, path) for m in (r.methods or ()) if m != "HEAD"}
    return out


def doc_operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m.upper(), path) for path, item in doc["paths"].items() for m in item if m in METHODS}


def test_the_document_and_the_routes_are_the_same_set() -> None:
    for keys in ([], ["k"]):
        app = create_app("127.0.0.1:1", api_keys=keys)
        routes = app_operations(list(app.routes))
        doc = document(keys_required=bool(keys), max_request_bytes=4096, models=MODELS)
        assert routes == doc_operations(doc), (routes ^ doc_operations(doc))
        assert ("POST", "/v1/responses") in routes and ("GET", "/healthz") in routes and len(routes) == 21
        ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
        assert len(ids) == len(set(ids)) == 21


def _schema(doc: dict[str, Any], name: str) -> dict[str, Any]:
    schema: dict[str, Any] = doc["components"]["schemas"][name]
    return schema


def test_request_bodies_and_errors_come_from_the_gateways_models() -> None:
    doc = document(keys_required=False, max_request_bytes=4096, models=MODELS)
    for path, model in (("/v1/responses", ResponsesRequest), ("/v1/chat/completions", ChatRequest)):
        ref = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = _schema(doc, ref.rsplit("/", 1)[1])
        assert set(schema["properties"]) == set(model.model_fields)
        assert schema["additionalProperties"] is False
        assert schema["required"] == [next(iter(model.model_fields))]  # input / messages
    error = _schema(doc, "Error")
    detail = _schema(doc, "ErrorDetail")
    assert error["required"] == ["error"] and detail["required"] == ["message", "type", "param", "code"]
    # The body every error is built with satisfies the documented schema.
    body = ApiError(400, "Unknown parameter: 'x'.", param="x", code="unknown_parameter").body()
    resolved = _resolve(error, doc)
    assert jsonschema_rs.is_valid(resolved, body)
    assert not jsonschema_rs.is_valid(resolved, {"error": {"message": "", "type": "x", "param": None, "code": None}})
    # Every error status of every operation is answered with that schema.
    for item in doc["paths"].values():
        for op in item.values():
            for status, resp in op["responses"].items():
                if int(status) >= 400 and not (status == "503" and op["operationId"] in ("readyz", "blastHealth")):
                    assert resp["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def _resolve(schema: Any, doc: dict[str, Any]) -> Any:
    """``schema`` with its ``#/components/schemas/...`` references inlined."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return _resolve(_schema(doc, ref.rsplit("/", 1)[1]), doc)
        return {k: _resolve(v, doc) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_resolve(v, doc) for v in schema]
    return schema


def test_the_document_is_served_without_a_key(keyed_gateway: Gateway, gateway: Gateway) -> None:
    # The keyed gateway needs a key for the API, not for its document, which says so.
    docs = [httpx.get(f"{keyed_gateway.url}{p}/openapi.json", timeout=10) for p in ("", "/v1")]
    assert [r.status_code for r in docs] == [200, 200]
    assert docs[0].headers["content-type"] == "application/json"
    keyed = docs[0].json()
    assert docs[1].json() == keyed == document(keys_required=True, max_request_bytes=SMALL_BODY_LIMIT,
                                                  models=MODELS)
    assert keyed["security"] == [{"bearerAuth": []}]
    assert "401" in keyed["paths"]["/v1/responses"]["post"]["responses"]
    assert str(SMALL_BODY_LIMIT) in keyed["paths"]["/v1/responses"]["post"]["responses"]["413"]["description"]
    assert keyed["paths"]["/healthz"]["get"]["security"] == []
    assert httpx.get(f"{keyed_gateway.url}/v1/models", timeout=10).status_code == 401
    # The open gateway's document asks for no key, and schemathesis takes it as valid OpenAPI.
    open_doc = httpx.get(f"{gateway.url}/openapi.json", timeout=10).json()
    assert "security" not in open_doc and "401" not in open_doc["paths"]["/v1/responses"]["post"]["responses"]
    schema = schemathesis.openapi.from_dict(open_doc)
    schema.validate()
    assert len(list(schema.get_all_operations())) == 21


# JSON values of every type and some shapes the request schemas constrain (long and blank
# strings, message-like objects), to try in every field.
CANDIDATES: list[Any] = [
    None, True, False, 0, 1, 2, -1, 1.5, "", " ", "x", "auto", "text", "x" * 300,
    [], [1], ["x"], [{}], [{"role": "user", "content": "find it"}], [{"role": "user", "content": "find it", "x": 1}],
    [{"role": "user", "content": 5}], [{"role": "robot", "content": "find it"}], [{"type": "function"}],
    [{"role": "user", "content": [{"type": "image", "text": "x"}]}], [{"role": "user", "content": "x", "name": 5}],
    {}, {"a": 1}, {"a": "b"}, {"type": "json_object"}, {"format": {"type": "json_schema"}}, {"include_usage": 1},
    {f"k{i}": "v" for i in range(17)}, "gpt-4.1", "gpt-4.1-mini",
]


def test_every_value_outside_the_schema_is_refused() -> None:
    # The document must not promise more than the gateway checks: any value a field's schema
    # rejects, put into an otherwise valid body, gets a 400 that names that field.
    doc = document(keys_required=False, max_request_bytes=4096, models=MODELS)
    tried = 0
    for model, submit, base in (
        (ResponsesRequest, responses_submission, {"input": "find it"}),
        (ChatRequest, chat_submission, {"messages": [{"role": "user", "content": "find it"}]}),
    ):
        properties = _schema(doc, str(model.model_config.get("title")))["properties"]
        for name, schema in properties.items():
            schema = _resolve(schema, doc)  # the nested request models are components
            for value in CANDIDATES:
                if jsonschema_rs.is_valid(schema, value):
                    continue
                tried += 1
                with pytest.raises(ApiError) as e:
                    submit({**base, name: value}, MODELS)
                assert e.value.status == 400 and (e.value.param or "").startswith(name), (name, value, e.value.param)
    assert tried > 150
