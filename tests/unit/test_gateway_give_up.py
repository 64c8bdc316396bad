"""How a task's end reads through the gateway, from task events alone (no engine): an agent
that gives up is a failed response and a chat error, never "completed" / "stop"."""

from __future__ import annotations

from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from blast_grpc.client import ENGINE_SHUTDOWN_REASON
from gateway.chat import task_error
from gateway.convert import Tokens
from gateway.events import ResponseBase, ResponseEvents

ROOT = "task_root"


def _events(end: pb.TaskEvent) -> tuple[ResponseEvents, list[str]]:
    tr = ResponseEvents(ResponseBase(id=f"resp_{ROOT}", created_at=1, model="gpt-4.1"), ROOT)
    types = [e.type for e in tr.start()]
    for ev in (pb.TaskEvent(task_id=ROOT, seq=1, scheduled=pb.TaskScheduled()),
               pb.TaskEvent(task_id=ROOT, seq=2, plan=pb.TaskPlan(text="look around")), end):
        types += [e.type for e in tr.feed(ev)]
    return tr, types


def _record(state: int, success: bool, result: str = "", error: str = "") -> pb.Task:
    return pb.Task(task_id=ROOT, state=state, success=success, result=result, error=error)  # type: ignore[arg-type]


def test_give_up_is_failed_with_the_agents_reason() -> None:
    end = pb.TaskEvent(task_id=ROOT, seq=3, completed=pb.TaskCompleted(result="No poem here.", success=False))
    tr, types = _events(end)
    resp = tr.final(_record(pb.TASK_STATE_COMPLETED, False, "No poem here."), Tokens(5, 2))
    assert resp.status == "failed" and resp.error is not None
    assert (resp.error.type, resp.error.code) == ("task_unsuccessful", "server_error")
    assert resp.error.message == "The agent could not do the task: No poem here."
    assert resp.output_text == "No poem here." and resp.output[-1].status == "incomplete"  # type: ignore[union-attr]
    assert [e.type for e in tr.finish(_record(pb.TASK_STATE_COMPLETED, False), Tokens())] == ["response.failed"]
    assert "response.output_text.done" in types
    err = task_error(end)
    assert err is not None and err.status == 500 and err.code == "task_unsuccessful" and err.retry is False


def test_success_completes_and_failure_is_task_failed() -> None:
    done = pb.TaskEvent(task_id=ROOT, seq=3, completed=pb.TaskCompleted(result="Kumbo.", success=True))
    tr, _ = _events(done)
    assert tr.final(_record(pb.TASK_STATE_COMPLETED, True, "Kumbo."), Tokens()).status == "completed"
    assert task_error(done) is None
    failed = pb.TaskEvent(task_id=ROOT, seq=3, failed=pb.TaskFailed(error="browser died"))
    tr, _ = _events(failed)
    resp = tr.final(_record(pb.TASK_STATE_FAILED, False, error="browser died"), Tokens())
    assert resp.status == "failed" and resp.error is not None and resp.error.type == "task_failed"
    err = task_error(failed)
    assert err is not None and err.code == "task_failed"


def test_a_task_cancelled_by_shutdown_is_a_retryable_503() -> None:
    end = pb.TaskEvent(task_id=ROOT, seq=3, cancelled=pb.TaskCancelled(reason=ENGINE_SHUTDOWN_REASON))
    err = task_error(end)
    assert err is not None and (err.status, err.code, err.retry) == (503, "engine_unavailable", True)
    by_client = task_error(pb.TaskEvent(task_id=ROOT, seq=3, cancelled=pb.TaskCancelled(reason="stop")))
    assert by_client is not None and (by_client.status, by_client.code) == (500, "task_cancelled")
