"""The people-in-the-loop RPCs of ``blast.v1.BlastService`` (RespondToTask, PauseTask,
GetTaskScreenshot), kept apart from ``service.py``; ``human.py`` does the work."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import grpc

from .._proto.blast.v1 import blast_pb2 as pb
from .human import HumanDesk, HumanRefused
from .tasks import TaskRecord


class HumanRpcs:
    """Mixed into ``BlastService``, which provides ``_find``, ``_proto`` and ``config``."""

    human: HumanDesk

    if TYPE_CHECKING:
        async def _find(self, task_id: str, context: grpc.aio.ServicerContext) -> TaskRecord: ...
        def _proto(self, rec: TaskRecord) -> pb.Task: ...

    @staticmethod
    async def _refused(context: grpc.aio.ServicerContext, exc: HumanRefused) -> NoReturn:
        await context.abort(exc.code, str(exc))
        raise AssertionError("unreachable")

    async def RespondToTask(self, request: pb.RespondToTaskRequest,
                            context: grpc.aio.ServicerContext) -> pb.RespondToTaskResponse:
        rec = await self._find(request.task_id, context)
        if not request.answer.strip():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "answer is required: what the task should be told")
        limit = self.human.config.settings.max_task_chars
        if len(request.answer) > limit:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"answer is {len(request.answer)} characters; the limit is {limit} "
                                "(settings.max_task_chars)")
        try:
            self.human.respond(rec, request.answer)
        except HumanRefused as exc:
            await self._refused(context, exc)
        return pb.RespondToTaskResponse(task=self._proto(rec))

    async def PauseTask(self, request: pb.PauseTaskRequest, context: grpc.aio.ServicerContext) -> pb.PauseTaskResponse:
        rec = await self._find(request.task_id, context)
        try:
            await self.human.pause(rec)
        except HumanRefused as exc:
            await self._refused(context, exc)
        return pb.PauseTaskResponse(task=self._proto(rec))

    async def GetTaskScreenshot(self, request: pb.GetTaskScreenshotRequest,
                                context: grpc.aio.ServicerContext) -> pb.GetTaskScreenshotResponse:
        rec = await self._find(request.task_id, context)
        try:
            jpeg, url = await self.human.screenshot(rec)
        except HumanRefused as exc:
            await self._refused(context, exc)
        return pb.GetTaskScreenshotResponse(jpeg=jpeg, url=url)
