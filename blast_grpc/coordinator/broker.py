"""``TaskBrokerService``: what a worker's agent asks of the engine (launch subtasks, wait for them).

Served on the coordinator's internal address (a Unix socket in the runtime
directory), never on the public port. A wait is an ordinary cancellable RPC: if the
parent's agent is cancelled, the worker's call is cancelled and so is the wait.
"""

from __future__ import annotations

import asyncio
import logging
from typing import NoReturn

import grpc

from .._proto.blast.v1 import blast_pb2 as pb
from .._proto.blast.worker.v1 import worker_pb2 as wpb
from .._proto.blast.worker.v1 import worker_pb2_grpc as wgrpc
from ..config import Config
from .budget import Budget
from .human import HumanDesk, HumanRefused
from .launch import Launcher, ParentEnded
from .scheduler import Scheduler
from .service import initial_url_problem
from .tasks import TaskRecord, TaskStore

log = logging.getLogger("blast_grpc.broker")


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("unreachable")


async def _ended(rec: TaskRecord) -> TaskRecord:
    async for _ in rec.watch(rec.last_seq + 1):
        pass
    return rec


def _result(rec: TaskRecord) -> wpb.SubtaskResult:
    return wpb.SubtaskResult(task_id=rec.task_id, state=rec.state, result=rec.result,  # type: ignore[arg-type]
                             success=rec.success, error=rec.error)


class TaskBroker(wgrpc.TaskBrokerServiceServicer):
    def __init__(self, config: Config, store: TaskStore, launcher: Launcher, scheduler: Scheduler,
                 budget: Budget, human: HumanDesk) -> None:
        self.config = config
        self.human = human
        self.budget = budget
        self.store = store
        self.launcher = launcher
        self.scheduler = scheduler

    async def _parent(self, task_id: str, context: grpc.aio.ServicerContext) -> TaskRecord:
        rec = self.store.get(task_id)
        if rec is None:
            await _abort(context, grpc.StatusCode.NOT_FOUND, f"no task {task_id!r}")
        if rec.done:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, f"task {task_id} already ended")
        return rec

    async def LaunchSubtask(self, request: wpb.LaunchSubtaskRequest,
                            context: grpc.aio.ServicerContext) -> wpb.LaunchSubtaskResponse:
        parent = await self._parent(request.parent_task_id, context)
        c, s = self.config.constraints, self.config.settings
        if not c.allow_parallelism.task:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                         "task parallelism is off (constraints.allow_parallelism.task)")
        if parent.depth >= c.max_parallelism_nesting_depth:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                         f"depth {parent.depth} is at the limit (constraints.max_parallelism_nesting_depth="
                         f"{c.max_parallelism_nesting_depth}): do the work in this task")
        launched = sum(1 for ch in parent.children if not ch.copy)
        if launched >= s.max_subtasks_per_task:
            await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"this task already launched {launched} subtasks (settings.max_subtasks_per_task)")
        if not request.spec.description.strip():
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "the subtask needs a description")
        problem = initial_url_problem(request.spec.initial_url, "the subtask's initial_url")
        if problem:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, problem)
        copies = self.launcher.copies_allowed(request.num_copies)
        try:
            rec = await self.launcher.launch(request.spec, parent, copies)
        except ParentEnded as exc:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return wpb.LaunchSubtaskResponse(task_id=rec.task_id, copies=copies)

    async def AwaitBudget(self, request: wpb.AwaitBudgetRequest,
                          context: grpc.aio.ServicerContext) -> wpb.AwaitBudgetResponse:
        # Workers ask only while a cost limit is set (constraints.max_cost_per_minute / _hour).
        log.debug("AwaitBudget for task %s", request.task_id)
        waited = 0.0
        told = False
        while True:
            wait_s, limit = self.budget.wait()
            if wait_s <= 0:
                return wpb.AwaitBudgetResponse(waited_s=waited)
            rec = self.store.get(request.task_id)
            if rec is not None and not told:
                told = True
                rec.emit(waiting=pb.TaskWaiting(reason=(
                    f"waiting for budget: {limit} is used up; the next LLM call may start in about "
                    f"{wait_s:.1f}s")))
            step = min(wait_s, 1.0)  # re-check: other charges may arrive meanwhile
            await asyncio.sleep(step)
            waited += step

    async def WaitSubtasks(self, request: wpb.WaitSubtasksRequest,
                           context: grpc.aio.ServicerContext) -> wpb.WaitSubtasksResponse:
        parent = await self._parent(request.parent_task_id, context)
        recs: list[TaskRecord] = []
        for tid in request.task_ids:
            rec = self.store.get(tid)
            if rec is None or rec.parent is not parent:
                await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"{tid!r} is not a subtask of this task")
            recs.append(rec)
        if not recs:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "task_ids is empty")
        waits = {asyncio.create_task(_ended(r)): r for r in recs}
        # The worker closed the parent's context for the wait: its slot goes to the subtasks.
        self.scheduler.release(parent)
        try:
            pending = set(waits)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if request.first_success and any(waits[t].success for t in done):
                    break
        finally:
            for t in waits:
                t.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        await self.scheduler.reacquire(parent)
        if request.first_success:
            winners = [r for r in recs if r.done and r.success]
            if winners:
                return wpb.WaitSubtasksResponse(results=[_result(winners[0])])
        return wpb.WaitSubtasksResponse(results=[_result(r) for r in recs])

    async def AskHuman(self, request: wpb.AskHumanRequest, context: grpc.aio.ServicerContext) -> wpb.AskHumanResponse:
        # The worker parked the task's context before asking; HumanDesk releases its slot.
        rec = await self._parent(request.task_id, context)
        try:
            answer = await self.human.ask(rec, request.kind, request.question, request.jpeg, request.url)
        except HumanRefused as exc:
            await _abort(context, exc.code, str(exc))
        return wpb.AskHumanResponse(answer=answer)
