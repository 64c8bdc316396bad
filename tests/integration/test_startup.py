"""Start-up, config validation, reflection, health and the CLI, against real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc
import pytest
import yaml
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from blast_grpc import Engine
from blast_grpc.demo_site.facts import GORILLAS
from blast_grpc.demo_site.server import DemoSite

from ..conftest import stop_process, wait_ready_file

ROOT = Path(__file__).resolve().parents[2]


def _serve(config: dict, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        return subprocess.run([sys.executable, "-m", "blast_grpc", "serve", "--config", str(path)],
                              capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"settings": {"grpc_prot": 1}}, "settings.grpc_prot"),
        ({"constraints": {"max_concurrent_browsers": -1}}, "constraints.max_concurrent_browsers"),
        ({"constraints": {"max_memory": "lots"}}, "constraints.max_memory"),
        ({"constraints": {"allow_parallelism": {"task": "sometimes"}}}, "constraints.allow_parallelism.task"),
        ({"bogus": {}}, "bogus"),
    ],
)
def test_bad_config_stops_startup_naming_the_key(config: dict, key: str) -> None:
    out = _serve(config)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and key in lines[0], out.stderr
    assert "chromium" not in out.stderr.lower()  # refused before any browser started


def test_engine_create_rejects_bad_config_in_the_caller() -> None:
    from blast_grpc import ConfigError

    with pytest.raises(ConfigError, match="max_concurrent_browsers"):
        import asyncio

        asyncio.run(Engine.create(overrides={"constraints": {"max_concurrent_browsers": 0}})._start())


def test_reflection_lists_and_calls_the_service(engine: Engine) -> None:
    with grpc.insecure_channel(engine.address) as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        services = db.get_services()
        assert "blast.v1.BlastService" in services and "grpc.health.v1.Health" in services
        pool = descriptor_pool.DescriptorPool(db)
        svc = pool.FindServiceByName("blast.v1.BlastService")
        assert {m.name for m in svc.methods} >= {"RunTask", "SubmitTask", "WatchTask", "GetTask", "CancelTask",
                                                  "ListTasks", "GetMetrics"}
        method = svc.FindMethodByName("GetMetrics")
        req_cls = message_factory.GetMessageClass(method.input_type)
        resp_cls = message_factory.GetMessageClass(method.output_type)
        call = channel.unary_unary("/blast.v1.BlastService/GetMetrics",
                                   request_serializer=req_cls.SerializeToString,
                                   response_deserializer=resp_cls.FromString)
        reply = call(req_cls(), timeout=10)
        assert len(reply.workers) == 2
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="blast.v1.BlastService"), timeout=5)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_cli_run_streams_and_sets_the_exit_code(engine: Engine, site: DemoSite) -> None:
    ok = subprocess.run([sys.executable, "-m", "blast_grpc", "run", "--address", engine.address,
                         f"On {site.url}index.html find the largest gorilla in Africa"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "scheduled" in ok.stdout and "step" in ok.stdout and GORILLAS["Africa"].name in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "blast_grpc", "run", "--address", engine.address,
                          "a task no scenario knows"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "gave up" in bad.stdout


def test_without_an_llm_endpoint_serve_starts_and_tasks_fail_at_once(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"settings": {"grpc_port": 0, "metrics_port": 0, "gateway": False, "dashboard": False,
                                                "workers": 1}}))
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "blast_grpc", "serve", "--config", str(cfg),
                             "--ready-file", str(ready)], env=env, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        info = wait_ready_file(ready, proc)
        run = subprocess.run([sys.executable, "-m", "blast_grpc", "run", "--address", str(info["grpc_address"]),
                              "find anything"], capture_output=True, text=True, timeout=30, env=env)
        assert run.returncode == 1
        assert "OPENAI_API_KEY" in run.stdout and "llm_endpoints" in run.stdout
    finally:
        stop_process(proc)
        assert proc.stderr is not None
        err = proc.stderr.read().decode()
    notices = [line for line in err.splitlines() if "no LLM endpoint" in line]
    assert len(notices) == 1 and "make demo" in notices[0] and "OPENAI_API_KEY" in notices[0]


def test_serve_starts_the_gateway_next_to_the_coordinator(sim) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    import httpx

    from ..conftest import engine_overrides

    async def scenario() -> int:
        overrides = engine_overrides(sim, workers=1, gateway=True, server_port=0)
        async with Engine.create(overrides=overrides) as eng:
            assert eng.gateway_url
            async with httpx.AsyncClient(base_url=eng.gateway_url) as http:
                assert (await http.get("/healthz")).status_code == 200
                ready = await http.get("/readyz")
                assert ready.status_code == 200, ready.text
                # The gateway passes the coordinator's Prometheus text on (serve gave it --metrics-url).
                scrape = await http.get("/metrics", headers={"accept": "text/plain"})
                assert scrape.status_code == 200 and "blast_queued_tasks" in scrape.text, scrape.text
                models = (await http.get("/v1/models")).json()
                assert {m["id"] for m in models["data"]} >= {"gpt-4.1", "gpt-4.1-mini"}
            proc = eng.proc
        assert proc.returncode == 0
        async with httpx.AsyncClient(timeout=2) as http:
            with pytest.raises(httpx.ConnectError):  # the gateway stopped with the engine
                await http.get(f"{eng.gateway_url}/healthz")
        return 0

    assert asyncio.run(scenario()) == 0
