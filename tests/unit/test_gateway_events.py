"""The gateway's translation of a task's events into Responses stream events (``gateway/events.py``),
fed hand-made ``TaskEvent``s: no engine, no HTTP. Checks the shapes the OpenAI SDK relies on."""

from __future__ import annotations

from openai.types.responses import ResponseStreamEvent

from blast_grpc._proto.blast.v1 import blast_pb2 as pb
from gateway.convert import Tokens
from gateway.events import ResponseBase, ResponseEvents

ROOT, CHILD = "task_root", "task_child"


def ev(task_id: str = ROOT, **kind: object) -> pb.TaskEvent:
    return pb.TaskEvent(task_id=task_id, parent_task_id="" if task_id == ROOT else ROOT, **kind)  # type: ignore[arg-type]


def run(events: list[pb.TaskEvent], root: pb.Task) -> tuple[ResponseEvents, list[ResponseStreamEvent]]:
    tr = ResponseEvents(ResponseBase(id="resp_" + ROOT, created_at=1, model="sim"), ROOT)
    out = tr.start()
    for e in events:
        out += tr.feed(e)
    out += tr.finish(root, Tokens(prompt=10, completion=5))
    return tr, out


def types(out: list[ResponseStreamEvent]) -> list[str]:
    return [e.type for e in out]


COMPLETED_RUN = [
    ev(scheduled=pb.TaskScheduled(queue_position=1)),
    ev(started=pb.TaskStarted(worker_id="w1", attempt=1)),
    ev(step=pb.TaskStep(number=1, action="click [3]", url="http://x/")),
    ev(subtask_launched=pb.SubtaskLaunched(subtask_id=CHILD, description="look at asia")),
    ev(CHILD, started=pb.TaskStarted(worker_id="w2", attempt=1)),
    ev(CHILD, step=pb.TaskStep(number=1, action="read")),
    ev(CHILD, completed=pb.TaskCompleted(result="gorilla", success=True)),
    ev(completed=pb.TaskCompleted(result="The answer is " + "x" * 100, success=True)),
]


def test_a_completed_task_streams_reasoning_per_task_then_the_answer_then_completed() -> None:
    tr, out = run(COMPLETED_RUN, pb.Task(task_id=ROOT, state=pb.TASK_STATE_COMPLETED))
    t = types(out)
    assert t[:2] == ["response.created", "response.in_progress"] and t[-1] == "response.completed"
    assert [e.sequence_number for e in out] == list(range(len(out)))  # gap-free, from 0
    final = out[-1].response  # type: ignore[union-attr]
    kinds = [item.type for item in final.output]
    assert kinds == ["reasoning", "reasoning", "message"]  # the task's item, the subtask's, the answer
    root_item, child_item, answer = final.output
    assert root_item.summary[0].text == "Step 1: click [3] → http://x/"  # type: ignore[union-attr]
    assert child_item.status == "completed" and child_item.summary[-1].text == "Result: gorilla"  # type: ignore[union-attr]
    assert answer.content[0].text == "The answer is " + "x" * 100  # type: ignore[union-attr]
    deltas = "".join(e.delta for e in out if e.type == "response.output_text.delta")  # type: ignore[union-attr]
    assert deltas == answer.content[0].text and t.count("response.output_text.delta") > 1  # type: ignore[union-attr]
    assert final.usage is not None and final.usage.total_tokens == 15
    assert final.output_text == answer.content[0].text  # type: ignore[union-attr]


def test_feeding_the_same_events_gives_the_same_stream() -> None:
    root = pb.Task(task_id=ROOT, state=pb.TASK_STATE_COMPLETED)
    first, second = run(COMPLETED_RUN, root)[1], run(COMPLETED_RUN, root)[1]
    assert [e.model_dump() for e in first] == [e.model_dump() for e in second]


def test_nothing_follows_the_top_level_tasks_end() -> None:
    tr, _ = run(COMPLETED_RUN, pb.Task(task_id=ROOT, state=pb.TASK_STATE_COMPLETED))
    assert tr.feed(ev(CHILD, step=pb.TaskStep(number=2, action="late"))) == []


def test_a_failed_task_is_response_failed_with_the_error_and_open_items_closed() -> None:
    events = [ev(started=pb.TaskStarted(worker_id="w1", attempt=1)),
              ev(subtask_launched=pb.SubtaskLaunched(subtask_id=CHILD, description="sub")),
              ev(CHILD, step=pb.TaskStep(number=1, action="read")),
              ev(failed=pb.TaskFailed(error="worker w1 died"))]
    _, out = run(events, pb.Task(task_id=ROOT, state=pb.TASK_STATE_FAILED, error="worker w1 died"))
    final = out[-1]
    assert final.type == "response.failed"
    assert final.response.error is not None and final.response.error.message == "worker w1 died"  # type: ignore[union-attr]
    assert all(item.status != "in_progress" for item in final.response.output)  # type: ignore[union-attr]
    assert "message" not in [item.type for item in final.response.output]  # type: ignore[union-attr]


def test_a_cancelled_task_ends_incomplete_and_a_retry_shows_in_the_reasoning() -> None:
    events = [ev(started=pb.TaskStarted(worker_id="w1", attempt=1)),
              ev(waiting=pb.TaskWaiting(reason="worker w1 died; retrying on another worker")),
              ev(started=pb.TaskStarted(worker_id="w2", attempt=2)),
              ev(cancelled=pb.TaskCancelled(reason="cancelled by the client"))]
    _, out = run(events, pb.Task(task_id=ROOT, state=pb.TASK_STATE_CANCELLED))
    assert out[-1].type == "response.incomplete"
    texts = [p.text for p in out[-1].response.output[0].summary]  # type: ignore[union-attr]
    assert texts == ["Waiting: worker w1 died; retrying on another worker",
                     "Restarted on worker w2 (attempt 2)", "Cancelled: cancelled by the client"]
