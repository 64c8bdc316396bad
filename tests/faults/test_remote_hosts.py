"""Workers on other hosts, proven with network namespaces as hosts (tests/netns.py).

The coordinator runs in namespace ``coord`` with no local worker (``workers: 0``) and TLS on
its worker port (a self-signed certificate made here with openssl, for every host's
address); one remote worker (``blast-grpc worker --coordinator``) runs in each of the
namespaces ``a`` and ``b``. The simulated model and the demo site listen on the lab's
bridge in the test's own namespace, reachable from every host.

Losing a host is done two ways, each mid-task: its link set down (the coordinator hears
nothing more: lost after ``worker_heartbeat_timeout_s``), and every process in it killed
(the connection breaks at once). Either way every task completes on the other host and each
task's events, live and replayed, are the seqs 1..n once each. A host that comes back is
the same worker again, not a second one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest
import pytest_asyncio
import yaml

from blast_grpc import Client
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.demo_site.server import DemoSite
from blast_grpc.procutil import stop_process, wait_ready_file
from blast_grpc.worker.exits import EXIT_REFUSED

from ..conftest import Sim, engine_overrides, sim_process
from ..netns import Host, Lab
from .conftest import NO_HANG_S, wait_for

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]

TOKEN = "lab-worker-token"
HEARTBEAT_TIMEOUT_S = 6.0  # generous for a loaded 2-core machine; "lost" takes this long, nothing is timed


def make_cert(d: Path, addresses: list[str]) -> tuple[Path, Path]:
    key, cert = d / "worker.key", d / "worker.pem"
    san = ",".join(f"IP:{a}" for a in addresses)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=blast-lab", "-addext", f"subjectAltName={san}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert, key


@dataclass
class Cluster:
    lab: Lab
    coord_host: Host
    hosts: dict[str, Host]
    config: Path
    dir: Path
    address: str  # the coordinator's public gRPC address
    worker_address: str
    coordinator_log: Path
    site: str
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    client: Client = field(init=False)  # made in the event loop (the ``cluster`` fixture)

    def worker_log(self, name: str) -> Path:
        return self.dir / f"worker-{name}.log"

    def start_worker(self, name: str, token: str = TOKEN, worker_id: str = "") -> subprocess.Popen[bytes]:
        host = self.hosts[name]
        worker_id = worker_id or f"host-{name}"
        with open(self.worker_log(worker_id), "ab") as log:
            proc = subprocess.Popen(
                [*host.exec_prefix(), sys.executable, "-m", "blast_grpc", "worker", "--coordinator",
                 self.worker_address, "--worker-id", worker_id, "--config", str(self.config)],
                env={**os.environ, "BLAST_WORKER_TOKEN": token}, stdout=log, stderr=log, start_new_session=True)
        if worker_id == f"host-{name}":
            self.workers[name] = proc
        return proc

    def kill_host(self, name: str) -> None:
        """kill -9 every process on the host: the worker, its driver, Chromium."""
        for pid in self.hosts[name].pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.workers[name].wait(30)

    async def ready(self, *names: str) -> None:
        want = {f"host-{n}" for n in names}

        async def up() -> bool:
            ws = (await self.client.metrics()).workers
            return want <= {w.worker_id for w in ws if w.state == pb.WORKER_STATE_READY}

        await wait_for(up, f"workers {sorted(want)} to join", timeout=NO_HANG_S)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    lab = Lab()
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="module")
def lab_sim(lab: Lab) -> Iterator[Sim]:
    with sim_process(lab.gateway) as s:
        yield s


@pytest.fixture(scope="module")
def lab_site(lab: Lab) -> Iterator[DemoSite]:
    with DemoSite(host=lab.gateway, port=0) as s:
        yield s


@pytest.fixture(scope="module")
def lab_cluster(lab: Lab, lab_sim: Sim, lab_site: DemoSite) -> Iterator[Cluster]:
    """The coordinator in its namespace and a worker on each of hosts a and b (processes only)."""
    coord = lab.add_host("coord")
    hosts = {"a": lab.add_host("a"), "b": lab.add_host("b")}
    with tempfile.TemporaryDirectory(prefix="blast-lab-") as tmp:
        d = Path(tmp)
        cert, key = make_cert(d, [coord.address, *(h.address for h in hosts.values())])
        overrides = engine_overrides(
            lab_sim, workers=0, host=coord.address, metrics_port=None, gateway=False,
            worker_listen=f"{coord.address}:0", worker_tls_cert=str(cert), worker_tls_key=str(key),
            worker_tls_ca=str(cert), worker_heartbeat_s=0.5, worker_heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S,
            worker_max_contexts=4, warm_contexts=0, allow_loopback=False)
        overrides["constraints"] = {"allow_parallelism": {"data": False}}
        config = d / "lab.yaml"
        config.write_text(yaml.safe_dump(overrides))
        ready, log_path = d / "coord.json", d / "coordinator.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([*coord.exec_prefix(), sys.executable, "-m", "blast_grpc", "serve", "--config",
                                     str(config), "--ready-file", str(ready)],
                                    env={**os.environ, "BLAST_WORKER_TOKEN": TOKEN}, stdout=log, stderr=log,
                                    start_new_session=True)
        c = None
        try:
            info = wait_ready_file(ready, proc, timeout=NO_HANG_S, what="the coordinator")
            c = Cluster(lab, coord, hosts, config, d, info["grpc_address"],
                        f"{coord.address}:{info['worker_port']}", log_path, lab_site.url)
            for name in hosts:
                c.start_worker(name)
            yield c
        finally:
            if c is not None:
                for w in c.workers.values():
                    stop_process(w)
            stop_process(proc)


@pytest_asyncio.fixture(scope="module")
async def cluster(lab_cluster: Cluster) -> AsyncIterator[Cluster]:
    lab_cluster.client = Client(lab_cluster.address)
    try:
        await lab_cluster.ready(*lab_cluster.hosts)
        yield lab_cluster
    finally:
        await lab_cluster.client.close()


async def both_hosts(cluster: Cluster) -> Cluster:
    """The cluster with both hosts up (a test before may have killed one or cut its link)."""
    for name, host in cluster.hosts.items():
        cluster.lab.mend(host)
        if cluster.workers[name].poll() is not None:
            cluster.start_worker(name)
    await cluster.ready(*cluster.hosts)
    return cluster


def tour(cluster: Cluster, continent: str) -> str:
    return f"Slowly tour {continent} from {cluster.site}index.html"


async def follow(client: Client, task_id: str, seen: dict[str, list[pb.TaskEvent]],
                 first_step_on: dict[str, asyncio.Event]) -> None:
    """Collect a task's events as they come; note when one of its steps runs on a host."""
    worker = ""
    async for ev in client.watch(task_id, from_seq=1):
        seen[task_id].append(ev)
        if ev.HasField("started"):
            worker = ev.started.worker_id
        elif ev.HasField("step") and worker in first_step_on:
            first_step_on[worker].set()


