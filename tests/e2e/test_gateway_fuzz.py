"""Fuzzing the gateway from its own OpenAPI document with schemathesis, over real HTTP.

A dedicated gateway subprocess (body limit 16 KiB) in front of the session engine is
fuzzed from the document it serves. Every answer is checked: no 5xx, the status and the
body are the documented ones, every non-2xx body is an OpenAI error (``error.message`` a
non-empty string, ``error.type`` a string), and a body over the limit gets 413.

No fuzz case may start a browser task. The operations that create tasks
(``POST /v1/responses``, ``POST /v1/chat/completions``) get negative data only, and each
case is checked before it is sent with the gateway's own validation
(``parse_json`` + ``responses_submission`` / ``chat_submission``): a body that would pass is
not sent. Such a body is a failure when it lies outside the documented schema (the document
and the gateway disagree) and is skipped otherwise (the case was negative elsewhere, e.g. an
extra query parameter). Valid bodies for those operations are fuzzed against a second
gateway whose coordinator address has nothing listening, so they end in 503 and start
nothing; that run also checks that the pre-send check predicts the gateway exactly. The
other operations get positive and negative data, some of it with the id of a real
(finished) response. At the end no task may have been created by the fuzzing; any that was
is cancelled.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterator

import httpx
import jsonschema_rs
import pytest
import pytest_asyncio
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from blast_grpc import Client, Engine
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from gateway.app import default_models
from gateway.errors import ApiError
from gateway.protocol import ChatRequest, ResponsesRequest
from gateway.state import parse_json
from gateway.submission import chat_submission, responses_submission

from ..conftest import stop_process
from .conftest import Gateway, closed_port, start_gateway

FUZZ_LIMIT = 16 * 1024
EXAMPLES = 30
FEW_EXAMPLES = 5  # operations without parameters: there is little to vary

CREATING = {"/v1/responses": ResponsesRequest, "/v1/chat/completions": ChatRequest}
# (method, path, negative data possible: a path parameter alone cannot be made invalid, since
# any non-empty string is a valid id; only query parameters can)
SAFE = [
    ("GET", "/v1/responses/{response_id}", True),
    ("DELETE", "/v1/responses/{response_id}", False),
    ("POST", "/v1/responses/{response_id}/cancel", False),
    ("GET", "/v1/models", False),
    ("GET", "/v1/models/{model}", False),
    ("GET", "/v1/openapi.json", False),
    ("GET", "/healthz", False),
    ("GET", "/readyz", False),
    ("GET", "/ping", False),
    ("GET", "/health", False),
    ("GET", "/metrics", False),
]
# Negative data must be refused: 400, 404 (an id that names nothing), 413; never 2xx or 5xx.
CONFIG = schemathesis.Config.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": [400, 404, 413]}}})
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]
FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                                HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
REQUEST_ARGS = {"method", "url", "headers", "params", "cookies", "json", "data"}


@dataclass
class Target:
    """A gateway to fuzz and the schema loaded from its own document."""

    gw: Gateway
    schema: schemathesis.BaseSchema
    response_id: str = ""
    session: requests.Session = field(default_factory=requests.Session)
    counts: Counter[str] = field(default_factory=Counter)


def load(gw: Gateway) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{gw.url}/openapi.json", config=CONFIG, timeout=10)


@pytest_asyncio.fixture(scope="module")
async def target(engine: Engine, client: Client, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Target]:
    """The fuzzed gateway, a finished response for the id-taking operations, and the guard
    that no fuzz case started a task."""
    gw = start_gateway(engine.address, tmp_path_factory.mktemp("fuzz"), "fuzz", {"max_request_bytes": FUZZ_LIMIT})
    t = Target(gw, load(gw))
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            r = await http.post(f"{gw.url}/v1/responses", json={"model": "gpt-4.1", "input": "say hello"})
        assert r.status_code == 200 and r.json()["status"] == "completed", r.text
        t.response_id = r.json()["id"]
        before = {task.task_id for task in await client.list_tasks(limit=1000)}
        yield t
        after = await client.list_tasks(limit=1000)
        started = [task for task in after if task.task_id not in before]
        for task in started:
            if task.state in (pb.TASK_STATE_QUEUED, pb.TASK_STATE_RUNNING):
                await client.cancel(task.task_id, "started by the gateway fuzz test")
        assert not started, f"fuzz cases started tasks: {[task.spec.description[:80] for task in started]}"
        log = gw.stderr()
        assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]
    finally:
        t.session.close()
        stop_process(gw.proc)


@pytest.fixture(scope="module")
def orphan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A gateway whose coordinator address has nothing listening: a valid request ends in 503."""
    gw = start_gateway(f"127.0.0.1:{closed_port()}", tmp_path_factory.mktemp("fuzz"), "orphan",
                       {"max_request_bytes": FUZZ_LIMIT})
    t = Target(gw, load(gw))
    try:
        yield t
    finally:
        t.session.close()
        stop_process(gw.proc)


