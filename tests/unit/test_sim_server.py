"""The simulated model over HTTP, exercised with the official ``openai`` client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from blast_grpc.demo_site import ARTICLE_CODE
from blast_grpc.sim import SimServer
from blast_grpc.sim import messages as m
from blast_grpc.sim.scenarios import SHIPPED_DIR

REPO = Path(__file__).resolve().parents[2]
BASE = "http://127.0.0.1:8123/"
TASK = f"On {BASE}index.html find the largest gorilla in Asia"
INDEX = m.observation(BASE + "index.html", "Gorilla Records",
                      ['<a href="africa.html">Africa', '<a href="asia.html">Asia'], "Gorilla Records", step=2)
AGENT_MSGS = m.agent_messages(TASK, INDEX, [("go_to_url", {"url": BASE + "index.html"}, "Opened")])
TOOLS = m.tool_schemas()


@pytest.fixture(scope="module")
def sim():
    with SimServer() as s:
        yield s


@pytest.fixture(autouse=True)
def _clean(request):
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").reset()


def client(sim: SimServer, **kw) -> openai.AsyncOpenAI:
    kw.setdefault("max_retries", 0)
    kw.setdefault("timeout", 5)
    return openai.AsyncOpenAI(base_url=sim.base_url, api_key="x", **kw)


@pytest.mark.asyncio
async def test_non_streaming_tool_call_and_usage(sim: SimServer) -> None:
    async with client(sim) as c:
        r = await c.chat.completions.create(model="agent-model", messages=AGENT_MSGS, tools=TOOLS)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "click"
    assert json.loads(call.function.arguments) == {"index": 1}
    assert choice.message.content == "Open the Asia page."
    chars = sum(len(x["content"] or "") for x in AGENT_MSGS)
    assert r.usage.prompt_tokens == chars // 4
    assert r.usage.completion_tokens >= 1
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.model == "agent-model" and r.object == "chat.completion"


@pytest.mark.asyncio
async def test_streaming_tool_call_deltas_assemble(sim: SimServer) -> None:
    async with client(sim) as c:
        stream = await c.chat.completions.create(model="agent-model", messages=AGENT_MSGS, tools=TOOLS,
                                                 stream=True, stream_options={"include_usage": True})
        chunks = [ch async for ch in stream]
    name, args, content, finish = "", "", "", None
    for ch in chunks:
        for choice in ch.choices:
            content += choice.delta.content or ""
            for tc in choice.delta.tool_calls or []:
                assert tc.index == 0
                name += tc.function.name or ""
                args += tc.function.arguments or ""
            finish = choice.finish_reason or finish
    assert (name, json.loads(args), content, finish) == ("click", {"index": 1}, "Open the Asia page.", "tool_calls")
    assert sum(1 for ch in chunks if any(c.delta.tool_calls for c in ch.choices)) >= 3  # split over chunks
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > chunks[-1].usage.prompt_tokens


@pytest.mark.asyncio
async def test_stream_helper_final_completion_and_no_usage_chunk_by_default(sim: SimServer) -> None:
    async with client(sim) as c:
        stream = await c.chat.completions.create(model="m", messages=AGENT_MSGS, tools=TOOLS, stream=True)
        chunks = [ch async for ch in stream]
        async with c.chat.completions.stream(model="m", messages=AGENT_MSGS, tools=TOOLS) as s:
            final = await s.get_final_completion()
    assert all(ch.usage is None for ch in chunks) and chunks[-1].choices[0].finish_reason == "tool_calls"
    assert final.choices[0].message.tool_calls[0].function.name == "click"


@pytest.mark.asyncio
async def test_extraction_is_plain_text_from_content(sim: SimServer) -> None:
    content = "River text.\n" * 50 + f"The secret river code is {ARTICLE_CODE}."
    async with client(sim) as c:
        r = await c.chat.completions.create(model="mini", messages=m.extraction_messages(
            "What is the secret river code?", content))
        s = await c.chat.completions.create(model="mini", stream=True, messages=m.extraction_messages(
            "What is the secret river code?", "nothing here"))
        streamed = "".join([ch.choices[0].delta.content or "" async for ch in s if ch.choices])
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.tool_calls is None
    assert json.loads(r.choices[0].message.content) == {"found": True, "code": ARTICLE_CODE}
    assert json.loads(streamed) == {"found": False}


@pytest.mark.asyncio
async def test_http_429_raises_rate_limit_then_recovers(sim: SimServer) -> None:
    sim.add_faults("http_429")
    async with client(sim) as c:
        with pytest.raises(openai.RateLimitError) as exc:
            await c.chat.completions.create(model="m", messages=AGENT_MSGS, tools=TOOLS)
        assert exc.value.response.headers["retry-after"] == "0"
        assert exc.value.body["code"] == "rate_limit_exceeded"
        ok = await c.chat.completions.create(model="m", messages=AGENT_MSGS, tools=TOOLS)
    assert ok.choices[0].message.tool_calls[0].function.name == "click"
    assert sim.stats()["faults_injected"] == {"http_429": 1}


@pytest.mark.asyncio
async def test_sdk_retries_through_a_429(sim: SimServer) -> None:
    sim.add_faults("http_429")
    async with client(sim, max_retries=2) as c:
        r = await c.chat.completions.create(model="m", messages=AGENT_MSGS, tools=TOOLS)
    assert r.choices[0].message.tool_calls[0].function.name == "click"
    assert sim.stats()["requests_total"] == 2


@pytest.mark.asyncio
async def test_http_500(sim: SimServer) -> None:
    sim.add_faults("http_500")
    async with client(sim) as c:
        with pytest.raises(openai.InternalServerError, match="injected fault http_500"):
            await c.chat.completions.create(model="m", messages=AGENT_MSGS, tools=TOOLS)


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True])
async def test_malformed_tool_json_arrives_as_such(sim: SimServer, stream: bool) -> None:
    sim.add_faults("malformed_tool_json")
    async with client(sim) as c:
        if stream:
            s = await c.chat.completions.create(model="m", messages=AGENT_MSGS, tools=TOOLS, stream=True)
            parts = [tc.function for ch in [x async for x in s] if ch.choices
                     for tc in ch.choices[0].delta.tool_calls or []]
            name = "".join(p.name or "" for p in parts)
            args = "".join(p.arguments or "" for p in parts)
        else:
            r = await c.chat.completions.create(model="m", messages=AGENT_MSGS, tools=TOOLS)
            name, args = r.choices[0].message.tool_calls[0].function.name, \
                r.choices[0].message.tool_calls[0].function.arguments
    assert name == "click" and args.startswith('{"index": 1')
    with pytest.raises(json.JSONDecodeError):
        json.loads(args)


@pytest.mark.asyncio
async def test_no_tool_call_waits_for_an_agent_request(sim: SimServer) -> None:
    sim.add_faults("no_tool_call")
    async with client(sim) as c:
        ext = await c.chat.completions.create(model="m", messages=m.extraction_messages("secret river code", "x"))
        r = await c.chat.completions.create(model="m", messages=AGENT_MSGS, tools=TOOLS)
    assert ext.choices[0].message.content == '{"found": false}'  # extraction passed over the fault
    assert r.choices[0].message.tool_calls is None and r.choices[0].finish_reason == "stop"
    assert "click" in r.choices[0].message.content


async def _wait_unstalled(sim: SimServer) -> None:
    for _ in range(100):
        if sim.stats()["stalled_now"] == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("stalled request was not released after the client left")


@pytest.mark.asyncio
async def test_stall_times_out_while_other_requests_succeed(sim: SimServer) -> None:
    sim.add_faults("stall")
    async with client(sim, timeout=0.6) as c:
        stalled = asyncio.create_task(c.chat.completions.create(model="m", messages=AGENT_MSGS, tools=TOOLS))
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        ok = await c.chat.completions.create(model="m", messages=AGENT_MSGS, tools=TOOLS)
        assert time.monotonic() - t0 < 0.5
        assert sim.stats()["stalled_now"] == 1
        with pytest.raises(openai.APITimeoutError):
            await stalled
    assert ok.choices[0].message.tool_calls[0].function.name == "click"
    await _wait_unstalled(sim)


@pytest.mark.asyncio
async def test_stall_mid_stream(sim: SimServer) -> None:
    sim.add_faults("stall")
    received = []
    async with client(sim, timeout=0.6) as c:
        s = await c.chat.completions.create(model="m", messages=AGENT_MSGS, tools=TOOLS, stream=True)
        with pytest.raises(openai.APITimeoutError):
            async for ch in s:
                received.append(ch)
        ok = await c.chat.completions.create(model="m", messages=AGENT_MSGS, tools=TOOLS)
    assert len(received) == 2 and received[0].choices[0].delta.role == "assistant"
    assert ok.choices[0].finish_reason == "tool_calls"
    await _wait_unstalled(sim)


@pytest.mark.asyncio
async def test_faults_via_http_apply_only_to_their_model(sim: SimServer) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as h:
        r = await h.post("/sim/faults", json={"faults": [{"kind": "http_500"}], "model": "big"})
        assert r.status_code == 200 and r.json()["pending"] == [{"kind": "http_500", "model": "big"}]
        bad = await h.post("/sim/faults", json={"faults": [{"kind": "explode"}]})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "faults[0].kind"
    async with client(sim) as c:
        small = await c.chat.completions.create(model="small", messages=AGENT_MSGS, tools=TOOLS)
        assert small.choices[0].finish_reason == "tool_calls"
        with pytest.raises(openai.InternalServerError):
            await c.chat.completions.create(model="big", messages=AGENT_MSGS, tools=TOOLS)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model", "'model'"),
        ({"model": 3, "messages": [{"role": "user", "content": "x"}]}, "model", "'model' must be"),
        ({"model": "m"}, "messages", "'messages'"),
        ({"model": "m", "messages": "hello"}, "messages", "'messages' must be"),
        ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "robot"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content", "content"),
        ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id", "tool_call_id"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web"}]}, "tools[0]",
         "tools[0]"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream", "'stream'"),
    ],
)
async def test_bad_requests_get_400_naming_the_field(sim: SimServer, body, param: str, fragment: str) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url) as h:
        r = await h.post("/chat/completions", json=body)
        assert r.status_code == 400
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error" and err["param"] == param and err["code"] is None
        assert fragment in err["message"]
        assert (await h.get("/models")).status_code == 200  # still serving
    assert sim.stats()["bad_requests"] == 1


@pytest.mark.asyncio
async def test_invalid_json_and_unknown_route(sim: SimServer) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as h:
        r = await h.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
        r = await h.get("/v1/nothing")
        assert r.status_code == 404 and "error" in r.json()
    async with client(sim) as c:
        with pytest.raises(openai.BadRequestError, match="messages"):
            await c.chat.completions.create(model="m", messages=[])


@pytest.mark.asyncio
async def test_models_health_and_routes_without_v1(sim: SimServer) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as h:
        assert (await h.get("/health")).json() == {"status": "ok"}
        assert (await h.get("/v1/health")).json() == {"status": "ok"}
        r = await h.post("/chat/completions", json={"model": "m", "messages": AGENT_MSGS, "tools": TOOLS})
        assert r.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "click"
    async with client(sim) as c:
        models = await c.models.list()
    assert [x.id for x in models.data] == ["sim"]


@pytest.mark.asyncio
async def test_stats_count_models_kinds_scenarios_and_reset(sim: SimServer) -> None:
    sim.add_faults("http_500")
    async with client(sim) as c:
        with pytest.raises(openai.InternalServerError):
            await c.chat.completions.create(model="a", messages=AGENT_MSGS, tools=TOOLS)
        await c.chat.completions.create(model="a", messages=AGENT_MSGS, tools=TOOLS)
        await c.chat.completions.create(model="b", messages=m.extraction_messages("secret river code", "x"))
        await c.chat.completions.create(model="b", messages=m.plan_messages(TASK))
        await c.chat.completions.create(model="a", messages=m.agent_messages("book a flight", INDEX), tools=TOOLS)
    async with httpx.AsyncClient(base_url=sim.url) as h:
        stats = (await h.get("/sim/stats")).json()
        assert stats["requests_total"] == 5
        assert stats["by_model"] == {"a": 3, "b": 2}
        assert stats["by_kind"] == {"agent": 3, "extract": 1, "plan": 1}
        assert stats["by_scenario"] == {"gorilla-one-continent": 3, "secret-river-code": 1, "(none)": 1}
        assert stats["faults_injected"] == {"http_500": 1}
        assert (await h.post("/sim/reset")).status_code == 200
        assert (await h.get("/sim/stats")).json()["requests_total"] == 0


@pytest.mark.asyncio
async def test_latency_ttft_and_token_rate(tmp_path: Path) -> None:
    lat = {"default": {"ttft": {"dist": "constant", "seconds": 0.2}, "tokens_per_second": 40}}
    with SimServer(latency=lat) as sim:
        async with client(sim) as c:
            t0 = time.monotonic()
            r = await c.chat.completions.create(model="m", messages=AGENT_MSGS, tools=TOOLS)
            elapsed = time.monotonic() - t0
            gen = r.usage.completion_tokens / 40
            # At least the configured latency (an upper bound would fail on a loaded machine).
            assert 0.2 + gen <= elapsed
            stream = await c.chat.completions.create(model="m", messages=AGENT_MSGS, tools=TOOLS, stream=True)
            t0 = time.monotonic()
            stamps = [time.monotonic() - t0 async for _ in stream]
    # Chunks are spread over the generation time, not sent in one burst.
    assert stamps[-1] - stamps[0] >= gen * 0.8


@pytest.mark.asyncio
async def test_scenario_delay_and_stop_ends_stalls(tmp_path: Path) -> None:
    (tmp_path / "slow.yaml").write_text(
        "scenarios:\n  - {name: slow, task: slowly, delay: 0.4, rules: [{do: {scroll: {direction: up}}}]}\n",
        encoding="utf-8")
    sim = SimServer(scenario_dirs=[tmp_path, SHIPPED_DIR]).start()
    try:
        async with client(sim) as c:
            t0 = time.monotonic()
            r = await c.chat.completions.create(model="m", messages=m.agent_messages("do it slowly", INDEX),
                                                tools=TOOLS)
            assert time.monotonic() - t0 >= 0.4
            assert json.loads(r.choices[0].message.tool_calls[0].function.arguments) == {"direction": "up"}
            fast = await c.chat.completions.create(model="m", messages=AGENT_MSGS, tools=TOOLS)
            assert fast.choices[0].finish_reason == "tool_calls"
        sim.add_faults("stall")
        hung = httpx.AsyncClient(timeout=30)
        pending = asyncio.create_task(hung.post(sim.base_url + "/chat/completions",
                                                json={"model": "m", "messages": AGENT_MSGS, "tools": TOOLS}))
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        await asyncio.to_thread(sim.stop)
        assert time.monotonic() - t0 < 3
        released = await pending
        assert released.status_code == 503 and "shutting down" in released.json()["error"]["message"]
        await hung.aclose()
    finally:
        sim.stop()


def _wait_for(path: Path, proc: subprocess.Popen) -> dict:
    deadline = time.monotonic() + 15
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "sim did not become ready"
        time.sleep(0.05)
    return json.loads(path.read_text())


def test_cli_ready_file_faults_and_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "blast_grpc.sim", "--port", "0", "--faults", "http_429",
                             "--seed", "3", "--ready-file", str(ready)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        base = _wait_for(ready, proc)["base_url"]
        assert base.startswith("http://127.0.0.1:") and base.endswith("/v1") and ":0/" not in base
        body = {"model": "m", "messages": AGENT_MSGS, "tools": TOOLS}
        first = httpx.post(base + "/chat/completions", json=body)
        assert first.status_code == 429 and first.headers["retry-after"] == "0"
        assert httpx.post(base + "/chat/completions", json=body).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_rejects_bad_configuration(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "blast_grpc.sim", "--faults", "boom"], cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "unknown fault kind 'boom'" in r.stderr
    r = subprocess.run([sys.executable, "-m", "blast_grpc.sim", "--scenarios", str(tmp_path / "none")], cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "scenario directory not found" in r.stderr
