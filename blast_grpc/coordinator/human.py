"""People in the loop: a task's questions (``ask_human``), pauses, and the answers to them.

::

    agent calls ask_human(q)        PauseTask ──▶ worker.PauseTask ──▶ agent, after its step
             │                                                            │
             └──── TaskBroker.AskHuman(kind, question, screenshot) ◀──────┘
                              │  HumanDesk.ask
                              ▼
       RUNNING ──▶ WAITING_FOR_HUMAN   input_required event; the worker parked the
                              │        context, so the task's browser slot is released
           RespondToTask ─────┤ respond: human_responded event, state RUNNING
                              ▼
       ask waits for a slot again (parked tasks before the queue), returns the answer:
       the tool result of ask_human, or the model's next user message after a pause

       no answer within settings.human_response_timeout_s ──▶ FAILED, saying so

``HumanDesk`` is the one owner of the open questions. A question lives exactly as long
as the worker's ``AskHuman`` call: if that call goes away (the task was cancelled, its
worker died) the question goes with it, so an answer can never reach a task that no
longer waits. While a task waits, ``GetTaskScreenshot`` shows the page as the task left
it (the worker sends it with the question: the parked context has no live page).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Awaitable, Callable, TypeVar

import grpc

from .._proto.blast.v1 import blast_pb2 as pb
from .._proto.blast.worker.v1 import worker_pb2 as wpb
from .._proto.blast.worker.v1 import worker_pb2_grpc as wgrpc
from ..config import Config
from .scheduler import Scheduler
from .tasks import TaskRecord
from .workers import WorkerHandle

log = logging.getLogger("blast_grpc.human")
T = TypeVar("T")

QUESTION, PAUSED = "question", "paused"
WORKER_CALL_S = 30.0  # a worker's PauseTask / Screenshot answer (a screenshot of a busy page can be slow)


class HumanRefused(Exception):
    """A request a person (or the worker) made that cannot be done now; ``code`` is its gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Question:
    kind: str
    question: str
    jpeg: bytes
    url: str
    answer: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


def _state(rec: TaskRecord) -> str:
    return pb.TaskState.Name(rec.state)  # type: ignore[arg-type]


