"""deploy/ (Kubernetes) and the Containerfile, checked offline.

Every manifest is validated against the schemas of a pinned Kubernetes version
(``kubernetes-validate``, strict: unknown fields are errors). KEDA's ScaledObject is a
custom resource that package has no schema for; its shape is checked here instead
(``_check_scaled_object``), including that its query names metrics the coordinator exposes.
The manifests are also checked against each other and against the engine's config: ports,
the worker token, drain time versus grace period, and the ConfigMap's config file itself.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import kubernetes_validate
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.config import config_from_dict
from blast_grpc.coordinator.prometheus import render

from ..conftest import ROOT

K8S_VERSION = "1.32.0"  # the oldest Kubernetes release deploy/ promises to work on (grpc probes: 1.27+)
DEPLOY = ROOT / "deploy"


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


def _find(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for _, d in _manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def _config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(_find("ConfigMap", "blast-config")["data"]["config.yaml"])
    return data


def _check_scaled_object(doc: dict[str, Any]) -> None:
    spec = doc["spec"]
    assert set(spec) <= {"scaleTargetRef", "minReplicaCount", "maxReplicaCount", "pollingInterval",
                         "cooldownPeriod", "triggers", "advanced", "fallback", "idleReplicaCount"}
    target = _find("Deployment", spec["scaleTargetRef"]["name"])
    assert target["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    meta = trigger["metadata"]
    assert set(meta) >= {"serverAddress", "query", "threshold"} and re.match(r"^https?://", meta["serverAddress"])
    assert isinstance(meta["threshold"], str) and float(meta["threshold"]) > 0  # KEDA wants a string
    # Each worker pod takes worker_max_contexts tasks: that is the work per replica.
    assert float(meta["threshold"]) == _config()["settings"]["worker_max_contexts"]
    # The query names only metrics the coordinator's /metrics really has, with labels it really has.
    exposed = {f.name: f for f in text_string_to_metric_families(render(pb.GetMetricsResponse())[0].decode())}
    used = re.findall(r"\b(blast_[a-z_]+)(?:\{([^}]*)\})?", meta["query"])
    assert used
    for name, selector in used:
        assert name in exposed, name
        for label, value in re.findall(r'(\w+)="([^"]*)"', selector):
            assert value in {s.labels.get(label) for s in exposed[name].samples}, (name, label, value)


CUSTOM: dict[tuple[str, str], Callable[[dict[str, Any]], None]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): _check_scaled_object,
}


def test_the_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize(("name", "doc"), _manifests(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_every_manifest_is_valid_kubernetes(name: str, doc: dict[str, Any]) -> None:
    custom = CUSTOM.get((doc["apiVersion"], doc["kind"]))
    if custom is not None:
        custom(doc)
        return
    # It raises on a schema error; it returns the Kubernetes release whose schema it used.
    assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True) == K8S_VERSION.rsplit(".", 1)[0]


def test_validation_catches_a_mistake() -> None:
    # The validator is not a no-op: a typo'd field and a wrong type are refused.
    bad = _find("Deployment", "blast-worker")
    bad = yaml.safe_load(yaml.safe_dump(bad))
    bad["spec"]["template"]["spec"]["terminationGracePeriod"] = 150
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    so = yaml.safe_load(yaml.safe_dump(_find("ScaledObject", "blast-worker")))
    so["spec"]["triggers"][0]["metadata"]["query"] = "sum(blast_queue_length)"
    with pytest.raises(AssertionError):
        _check_scaled_object(so)


def test_the_configmap_holds_a_valid_config() -> None:
    config = config_from_dict(_config(), source="deploy/configmap.yaml")  # strict: unknown keys are errors
    assert config.settings.workers == 0 and config.settings.worker_listen  # the browsers are the worker pods
    assert config.settings.task_db_path is not None and config.settings.task_db_path.startswith("/var/lib/blast/")


def _container(name: str) -> dict[str, Any]:
    (c,) = _find("Deployment", name)["spec"]["template"]["spec"]["containers"]
    return dict(c)


def test_the_manifests_agree_with_each_other_and_the_config() -> None:
    s = _config()["settings"]
    listen_port = int(s["worker_listen"].rsplit(":", 1)[1])
    ports = {p["name"]: p["port"] for p in _find("Service", "blast-coordinator")["spec"]["ports"]}
    assert ports == {"grpc": s["grpc_port"], "workers": listen_port, "metrics": s["metrics_port"]}
    worker = _container("blast-worker")
    assert f"--coordinator=blast-coordinator:{listen_port}" in worker["args"]
    gateway = _container("blast-gateway")
    assert f"--grpc-address=blast-coordinator:{s['grpc_port']}" in gateway["args"]
    assert f"--metrics-url=http://blast-coordinator:{s['metrics_port']}/metrics" in gateway["args"]
    assert gateway["command"] == ["python", "-m", "blast_grpc_gateway"]  # the gateway's installed name
    # Both sides of the worker link take the token from the same Secret key.
    for name in ("blast-coordinator", "blast-worker"):
        env = {e["name"]: e.get("valueFrom", {}) for e in _container(name)["env"]}
        assert env["BLAST_WORKER_TOKEN"]["secretKeyRef"] == {"name": "blast-secrets", "key": "worker-token"}
    # A pod is killed only after it has drained.
    for name in ("blast-coordinator", "blast-worker", "blast-gateway"):
        grace = _find("Deployment", name)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > s["drain_timeout_s"], name
    # The worker's probes ask the port it serves on; the coordinator's readiness asks for the service.
    assert {worker[p]["grpc"]["port"] for p in ("startupProbe", "readinessProbe", "livenessProbe")} == {listen_port}
    assert _container("blast-coordinator")["readinessProbe"]["grpc"]["service"] == "blast.v1.BlastService"
    # Exactly one coordinator, never two at once on the same database.
    coordinator = _find("Deployment", "blast-coordinator")["spec"]
    assert coordinator["replicas"] == 1 and coordinator["strategy"]["type"] == "Recreate"


def test_the_containerfile_builds_on_debian_with_its_chromium() -> None:
    text = (ROOT / "Containerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert stages and all(s.startswith("debian:") for s in stages)
    installs = " ".join(re.findall(r"apt-get install ([^&]+)", text))
    assert "chromium-headless-shell" in installs
    assert re.search(r"pip install .*\.whl", text)  # the package itself, built from this checkout
    assert '"blast-grpc"]' in text.split("ENTRYPOINT", 1)[1].splitlines()[0]
