"""The coordinator's registry of remote workers and placement, with a fake RPC context.

What the network-namespace tests (tests/faults/test_remote_hosts.py) prove end to end, here
one rule at a time: joining, refusals, being lost and coming back, a restart under the same
id, stale tasks, draining, placement by free capacity, and the new configuration keys.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, AsyncIterator

import grpc
import pytest
import pytest_asyncio

from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc._proto.blast.worker.v1 import worker_pb2 as wpb
from blast_grpc.config import ConfigError, config_from_dict
from blast_grpc.coordinator.placement import most_free
from blast_grpc.coordinator.registry import Registry, RemoteWorkerHandle
from blast_grpc.coordinator.workers import WorkerHandle
from blast_grpc.supervise import TaskSet
from blast_grpc.workerlink import LinkError, worker_token


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code


class FakeContext:
    async def abort(self, code: grpc.StatusCode, details: str, *_: Any) -> None:
        raise Aborted(code, details)


@pytest_asyncio.fixture
async def registry() -> AsyncIterator[tuple[Registry, list[WorkerHandle]]]:
    config = config_from_dict({"settings": {"workers": 1, "worker_listen": "127.0.0.1:0", "worker_heartbeat_s": 0.05,
                                            "worker_heartbeat_timeout_s": 0.3}})
    changed: list[WorkerHandle] = []
    tasks = TaskSet()
    reg = Registry(config, "tok", {"w1"}, changed.append, tasks)
    try:
        yield reg, changed
    finally:
        await reg.stop()
        await tasks.aclose()


def beat(worker_id: str = "h1", instance: str = "i1", **kw: Any) -> wpb.HeartbeatRequest:
    return wpb.HeartbeatRequest(worker_id=worker_id, instance=instance, address=kw.pop("address", "10.0.0.5:7000"),
                                contexts=kw.pop("contexts", 4), **kw)


@pytest.mark.asyncio
async def test_a_heartbeat_registers_once_and_lists_the_worker_ready(registry: tuple[Registry, list]) -> None:
    reg, changed = registry
    for _ in range(3):
        resp = await reg.Heartbeat(beat(), FakeContext())
        assert resp.interval_s == 0.05
    [h] = reg.handles
    assert isinstance(h, RemoteWorkerHandle)
    assert (h.worker_id, h.address, h.capacity, h.state) == ("h1", "10.0.0.5:7000", 4, pb.WORKER_STATE_READY)
    assert h.stub is not None and changed == [h]


@pytest.mark.parametrize(("request_", "needle"), [
    (beat(worker_id="w1"), "one of the coordinator's local workers"),
    (beat(worker_id="no spaces"), "worker_id 'no spaces'"),
    (beat(address="0.0.0.0:7000"), "wildcard"),
    (beat(address="nohost"), "not HOST:PORT"),
    (beat(contexts=0), "contexts must be at least 1"),
    (beat(instance=""), "instance is empty"),
])
@pytest.mark.asyncio
async def test_bad_heartbeats_are_refused_naming_what_is_wrong(registry: tuple[Registry, list],
                                                               request_: wpb.HeartbeatRequest, needle: str) -> None:
    reg, _ = registry
    with pytest.raises(Aborted) as e:
        await reg.Heartbeat(request_, FakeContext())
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and needle in str(e.value)
    assert reg.handles == []


@pytest.mark.asyncio
async def test_a_silent_worker_is_lost_and_reconciled_when_it_comes_back(registry: tuple[Registry, list]) -> None:
    reg, _ = registry
    await reg.Heartbeat(beat(), FakeContext())
    [h] = reg.handles
    h.running.add("task-kept")
    reg.start()
    await asyncio.wait_for(h.died.wait(), 30)  # no heartbeat for worker_heartbeat_timeout_s
    assert h.state == pb.WORKER_STATE_DEAD and h.stub is None and "no heartbeat" in h.last_exit
    # It comes back, still running a task the coordinator retried elsewhere, and one it still expects.
    resp = await reg.Heartbeat(beat(running=["task-retried", "task-kept"]), FakeContext())
    assert reg.handles == [h] and h.state == pb.WORKER_STATE_READY and h.restarts == 1
    assert list(resp.stale_tasks) == ["task-retried"]
    assert not h.died.is_set()  # a fresh event for its next death


@pytest.mark.asyncio
async def test_the_same_id_with_a_new_instance_replaces_the_old_process(registry: tuple[Registry, list]) -> None:
    reg, _ = registry
    await reg.Heartbeat(beat(instance="first"), FakeContext())
    [old] = reg.handles
    died = old.died
    await reg.Heartbeat(beat(instance="second"), FakeContext())
    assert died.is_set() and "replaced by a new process" in old.last_exit
    assert len(reg.handles) == 1 and old.instance == "second" and old.state == pb.WORKER_STATE_READY


@pytest.mark.asyncio
async def test_draining_takes_no_new_tasks_and_deregister_forgets(registry: tuple[Registry, list]) -> None:
    reg, _ = registry
    await reg.Heartbeat(beat(), FakeContext())
    await reg.Heartbeat(beat(draining=True), FakeContext())
    [h] = reg.handles
    assert h.state == pb.WORKER_STATE_STOPPING
    await reg.Deregister(wpb.DeregisterRequest(worker_id="h1", instance="other"), FakeContext())
    assert reg.handles == [h]  # another process's deregistration does not count
    await reg.Deregister(wpb.DeregisterRequest(worker_id="h1", instance="i1"), FakeContext())
    assert reg.handles == [] and h.died.is_set()


def handle(worker_id: str, running: int, capacity: int = 0) -> WorkerHandle:
    h = RemoteWorkerHandle(worker_id, "x:1", capacity=capacity) if capacity else WorkerHandle(worker_id, "unix:///x")
    h.running.update(f"t{i}" for i in range(running))
    return h


def test_placement_by_free_capacity() -> None:
    big, small = handle("big", 4, capacity=16), handle("small", 1, capacity=4)
    assert most_free([small, big], local=10) is big  # 12/16 free beats 3/4
    assert most_free([handle("full", 4, capacity=4)], local=10) is None  # never beyond what it reported
    local_a, local_b = handle("w1", 3), handle("w2", 1)
    assert most_free([local_a, local_b], local=10) is local_b  # local only: fewest running, as before


@pytest.mark.parametrize(("settings", "needle"), [
    ({"workers": 0}, "settings.worker_listen is not set"),
    ({"worker_tls_cert": "c.pem"}, "go together"),
    ({"worker_heartbeat_s": 5, "worker_heartbeat_timeout_s": 5}, "must be longer"),
])
def test_remote_worker_settings_are_checked(settings: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        config_from_dict({"settings": settings})


def test_the_worker_token_comes_from_a_file_the_environment_or_the_setting(tmp_path: Path) -> None:
    s = config_from_dict({"settings": {"worker_token": "from-config"}}).settings
    assert worker_token(s, environ={}) == "from-config"
    assert worker_token(s, environ={"BLAST_WORKER_TOKEN": " from-env\n"}) == "from-env"
    f = tmp_path / "token"
    f.write_text("from-file\n")
    assert worker_token(s, str(f), environ={"BLAST_WORKER_TOKEN": "from-env"}) == "from-file"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(LinkError, match="is empty"):
        worker_token(s, str(tmp_path / "empty"))
