"""The worker's side of TaskBrokerService: the ``Broker`` a task's agent uses for subtask tools."""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

import grpc

from .._proto.blast.v1 import blast_pb2 as pb
from .._proto.blast.worker.v1 import worker_pb2 as wpb
from .._proto.blast.worker.v1 import worker_pb2_grpc as wgrpc
from ..agent.subtasks import BrokerRefused, SubtaskOutcome
from ..states import TERMINAL_KINDS
from .session import BrowserSession

log = logging.getLogger("blast_grpc.worker")

# Refusals the model can act on; anything else is the engine failing, and fails the task.
_REFUSALS = {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED,
             grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}


class GrpcBroker:
    def __init__(self, stub: wgrpc.TaskBrokerServiceStub, parent_task_id: str, session: BrowserSession) -> None:
        self._stub = stub
        self._parent = parent_task_id
        self._session = session

    async def launch(self, task: str, initial_url: str, num_copies: int) -> tuple[str, int]:
        try:
            resp = await self._stub.LaunchSubtask(wpb.LaunchSubtaskRequest(
                parent_task_id=self._parent, spec=pb.TaskSpec(description=task, initial_url=initial_url),
                num_copies=num_copies))
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _REFUSALS:
                raise BrokerRefused(exc.details() or exc.code().name) from exc
            raise
        return resp.task_id, resp.copies

    async def prepare(self, count: int) -> int:
        """Advice: ``count`` subtasks are coming (the plan says so); how many contexts the workers make.

        Only advice, so a coordinator that cannot take it (shutting down, the task ended)
        costs nothing but the log line: the launches themselves say what is wrong.
        """
        try:
            resp = await self._stub.PrepareSubtasks(wpb.PrepareSubtasksRequest(parent_task_id=self._parent,
                                                                               count=count), timeout=5)
        except grpc.aio.AioRpcError as exc:
            log.info("PrepareSubtasks for %s: %s", self._parent, exc.details() or exc.code().name)
            return 0
        return resp.preparing

    async def wait(self, task_ids: list[str], first_success: bool) -> list[SubtaskOutcome]:
        try:
            # Parked while waiting: the coordinator gives this task's slot to others and
            # answers only once it has a slot again.
            async with self._session.parked():
                resp = await self._stub.WaitSubtasks(wpb.WaitSubtasksRequest(
                    parent_task_id=self._parent, task_ids=task_ids, first_success=first_success))
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _REFUSALS:
                raise BrokerRefused(exc.details() or exc.code().name) from exc
            raise
        return [SubtaskOutcome(r.task_id, TERMINAL_KINDS.get(r.state, "running"), r.result, r.success, r.error)
                for r in resp.results]


def budget_gate(stub: wgrpc.TaskBrokerServiceStub, task_id: str) -> Callable[[], Awaitable[None]]:
    """A gate for the task's LLM calls: returns once the coordinator says the call fits the budget."""

    async def gate() -> None:
        await stub.AwaitBudget(wpb.AwaitBudgetRequest(task_id=task_id))

    return gate
