"""The worker's gRPC face: runs one agent loop per ``RunTask`` call, in its own browser context.

Cancelling the call (the coordinator does this for CancelTask, for first-of-N
losers and when draining, and as soon as it has a task's last event) cancels the
agent task, which cancels the pending LLM request or Playwright call; the clean-up
that then keeps or closes the context runs as a task owned by ``IdleContexts``
(``adopt``), so it finishes even though the handler itself is cancelled.

If the worker's Chromium dies, ``browser_lost`` ends every running task at once: a
last step event says what died (the step that was interrupted, ``Error: the Chromium
browser of worker w1 died ...``), then the call fails with ``UNAVAILABLE`` and the
worker exits (``EXIT_BROWSER_LOST``), so the coordinator treats it as a dead worker
and retries the task elsewhere. A worker that stops because one of its long-lived loops
crashed (``EXIT_LOOP_CRASHED``) ends its running tasks the same way, with the step action
``(worker loop crashed)``. Nothing a task's events carry (plan, steps, answer,
error) contains a secret value: it all passes ``Secrets.redact``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from typing import AsyncIterator, Awaitable, Callable

import grpc
from playwright.async_api import Browser as PWBrowser
from playwright.async_api import BrowserContext
from playwright.async_api import Error as PlaywrightError

from .._proto.blast.v1 import blast_pb2 as pb
from .._proto.blast.worker.v1 import worker_pb2 as wpb
from .._proto.blast.worker.v1 import worker_pb2_grpc as wgrpc
from ..agent.loop import Agent, AgentFailed, Outcome, StepReport
from ..agent.secrets import Secrets
from ..agent.tools import ToolFailed
from ..config import Config
from ..extraction import ExtractionError, ExtractionPool
from ..llm import LLM, LLMUnavailable, UsageMeter
from .broker_client import GrpcBroker, budget_gate
from .contexts import IdleContexts
from .exits import EXITING_METADATA
from .human_client import GrpcHuman, ScreenshotWithheld, screenshot
from .navigation import UrlPolicy
from .session import BrowserSession
from .thumbnails import Thumbnails

EXITING = ((EXITING_METADATA, "1"),)  # see exits.py

log = logging.getLogger("blast_grpc.worker")


def _usage_msg(meter: UsageMeter) -> wpb.RunTaskResponse | None:
    delta = meter.take()
    if not delta:
        return None
    return wpb.RunTaskResponse(
        usage=wpb.UsageDelta(
            usage=[
                pb.Usage(model=m, prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens,
                         requests=u.requests, llm_seconds=u.seconds)
                for m, u in delta.items()
            ],
            calls=[wpb.LlmCall(model=m, seconds=t) for m, u in delta.items() for t in u.calls],
        )
    )


def _step_msg(r: StepReport, secrets: Secrets) -> wpb.RunTaskResponse:
    hide = secrets.redact
    return wpb.RunTaskResponse(
        step=pb.TaskStep(number=r.number, thought=hide(r.thought), action=hide(r.action), url=hide(r.url),
                         result=hide(r.result)[:2000], detail=hide(r.detail), replayed=r.replayed)
    )


def _redacted(msg: wpb.RunTaskResponse, secrets: Secrets) -> wpb.RunTaskResponse:
    """``msg`` with any secret value in its texts replaced by the placeholder (steps are redacted already)."""
    kind = msg.WhichOneof("kind")
    if not secrets or kind in (None, "step", "usage"):
        return msg
    if kind == "plan":
        return wpb.RunTaskResponse(plan=pb.TaskPlan(text=secrets.redact(msg.plan.text)))
    if kind == "completed":
        return wpb.RunTaskResponse(completed=pb.TaskCompleted(result=secrets.redact(msg.completed.result),
                                                              success=msg.completed.success))
    if kind == "failed":
        return wpb.RunTaskResponse(failed=pb.TaskFailed(error=secrets.redact(msg.failed.error)))
    if kind == "recording":
        return wpb.RunTaskResponse(recording=secrets.redact(msg.recording))
    return msg


class WorkerService(wgrpc.WorkerServiceServicer):
    def __init__(self, worker_id: str, config: Config, browser: PWBrowser, llm: LLM, idle: IdleContexts,
                 policy: UrlPolicy, broker: wgrpc.TaskBrokerServiceStub | None = None,
                 extraction: ExtractionPool | None = None, secrets: Secrets | None = None) -> None:
        self.worker_id = worker_id
        self.config = config
        self.browser = browser
        self.idle = idle
        self.policy = policy
        self.llm = llm
        self.broker = broker
        self.extraction = extraction
        self.contexts: dict[str, BrowserContext] = {}  # open contexts by task id
        self.sessions: dict[str, BrowserSession] = {}  # tasks running here (a parked one has no context)
        self.secrets = secrets or Secrets()
        # Running tasks' update queues and agents; None in a queue means "the browser is gone".
        self._running: dict[str, tuple[asyncio.Queue[wpb.RunTaskResponse | None], Agent]] = {}
        self._none_running = asyncio.Event()  # a remote worker's drain waits on it (remote.py)
        self._none_running.set()
        self._dropped: set[str] = set()  # tasks ended by drop(): their context is not kept
        self.lost_reason = ""  # set once the browser died (or the worker stops after a crashed loop)
        self.lost_action = ""  # the action of the last step a running task then reports
        # Only with a cost limit does an LLM call ask the coordinator first (AwaitBudget).
        c = config.constraints
        self._cost_limited = c.max_cost_per_minute is not None or c.max_cost_per_hour is not None

    def browser_lost(self, reason: str, action: str = "(browser lost)") -> None:
        """The browser died, or the worker stops because a loop of it crashed (``action`` says
        which): every running task reports it and ends (see the module docs)."""
        self.lost_reason = reason
        self.lost_action = action
        for queue, _ in self._running.values():
            queue.put_nowait(None)

    def running_ids(self) -> list[str]:
        return sorted(self._running)

    def idle_event(self) -> asyncio.Event:
        """Set while no task runs here."""
        return self._none_running

    def drop(self, task_id: str, reason: str) -> None:
        """End a task the coordinator no longer expects from this worker (a remote worker that
        was cut off: the task was retried elsewhere). Its stream, if still open, says why."""
        entry = self._running.get(task_id)
        if entry is not None:
            self._dropped.add(task_id)
            entry[0].put_nowait(wpb.RunTaskResponse(failed=pb.TaskFailed(error=reason)))

    def _lost_step(self, agent: Agent, attempt: int) -> wpb.RunTaskResponse:
        retries = self.config.settings.task_retries_on_worker_death
        then = ("the engine retries the task on another worker" if attempt <= retries
                else "the task cannot be retried again (settings.task_retries_on_worker_death)")
        report = StepReport(max(agent.current_step, 1), "", self.lost_action, "", f"Error: {self.lost_reason}; {then}")
        return _step_msg(report, self.secrets)

    def _extractor(self, meter: UsageMeter) -> Callable[[str, str], Awaitable[tuple[str, str]]] | None:
        pool = self.extraction
        if pool is None:
            return None

        async def extract(html: str, query: str) -> tuple[str, str]:
            try:
                r = await pool.extract(html, query)
            except ExtractionError as exc:
                raise ToolFailed(str(exc)) from exc
            for model, (prompt, completion, requests) in r.usage.items():
                meter.add(model, prompt, completion, requests)
            return r.report(), json.dumps({"chunks": r.chunks, "chars": r.chars, "unread": len(r.unread),
                                           "in_flight": r.max_in_flight, "pids": r.pids, "block": r.block})

        return extract

    def _thumbnails(self) -> Thumbnails | None:
        """A task's step thumbnails for the dashboard: none unless settings.dashboard_screenshots is on, and
        none with secrets (a picture cannot be redacted)."""
        s = self.config.settings
        if not s.dashboard_screenshots or self.secrets:
            return None
        return Thumbnails(s.dashboard_screenshots_per_task, s.dashboard_screenshot_bytes_per_task)

    async def GetStatus(self, request: wpb.GetStatusRequest, context: grpc.aio.ServicerContext) -> wpb.GetStatusResponse:
        return wpb.GetStatusResponse(
            worker_id=self.worker_id,
            browser_ready=self.browser.is_connected(),
            open_contexts=sorted(self.contexts),
            pid=os.getpid(),
            warm_contexts=self.idle.warm_count,
            kept_contexts=self.idle.kept_ids,
            browser_contexts=len(self.browser.contexts),
        )

    async def TrimIdle(self, request: wpb.TrimIdleRequest, context: grpc.aio.ServicerContext) -> wpb.TrimIdleResponse:
        return wpb.TrimIdleResponse(closed=await self.idle.trim())

    async def WarmUp(self, request: wpb.WarmUpRequest, context: grpc.aio.ServicerContext) -> wpb.WarmUpResponse:
        return wpb.WarmUpResponse(warm_contexts=self.idle.expect(request.expected))

    async def PauseTask(self, request: wpb.PauseTaskRequest, context: grpc.aio.ServicerContext) -> wpb.PauseTaskResponse:
        running = self._running.get(request.task_id)
        if running is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"task {request.task_id} does not run on {self.worker_id}")
            raise AssertionError("unreachable")  # abort raises
        running[1].request_pause()  # the agent asks a person after its current step (agent/human.py)
        return wpb.PauseTaskResponse()

    async def Screenshot(self, request: wpb.ScreenshotRequest, context: grpc.aio.ServicerContext
                         ) -> wpb.ScreenshotResponse:
        session = self.sessions.get(request.task_id)
        running = self._running.get(request.task_id)
        if session is None or running is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"task {request.task_id} does not run on {self.worker_id}")
            raise AssertionError("unreachable")  # abort raises
        try:
            jpeg, url = await screenshot(session, self.config.settings.action_timeout_s, self.secrets,
                                         running[1].typed_secret_here)
        except ScreenshotWithheld as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"no screenshot: {exc}")
        except RuntimeError:  # no page: parked while it waits for subtasks, or not open yet
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"task {request.task_id} has no open page now (it waits for its subtasks)")
        except PlaywrightError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"the page could not be captured: {exc.message}")
        return wpb.ScreenshotResponse(jpeg=jpeg, url=url)

    async def RunTask(
        self, request: wpb.RunTaskRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[wpb.RunTaskResponse]:
        task_id = request.task_id
        if self.lost_reason:
            await context.abort(grpc.StatusCode.UNAVAILABLE, self.lost_reason, EXITING)
        if task_id in self.sessions:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"task {task_id} is already running here")
        queue: asyncio.Queue[wpb.RunTaskResponse | None] = asyncio.Queue()
        meter = UsageMeter()

        def flush_usage() -> None:
            usage = _usage_msg(meter)
            if usage is not None:
                queue.put_nowait(usage)

        thumbnails = self._thumbnails()

        async def on_step(r: StepReport) -> None:
            flush_usage()
            msg = _step_msg(r, self.secrets)
            if thumbnails is not None and session.has_page:
                msg.step.thumbnail = await thumbnails.take(session.page)
            log.debug("task %s step %d at %s: %s -> %s", task_id, r.number, msg.step.url, msg.step.action,
                      msg.step.result[:300])
            queue.put_nowait(msg)

        async def on_plan(text: str) -> None:
            flush_usage()
            queue.put_nowait(wpb.RunTaskResponse(plan=pb.TaskPlan(text=text)))

        session = BrowserSession(self.idle.new_context, task_id, self.contexts, self.config.settings.action_timeout_s,
                                 self.idle.refusals, self.config.settings.max_tabs)
        self.sessions[task_id] = session
        broker = (GrpcBroker(self.broker, task_id, session)
                  if self.broker is not None and request.may_launch_subtasks else None)
        # A person may be asked (ask_human, PauseTask): human_client.py. The page check is the agent's (bound below).
        human = (GrpcHuman(self.broker, task_id, session, self.config.settings.action_timeout_s, self.secrets,
                           lambda: agent.typed_secret_here()) if self.broker is not None else None)
        agent = Agent(self.config.for_task(request.spec.model), self.llm, meter, on_step, on_plan, broker=broker,
                      extractor=self._extractor(meter), copy=request.copy, copies=request.copies,
                      refusal=self.policy.refusal,
                      gate=budget_gate(self.broker, task_id) if self.broker is not None and self._cost_limited
                      else None,
                      replay=request.replay, secrets=self.secrets, human=human)
        self._running[task_id] = (queue, agent)
        self._none_running.clear()
        runner = asyncio.create_task(self._drive(agent, session, request, queue), name=f"agent-{task_id}")
        ended = False
        try:
            while True:
                msg = await queue.get()
                if msg is None:  # the browser died under the task (what came before it still counts)
                    yield self._lost_step(agent, request.attempt)
                    await context.abort(grpc.StatusCode.UNAVAILABLE, self.lost_reason, EXITING)
                    return
                msg = _redacted(msg, self.secrets)
                if msg.WhichOneof("kind") in ("completed", "failed"):
                    ended = True
                    usage = _usage_msg(meter)
                    if usage is not None:
                        yield usage
                    yield msg
                    return
                yield msg
        finally:
            # Nothing here may await: the coordinator cancels this handler as soon as it has the
            # task's end, and an await would be interrupted with the context neither kept nor closed.
            del self._running[task_id]
            if not self._running:
                self._none_running.set()
            runner.cancel()
            keep = ended and task_id not in self._dropped  # a dropped task's run goes on elsewhere
            self._dropped.discard(task_id)
            self.idle.adopt(self._finish(task_id, runner, session, keep=keep), f"finish-{task_id}")

    async def _finish(self, task_id: str, runner: asyncio.Task[None], session: BrowserSession, keep: bool) -> None:
        """After a task's call ended: wait for its agent to stop, then keep its context or close it."""
        try:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
        finally:
            del self.sessions[task_id]  # only now may the same task id run here again
        kept = await session.detach() if keep else None
        if kept is not None:  # a follow-up task may continue in it (conversation continuity)
            await self.idle.keep(task_id, kept)
        await session.close()

    async def _drive(
        self, agent: Agent, session: BrowserSession, req: wpb.RunTaskRequest,
        queue: asyncio.Queue[wpb.RunTaskResponse | None],
    ) -> None:
        try:
            ctx, reused = await self.idle.take(req.spec.previous_task_id)
            await session.open(ctx)
            if reused:
                log.info("task %s continues in the context of %s", req.task_id, req.spec.previous_task_id)
            history = [(h.description, h.result) for h in req.history]
            out: Outcome = await agent.run(session, req.spec.description, req.spec.initial_url, history,
                                           parent_plan=req.parent_plan)
            queue.put_nowait(wpb.RunTaskResponse(recording=agent.recorder.to_json()))
            queue.put_nowait(wpb.RunTaskResponse(completed=pb.TaskCompleted(result=out.text, success=out.success)))
        except (AgentFailed, LLMUnavailable) as exc:
            queue.put_nowait(wpb.RunTaskResponse(failed=pb.TaskFailed(error=str(exc))))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # our bug: report it as the task's failure, keep the worker alive
            log.exception("agent loop crashed")
            queue.put_nowait(wpb.RunTaskResponse(failed=pb.TaskFailed(error=f"internal error in worker: {exc!r}")))