def prepare(t: Target, case: Case) -> tuple[requests.PreparedRequest, bytes]:
    """The request exactly as it will be sent, and its body bytes."""
    kwargs = case.as_transport_kwargs(base_url=t.gw.url)
    assert set(kwargs) <= REQUEST_ARGS, set(kwargs) - REQUEST_ARGS
    prepared = t.session.prepare_request(requests.Request(**kwargs))
    body = prepared.body or b""
    return prepared, body.encode() if isinstance(body, str) else body


def would_start_task(path: str, body: bytes) -> bool:
    """Whether the gateway would submit a task for this body (its own checks, run here)."""
    if len(body) > FUZZ_LIMIT:
        return False
    submission = responses_submission if path == "/v1/responses" else chat_submission
    try:
        submission(parse_json(body), default_models())
    except ApiError:
        return False
    return True


def within_document(path: str, body: bytes) -> bool:
    """Whether a (JSON) body satisfies the request schema the document gives ``path``."""
    return jsonschema_rs.is_valid(CREATING[path].model_json_schema(), parse_json(body))


def check(t: Target, case: Case, prepared: requests.PreparedRequest, body: bytes) -> requests.Response:
    """Send the case and check the answer; returns it."""
    response = t.session.send(prepared, timeout=60)
    t.counts[str(response.status_code)] += 1
    case.validate_response(response, checks=CHECKS)
    if len(body) > FUZZ_LIMIT:
        assert response.status_code == 413, (response.status_code, len(body))
    if response.status_code >= 300:
        assert response.headers["content-type"] == "application/json", response.headers
        err = response.json()["error"]
        assert isinstance(err["message"], str) and err["message"].strip(), err
        assert isinstance(err["type"], str) and err["type"], err
    return response


def still_up(gw: Gateway) -> None:
    assert gw.proc.poll() is None, gw.stderr()[-3000:]
    assert httpx.get(f"{gw.url}/healthz", timeout=10).status_code == 200