def check_events(task_id: str, live: list[pb.TaskEvent], replay: list[pb.TaskEvent]) -> None:
    """No event lost or duplicated: live and replayed logs are the same seqs 1..n, ending in completed."""
    seqs = [e.seq for e in live]
    assert seqs == list(range(1, len(live) + 1)), f"{task_id}: seqs {seqs}"
    assert [e.SerializeToString() for e in replay] == [e.SerializeToString() for e in live], task_id
    assert live[-1].HasField("completed") and live[-1].completed.success, (task_id, live[-1])


async def run_and_break(cluster: Cluster, victim: str, breaker: str) -> dict[str, list[pb.TaskEvent]]:
    """Start tours on both hosts, break ``victim`` once a task has taken a step there, wait for all."""
    client = cluster.client
    tasks = [await client.submit(tour(cluster, c)) for c in ("Africa", "Asia", "Europe", "Oceania")]
    seen: dict[str, list[pb.TaskEvent]] = {t.task_id: [] for t in tasks}
    stepped = {f"host-{victim}": asyncio.Event()}
    followers = [asyncio.create_task(follow(client, t.task_id, seen, stepped)) for t in tasks]
    try:
        await asyncio.wait_for(stepped[f"host-{victim}"].wait(), NO_HANG_S)
        if breaker == "cut":
            cluster.lab.cut(cluster.hosts[victim])
        else:
            cluster.kill_host(victim)
        await asyncio.wait_for(asyncio.gather(*followers), NO_HANG_S)
    finally:
        for f in followers:
            f.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
    for tid, live in seen.items():
        replay = [ev async for ev in client.watch(tid, from_seq=1)]
        check_events(tid, live, replay)
    return seen


def hosts_used(events: list[pb.TaskEvent]) -> list[str]:
    return [e.started.worker_id for e in events if e.HasField("started")]


async def test_tasks_spread_over_both_hosts(cluster: Cluster) -> None:
    c = await both_hosts(cluster)
    continents = ("Africa", "Asia", "Europe", "Oceania")
    tasks = [await c.client.submit(tour(c, cont)) for cont in continents]
    used = set()
    for t, cont in zip(tasks, continents, strict=True):
        live = [ev async for ev in c.client.watch(t.task_id, from_seq=1)]
        check_events(t.task_id, live, live)
        used.update(hosts_used(live))
        assert f"Toured {cont}" in live[-1].completed.result
    assert used == {"host-a", "host-b"}