class HumanDesk:
    def __init__(self, config: Config, scheduler: Scheduler, workers: Callable[[], list[WorkerHandle]]) -> None:
        self.config = config
        self.scheduler = scheduler
        self._workers = workers
        self._open: dict[str, _Question] = {}  # task id -> its open question

    def waiting(self, task_id: str) -> bool:
        """Whether the task waits for a person's answer right now."""
        q = self._open.get(task_id)
        return q is not None and not q.answer.done()

    # --- the worker's side (TaskBroker.AskHuman) ---------------------------------
    async def ask(self, rec: TaskRecord, kind: str, question: str, jpeg: bytes = b"", url: str = "") -> str:
        """Wait for a person's answer to the task's question (or paused task); see the module docs."""
        if kind not in (QUESTION, PAUSED):
            raise HumanRefused(grpc.StatusCode.INVALID_ARGUMENT, f"kind must be {QUESTION!r} or {PAUSED!r}, got {kind!r}")
        if rec.state != pb.TASK_STATE_RUNNING or rec.task_id in self._open:
            raise HumanRefused(grpc.StatusCode.FAILED_PRECONDITION,
                               f"task {rec.task_id} cannot wait for a person now ({_state(rec)})")
        timeout = self.config.settings.human_response_timeout_s
        q = self._open[rec.task_id] = _Question(kind, question, jpeg, url)
        try:
            rec.wait_for_human(question, kind, url)
            self.scheduler.release(rec)  # the worker parked the context: the slot is free meanwhile
            try:
                async with asyncio.timeout(timeout):
                    answer = await q.answer
            except TimeoutError:
                what = "question" if kind == QUESTION else "paused task"
                reason = (f"nobody answered the {what} within settings.human_response_timeout_s = {timeout:g}s"
                          + (f": {question}" if kind == QUESTION else ""))
                rec.finish(pb.TASK_STATE_FAILED, error=reason)
                self.scheduler.cancel(rec, reason)  # stops the attempt: the worker drops the parked task
                raise HumanRefused(grpc.StatusCode.DEADLINE_EXCEEDED, reason) from None
        finally:
            del self._open[rec.task_id]
        await self.scheduler.reacquire(rec)
        return answer

    # --- the client's side (BlastService) ------------------------------------------
    def respond(self, rec: TaskRecord, answer: str) -> None:
        """Give the waiting task its answer; it runs again once it has a browser slot."""
        q = self._open.get(rec.task_id)
        # An ended task's question stays open until its worker's call is gone: not waiting any more.
        if q is None or q.answer.done() or rec.state != pb.TASK_STATE_WAITING_FOR_HUMAN:
            raise HumanRefused(grpc.StatusCode.FAILED_PRECONDITION,
                               f"task {rec.task_id} is not waiting for a person ({_state(rec)})")
        rec.human_answered(answer)
        q.answer.set_result(answer)

    async def _call_worker(self, rec: TaskRecord, what: str,
                           call: Callable[[wgrpc.WorkerServiceStub], Awaitable[T]]) -> T:
        """Call the worker running ``rec``; its refusals become FAILED_PRECONDITION (the task moved on)."""
        worker = next((w for w in self._workers() if w.worker_id == rec.worker_id), None)
        if worker is None or worker.stub is None:
            raise HumanRefused(grpc.StatusCode.FAILED_PRECONDITION,
                               f"task {rec.task_id} is not running on a worker now ({_state(rec)})")
        try:
            return await call(worker.stub)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                raise HumanRefused(grpc.StatusCode.FAILED_PRECONDITION,
                                   f"task {rec.task_id}: {exc.details()} ({_state(rec)})") from exc
            raise HumanRefused(grpc.StatusCode.UNAVAILABLE,
                               f"worker {worker.worker_id} could not {what}: {exc.details()}") from exc

    async def pause(self, rec: TaskRecord) -> None:
        """Ask the task's agent to stop after its current step; returns once it waits or has ended."""
        if rec.state == pb.TASK_STATE_WAITING_FOR_HUMAN or rec.done:
            return
        if rec.state != pb.TASK_STATE_RUNNING or rec.is_race:
            raise HumanRefused(grpc.StatusCode.FAILED_PRECONDITION,
                               f"task {rec.task_id} is not running ({_state(rec)})"
                               + ("; it runs as racing copies: pause one of its subtasks" if rec.is_race else ""))
        await self._call_worker(rec, "pause the task",
                                lambda stub: stub.PauseTask(wpb.PauseTaskRequest(task_id=rec.task_id),
                                                            timeout=WORKER_CALL_S))
        if rec.state == pb.TASK_STATE_WAITING_FOR_HUMAN:
            return
        async for _ in rec.watch(rec.last_seq + 1):
            if rec.state == pb.TASK_STATE_WAITING_FOR_HUMAN:
                return

    async def screenshot(self, rec: TaskRecord) -> tuple[bytes, str]:
        """The task's page: live while it runs, as it was left while it waits for a person."""
        q = self._open.get(rec.task_id)
        if q is not None and rec.state == pb.TASK_STATE_WAITING_FOR_HUMAN:
            if not q.jpeg:
                raise HumanRefused(grpc.StatusCode.FAILED_PRECONDITION,
                                   f"task {rec.task_id} waits for a person and its page could not be captured")
            return q.jpeg, q.url
        if rec.state != pb.TASK_STATE_RUNNING:
            raise HumanRefused(grpc.StatusCode.FAILED_PRECONDITION,
                               f"task {rec.task_id} has no page to show ({_state(rec)})")
        resp = await self._call_worker(rec, "take a screenshot",
                                       lambda stub: stub.Screenshot(wpb.ScreenshotRequest(task_id=rec.task_id),
                                                                    timeout=WORKER_CALL_S))
        return resp.jpeg, resp.url