@pytest.mark.parametrize("path", list(CREATING))
def test_invalid_bodies_are_refused_and_start_nothing(target: Target, path: str) -> None:
    op = target.schema[path]["POST"]

    @FUZZ_SETTINGS
    @given(case=op.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    def fuzz(case: Case) -> None:
        prepared, body = prepare(target, case)
        if would_start_task(path, body):
            assert within_document(path, body), f"the gateway accepts a body its document rejects: {body[:500]!r}"
            target.counts["skipped: valid body"] += 1
            return
        response = check(target, case, prepared, body)
        assert response.status_code in (400, 413), response.text
        target.counts[f"refused {path}"] += 1

    fuzz()
    assert target.counts[f"refused {path}"] > EXAMPLES // 2, target.counts  # most cases were sent, not skipped
    still_up(target.gw)


@pytest.mark.parametrize("path", list(CREATING))
def test_valid_bodies_pass_the_gateway(orphan: Target, path: str) -> None:
    # Schema-valid bodies pass the gateway's checks and reach the (missing) engine: 503; the
    # ones refused break a rule the schema cannot state (e.g. no user message): 400. Either
    # way the pre-send check above predicted it.
    op = orphan.schema[path]["POST"]

    @FUZZ_SETTINGS
    @given(case=op.as_strategy(generation_mode=GenerationMode.POSITIVE))
    def fuzz(case: Case) -> None:
        prepared, body = prepare(orphan, case)
        response = orphan.session.send(prepared, timeout=60)
        orphan.counts[str(response.status_code)] += 1
        case.validate_response(response, checks=[status_code_conformance, content_type_conformance,
                                                 response_schema_conformance])
        expected = 503 if would_start_task(path, body) else (413 if len(body) > FUZZ_LIMIT else 400)
        assert response.status_code == expected, (response.status_code, response.text, body[:500])
        if expected == 503:
            assert response.json()["error"]["code"] == "engine_unavailable"

    fuzz()
    assert orphan.counts["503"] > 0, orphan.counts  # some bodies did pass
    still_up(orphan.gw)


def _safe_cases(t: Target, method: str, path: str, mode: GenerationMode) -> st.SearchStrategy[Case]:
    op = t.schema[path][method]
    strategy = op.as_strategy(generation_mode=mode)
    # A real (finished) response id too, so the query parameters reach a real task.
    if "{response_id}" in path and (mode == GenerationMode.POSITIVE or method == "GET"):
        real = op.as_strategy(generation_mode=mode, path_parameters={"response_id": t.response_id})
        strategy = st.one_of(strategy, real)
    return strategy


@pytest.mark.parametrize(("method", "path"), [(m, p) for m, p, _ in SAFE], ids=[f"{m} {p}" for m, p, _ in SAFE])
def test_other_operations_with_valid_data(target: Target, method: str, path: str) -> None:
    examples = EXAMPLES if "{" in path else FEW_EXAMPLES

    statuses: list[int] = []

    @settings(FUZZ_SETTINGS, max_examples=examples)
    @given(case=_safe_cases(target, method, path, GenerationMode.POSITIVE))
    def fuzz(case: Case) -> None:
        prepared, body = prepare(target, case)
        statuses.append(check(target, case, prepared, body).status_code)

    fuzz()
    # Every case was sent and answered without a server error (check() validated each answer).
    assert statuses and max(statuses) < 500, Counter(statuses)
    still_up(target.gw)


@pytest.mark.parametrize(("method", "path"), [(m, p) for m, p, neg in SAFE if neg],
                         ids=[f"{m} {p}" for m, p, neg in SAFE if neg])
def test_other_operations_with_invalid_data(target: Target, method: str, path: str) -> None:
    statuses: list[int] = []

    @FUZZ_SETTINGS
    @given(case=_safe_cases(target, method, path, GenerationMode.NEGATIVE))
    def fuzz(case: Case) -> None:
        prepared, body = prepare(target, case)
        statuses.append(check(target, case, prepared, body).status_code)

    fuzz()
    assert statuses and max(statuses) < 500, Counter(statuses)
    still_up(target.gw)


def _concrete(path: str) -> str:
    return path.replace("{response_id}", "resp_nothing").replace("{model}", "gpt-4.1")


def test_every_operation_answers_a_body_over_the_limit_with_413(target: Target) -> None:
    doc = target.session.get(f"{target.gw.url}/openapi.json", timeout=10).json()
    big = b'{"input": "' + b"x" * FUZZ_LIMIT + b'"}'
    operations = [(m.upper(), p) for p, item in doc["paths"].items() for m in item]
    assert len(operations) == 21
    with httpx.Client(timeout=30) as http:
        for method, path in operations:
            # Declared (Content-Length): refused before the body is read, whatever the operation.
            r = http.request(method, target.gw.url + _concrete(path), content=big,
                             headers={"content-type": "application/json"})
            assert r.status_code == 413, (method, path, r.status_code, r.text)
            err = r.json()["error"]
            assert err["code"] == "request_too_large" and str(FUZZ_LIMIT) in err["message"], err
        for path in CREATING:  # streamed (chunked, no Content-Length): refused once it crosses the limit
            r = http.post(target.gw.url + path, content=iter([big[:8192], big[8192:]]),
                          headers={"content-type": "application/json"})
            assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large", r.text
    still_up(target.gw)


def test_inputs_that_once_crashed_are_400s(target: Target) -> None:
    # Inputs the fuzzers rarely hit that used to be 500s: each is now a clear 400.
    cases: list[tuple[str, str, Any]] = [
        ("POST", "/v1/responses", b'{"input": "\\ud800"}'),
        ("POST", "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "a\\udc00"}]}'),
        ("POST", "/v1/responses", b"[" * 10_000),  # nested too deeply for the parser, under the limit
        ("POST", "/v1/responses", b'{"input": "find it", "temperature": NaN}'),
        ("POST", "/v1/responses", '{"input": "find it"}'.encode("utf-16")),
        ("POST", "/v1/responses", b'{"input": "x", "previous_response_id": "resp_"}'),
        ("GET", f"/v1/responses/{target.response_id}?starting_after=--5", b""),
        ("GET", f"/v1/responses/{target.response_id}?starting_after=%C2%B2", b""),
    ]
    with httpx.Client(timeout=30) as http:
        for method, path, body in cases:
            r = http.request(method, target.gw.url + path, content=body, headers={"content-type": "application/json"})
            assert r.status_code == 400, (path, body[:40], r.status_code, r.text)
            assert r.json()["error"]["message"], r.text
    assert "Traceback" not in target.gw.stderr()
    still_up(target.gw)
