"""The gateway as a service: models, probes, an unreachable engine, the ready file, SIGTERM."""

from __future__ import annotations

import json
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from gateway.main import main as gateway_main

from ..conftest import stop_process
from .conftest import Gateway, closed_port, error_body, poll, start_gateway


def test_models_are_the_engines(oai: openai.OpenAI) -> None:
    models = list(oai.models.list())
    assert [m.id for m in models] == ["gpt-4.1", "gpt-4.1-mini"]
    assert all(m.object == "model" and m.owned_by == "blast-grpc" for m in models)
    assert oai.models.retrieve("gpt-4.1-mini").id == "gpt-4.1-mini"
    with pytest.raises(openai.NotFoundError) as e:
        oai.models.retrieve("no-such-model")
    assert error_body(e.value)["param"] == "model"


def test_probes(gateway: Gateway) -> None:
    assert httpx.get(f"{gateway.url}/healthz", timeout=10).json() == {"status": "ok"}
    # Polled: on a loaded machine the engine's metrics call can miss the probe's 3 s deadline,
    # or a worker be restarting, for a moment; the last answer is what gets reported.
    ready = poll(lambda: httpx.get(f"{gateway.url}/readyz", timeout=10), lambda r: r.status_code == 200)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready"}


def test_unreachable_engine_then_sigterm(tmp_path: Path) -> None:
    # A gateway whose coordinator address has nothing listening: API calls get 503, the
    # readiness probe says why, and SIGTERM still stops it cleanly (exit code 0).
    gw = start_gateway(f"127.0.0.1:{closed_port()}", tmp_path, "orphan")
    try:
        info = json.loads((tmp_path / "orphan.ready.json").read_text())
        assert info == {"url": gw.url} and not gw.url.endswith(":0")
        for suffix in ("/v1", ""):
            with openai.OpenAI(base_url=gw.url + suffix, api_key="unused", max_retries=0) as oai:
                with pytest.raises(openai.InternalServerError) as e:
                    oai.responses.create(model="gpt-4.1", input="find it")
                assert e.value.status_code == 503
                body = error_body(e.value)
                assert body["code"] == "engine_unavailable" and body["type"] == "server_error"
                with pytest.raises(openai.InternalServerError) as e:
                    oai.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "find it"}])
                assert e.value.status_code == 503
                assert [m.id for m in oai.models.list()]  # needs no engine: still serving
        assert httpx.get(f"{gw.url}/healthz", timeout=10).status_code == 200
        ready = httpx.get(f"{gw.url}/readyz", timeout=10)
        assert ready.status_code == 503 and "did not answer" in ready.json()["reason"]
        assert ready.json()["error"]["code"] == "engine_unavailable"  # OpenAI-shaped, like every error
        gw.proc.send_signal(signal.SIGTERM)
        assert gw.proc.wait(timeout=20) == 0
    finally:
        if gw.proc.poll() is None:
            gw.proc.kill()
            gw.proc.wait()


def test_an_open_bind_without_keys_warns_once(gateway: Gateway, tmp_path: Path) -> None:
    # Bound beyond loopback with no key: one warning line at start-up. Stopped at once; no
    # traffic is sent to it.
    engine_address = f"127.0.0.1:{closed_port()}"
    with ThreadPoolExecutor(2) as pool:  # started side by side: each takes a few seconds to import
        starting_wide = pool.submit(start_gateway, engine_address, tmp_path, "wide", host="0.0.0.0")
        starting_keyed = pool.submit(start_gateway, engine_address, tmp_path, "wide-keyed", host="0.0.0.0",
                                     env={"BLAST_API_KEYS": "sk-k"})
        wide, keyed = starting_wide.result(), starting_keyed.result()
    stop_process(wide.proc)
    stop_process(keyed.proc)
    warnings = [line for line in wide.stderr().splitlines() if "WARNING" in line]
    assert len(warnings) == 1, wide.stderr()
    assert "open to the network" in warnings[0] and "0.0.0.0" in warnings[0]
    assert "settings.api_keys" in warnings[0] and "BLAST_API_KEYS" in warnings[0]
    # A key (here from the environment) silences it, and so does loopback (the shared gateway).
    assert "1 API key(s) configured" in keyed.stderr()
    for gw in (keyed, gateway):
        assert "open to the network" not in gw.stderr()


def test_bad_config_stops_start_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("settings:\n  api_keyz: [x]\n")
    assert gateway_main(["--grpc-address", "127.0.0.1:1", "--config", str(bad)]) == 2
    assert "api_keyz" in capsys.readouterr().err
