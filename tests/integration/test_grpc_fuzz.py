"""Property-based requests against the live coordinator: every call ends with a proper status."""

from __future__ import annotations

from typing import Iterator

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blast_grpc import Engine
from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc._proto.blast.v1 import blast_pb2_grpc as bgrpc

# What a well-behaved server may answer to arbitrary input; UNKNOWN or INTERNAL would be our bug.
PROPER = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
          grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.RESOURCE_EXHAUSTED}
INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
TEXT = st.text(max_size=300) | st.sampled_from(["", " ", "x" * 100_001, "say hello", "\x00\ud7ff"])
URLS = st.sampled_from(["", "http://127.0.0.1:1/", "file:///etc/passwd", "javascript:alert(1)", "ht!tp://x",
                        "https://" + "a" * 3000]) | st.text(max_size=50)
IDS = st.sampled_from(["", "task_", "task_00000000000000000000"]) | st.text(max_size=40)
SPECS = st.builds(
    pb.TaskSpec, description=TEXT, initial_url=URLS, previous_task_id=IDS,
    cache_control=st.lists(st.sampled_from(["no-cache", "no-store", "no-cache-plan", "bogus", ""]), max_size=4),
    metadata=st.dictionaries(st.text(max_size=70), st.text(max_size=600), max_size=20),
)
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def stub(engine: Engine) -> Iterator[bgrpc.BlastServiceStub]:
    with grpc.insecure_channel(engine.address, options=[("grpc.max_send_message_length", 8 << 20)]) as ch:
        yield bgrpc.BlastServiceStub(ch)


def status_of(fn, *args) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    try:
        fn(*args, timeout=10)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@FUZZ
@given(spec=SPECS)
def test_submit_any_spec(stub: bgrpc.BlastServiceStub, spec: pb.TaskSpec) -> None:
    try:
        task = stub.SubmitTask(pb.SubmitTaskRequest(spec=spec), timeout=10).task
    except grpc.RpcError as exc:
        assert exc.code() in PROPER, (exc.code(), exc.details())
        return
    # Accepted: it must be accounted for; stop it at once so the fuzz stays cheap.
    assert task.task_id.startswith("task_")
    assert status_of(stub.CancelTask, pb.CancelTaskRequest(task_id=task.task_id)) in PROPER


@FUZZ
@given(task_id=IDS, from_seq=INT64, state=INT32, limit=INT32, reason=TEXT)
def test_read_calls_with_any_arguments(stub: bgrpc.BlastServiceStub, task_id: str, from_seq: int, state: int,
                                       limit: int, reason: str) -> None:
    for fn, req in [(stub.GetTask, pb.GetTaskRequest(task_id=task_id)),
                    (stub.CancelTask, pb.CancelTaskRequest(task_id=task_id, reason=reason)),
                    (stub.ListTasks, pb.ListTasksRequest(state=state, limit=limit))]:
        code = status_of(fn, req)
        assert code in PROPER, (fn, req, code)
    try:
        for _ in stub.WatchTask(pb.WatchTaskRequest(task_id=task_id, from_seq=from_seq), timeout=10):
            break
    except grpc.RpcError as exc:
        assert exc.code() in PROPER, (exc.code(), exc.details())


def test_the_server_is_still_up_after_the_fuzz(stub: bgrpc.BlastServiceStub) -> None:
    assert stub.GetMetrics(pb.GetMetricsRequest(), timeout=10).workers