@pytest.mark.parametrize("breaker", ["cut", "kill"])
async def test_a_lost_host_s_tasks_complete_on_the_other(cluster: Cluster, breaker: str) -> None:
    c = await both_hosts(cluster)
    seen = await run_and_break(c, "b", breaker)
    moved = [tid for tid, evs in seen.items() if "host-b" in hosts_used(evs)]
    assert moved, "no task ran on host b"
    for tid in moved:
        used = hosts_used(seen[tid])
        assert used[-1] == "host-a", (tid, used)  # it ended on the host still there
        said = [e.waiting.reason for e in seen[tid] if e.HasField("waiting")]
        assert any("retrying on another worker" in r and "host-b" in r for r in said), said

    async def lost() -> list[pb.WorkerInfo]:
        return [w for w in (await c.client.metrics()).workers if w.worker_id == "host-b"
                and w.state == pb.WORKER_STATE_DEAD]

    assert len(await wait_for(lost, "host b to be declared lost")) == 1
    assert "worker host-b" in c.coordinator_log.read_text()
    if breaker == "cut":
        assert "no heartbeat" in c.coordinator_log.read_text()


async def test_a_host_that_comes_back_is_the_same_worker_and_ends_what_was_retried(cluster: Cluster) -> None:
    c = await both_hosts(cluster)
    before = {w.worker_id: w.restarts for w in (await c.client.metrics()).workers}
    seen = await run_and_break(c, "b", "cut")  # every task completed (on a, for those cut off on b)
    cut_off = [tid for tid, evs in seen.items() if "host-b" in hosts_used(evs)]
    c.lab.mend(c.hosts["b"])
    await c.ready("a", "b")
    workers = (await c.client.metrics()).workers
    assert sorted(w.worker_id for w in workers) == ["host-a", "host-b"]  # reconciled, not listed twice
    assert {w.worker_id: w.restarts for w in workers}["host-b"] == before["host-b"] + 1
    # The tasks host b still ran when it came back were retried on a: b ends them, either because
    # its heartbeat's answer names them (stale_tasks) or because their streams were closed.

    async def b_runs_none_of_them() -> bool:
        b = [w for w in (await c.client.metrics()).workers if w.worker_id == "host-b"]
        return len(b) == 1 and b[0].status_problem == "" and not set(b[0].open_contexts) & set(cut_off)

    assert await wait_for(b_runs_none_of_them, "host b to end the tasks retried elsewhere")
    for tid, live in seen.items():  # nothing of theirs arrived after they ended
        replay = [ev async for ev in c.client.watch(tid, from_seq=1)]
        assert [e.seq for e in replay] == [e.seq for e in live], tid
    task = await c.client.run(tour(c, "Asia"))
    assert task.state == pb.TASK_STATE_COMPLETED and task.success


async def test_a_worker_without_the_token_is_refused(cluster: Cluster) -> None:
    c = await both_hosts(cluster)
    proc = c.start_worker("b", token="not-the-token", worker_id="intruder")
    assert proc.wait(NO_HANG_S) == EXIT_REFUSED
    assert "refused a worker call to /blast.worker.v1.WorkerRegistryService/Heartbeat: wrong worker token" in \
        c.coordinator_log.read_text()
    assert "UNAUTHENTICATED: wrong worker token" in c.worker_log("intruder").read_text()
    assert "intruder" not in {w.worker_id for w in (await c.client.metrics()).workers}


async def test_a_draining_host_finishes_its_task_then_leaves(cluster: Cluster) -> None:
    c = await both_hosts(cluster)
    client = c.client
    tasks = [await client.submit(tour(c, cont)) for cont in ("Africa", "Asia")]
    seen: dict[str, list[pb.TaskEvent]] = {t.task_id: [] for t in tasks}
    stepped = {"host-b": asyncio.Event()}
    followers = [asyncio.create_task(follow(client, t.task_id, seen, stepped)) for t in tasks]
    try:
        await asyncio.wait_for(stepped["host-b"].wait(), NO_HANG_S)
        c.workers["b"].send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(*followers), NO_HANG_S)
    finally:
        for f in followers:
            f.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
    assert c.workers["b"].wait(NO_HANG_S) == 0
    on_b = [tid for tid, evs in seen.items() if hosts_used(evs) == ["host-b"]]
    assert on_b, seen  # the task on b finished there, in one attempt
    for tid, live in seen.items():
        check_events(tid, live, live)
    assert "host-b" not in {w.worker_id for w in (await client.metrics()).workers}
