"""The dashboard's routes: thin handlers that call the coordinator (``gateway.backend``) and render.

::

    GET  /                     submit form, live task list, metrics panel (both polled by htmx)
    POST /tasks                submit (form: description, initial_url, num_copies) -> 303 /tasks/<id>
    GET  /tasks/<id>           the task's tree; it connects to ...
    GET  /tasks/<id>/events    ... SSE from WatchTask: each event as out-of-band HTML (views.py),
                               ``id:`` = the event's seq, so a reconnect resumes (Last-Event-ID)
    POST /tasks/<id>/cancel    CancelTask: the task and its whole subtree
    POST /tasks/<id>/respond   RespondToTask: the answer box of a task waiting for a person
    POST /tasks/<id>/pause     PauseTask: the task waits for a person's instruction
    GET  /tasks/<id>/screenshot  GetTaskScreenshot: the live (or parked) page, as a fragment
    GET  /fragments/tasks      the task list's rows
    GET  /fragments/metrics    the metrics panel (plots.py)
    GET|POST /login, POST /logout, GET /healthz, /static/...

Engine errors are mapped once (``gateway.errors.from_grpc``: status and message) and shown
as an HTML error: bad input is a 400 naming the field, an unknown task 404, an engine
that does not answer 503.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from pathlib import Path
from typing import Any, AsyncGenerator, AsyncIterator
from urllib.parse import parse_qs

import grpc
from markupsafe import escape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from blast_grpc._proto.blast.v1 import blast_pb2 as pb

from ..backend import Backend
from ..errors import ApiError, from_grpc
from ..middleware import BodyLimitMiddleware
from ..sse import EventStream
from .auth import COOKIE, LoginRequired, Sessions, safe_next
from .plots import Sampler, series
from .views import event_fragment, task_row

log = logging.getLogger("gateway.dashboard")

HERE = Path(__file__).resolve().parent
LIST_LIMIT = 200  # tasks read per list refresh (subtasks included); the newest top-level ones are shown
CANCEL_REASON = "cancelled from the dashboard"
FORM_LIMIT = 256 * 1024


def sse_frame(seq: int, event: str, html: str) -> bytes:
    """One SSE frame; every line of ``html`` is its own ``data:`` line (the client joins them)."""
    data = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    head = f"id: {seq}\n" if seq else ""
    return f"{head}event: {event}\n{data}\n".encode()


class Dashboard:
    """The handlers and what they share: the coordinator connection, templates, sessions, sampler."""

    def __init__(self, grpc_address: str, engine_api_key: str | None, sessions: Sessions, sample_s: float) -> None:
        self.grpc_address = grpc_address
        self.engine_api_key = engine_api_key
        self._backend: Backend | None = None
        self.sessions = sessions
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.sampler = Sampler(lambda: self.backend.metrics(), sample_s)

    @property
    def backend(self) -> Backend:
        assert self._backend is not None, "the dashboard's lifespan did not start"
        return self._backend

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """The gRPC channel (made in the server's event loop) and the metrics sampler, stopped on exit."""
        self._backend = Backend(self.grpc_address, api_key=self.engine_api_key)
        sampler = asyncio.create_task(self.sampler.run(), name="dashboard-metrics-sampler")
        try:
            yield
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            await self._backend.close()

    def page(self, request: Request, name: str, status: int = 200, **ctx: Any) -> Response:
        ctx.setdefault("logged_in", not self.sessions.open)
        return self.templates.TemplateResponse(request, name, ctx, status_code=status)

    def error_page(self, request: Request, exc: grpc.aio.AioRpcError) -> Response:
        err = from_grpc(exc)
        return self.page(request, "error.html", err.status, message=err.message)

    # --- login ---------------------------------------------------------------------
    async def login_form(self, request: Request) -> Response:
        return self.page(request, "login.html", next=safe_next(request.query_params.get("next", "/")), error="")

    async def login(self, request: Request) -> Response:
        form = await _form(request)
        target = safe_next(form.get("next", "/"))
        token = self.sessions.login(form.get("key", "")) if not self.sessions.open else ""
        if token is None:
            return self.page(request, "login.html", 401, next=target, error="That is not one of the API keys.")
        response = RedirectResponse(target, 303)
        if token:
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/",
                                secure=request.url.scheme == "https")
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse("/login", 303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # --- pages ----------------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        return self.page(request, "index.html", form={}, error="")

    async def submit(self, request: Request) -> Response:
        form = await _form(request)
        copies_text = form.get("num_copies", "").strip() or "0"
        if not copies_text.isdigit():
            return self.page(request, "index.html", 400, form=form,
                             error=f"num_copies: {copies_text[:20]!r} is not a whole number (0 = engine default)")
        spec = pb.TaskSpec(description=form.get("description", ""), initial_url=form.get("initial_url", "").strip(),
                           num_copies=int(copies_text))
        try:
            task = await self.backend.submit(spec)
        except grpc.aio.AioRpcError as exc:
            err = from_grpc(exc)
            return self.page(request, "index.html", err.status, form=form, error=err.message)
        return RedirectResponse(f"/tasks/{task.task_id}", 303)

    async def task_page(self, request: Request) -> Response:
        try:
            task = await self.backend.get(request.path_params["task_id"])
        except grpc.aio.AioRpcError as exc:
            return self.error_page(request, exc)
        row = task_row(task)
        node = {"task_id": task.task_id, "description": task.spec.description, "copy_no": 0, "state": row.state,
                "done": row.done}
        return self.page(request, "task.html", task=task, row=row, node=node)

    async def task_events(self, request: Request) -> EventStream:
        task_id = request.path_params["task_id"]
        last = request.headers.get("last-event-id", "")
        from_seq = int(last) + 1 if last.isdigit() else 1
        return EventStream(self._frames(task_id, from_seq))

    async def _frames(self, task_id: str, from_seq: int) -> AsyncGenerator[bytes, None]:
        env = self.templates.env
        try:
            async with contextlib.aclosing(self.backend.watch(task_id, from_seq)) as events:
                async for ev in events:
                    html = event_fragment(env, ev)
                    if html:
                        yield sse_frame(ev.seq, "tree", html)
        except grpc.aio.AioRpcError as exc:
            note = env.get_template("_stream_note.html").render(message=from_grpc(exc).message)
            yield sse_frame(0, "tree", note)
        # Tells the page to close its EventSource (sse-close) instead of reconnecting.
        yield sse_frame(0, "end", "")

    async def cancel(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        try:
            await self.backend.cancel(task_id, CANCEL_REASON)
            text = "cancelling…"
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
                return _fragment_error(exc)
            text = "already ended"
        return HTMLResponse(f'<span class="muted">{text}</span>')

    # --- people in the loop ---------------------------------------------------------------
    async def respond(self, request: Request) -> Response:
        """The answer box: RespondToTask with the person's answer (or a paused task's instruction)."""
        answer = (await _form(request)).get("answer", "")
        try:
            await self.backend.respond(request.path_params["task_id"], answer)
        except grpc.aio.AioRpcError as exc:
            return _fragment_error(exc)
        return HTMLResponse(f'<div class="muted">Sent: {_esc(answer[:500])}</div>')

    async def pause(self, request: Request) -> Response:
        try:
            await self.backend.pause(request.path_params["task_id"])
        except grpc.aio.AioRpcError as exc:
            return _fragment_error(exc)
        return HTMLResponse('<span class="muted">paused</span>')

    async def screenshot(self, request: Request) -> Response:
        """The task's page now, as a fragment (an image inline: it is shown once, where it was asked for)."""
        try:
            shot = await self.backend.screenshot(request.path_params["task_id"])
        except grpc.aio.AioRpcError as exc:
            return _fragment_error(exc)
        src = "data:image/jpeg;base64," + base64.b64encode(shot.jpeg).decode()
        return self.page(request, "_screenshot.html", src=src, url=shot.url)

    # --- fragments ----------------------------------------------------------------------
    async def tasks_fragment(self, request: Request) -> Response:
        try:
            tasks = await self.backend.list_tasks(LIST_LIMIT)
        except grpc.aio.AioRpcError as exc:
            return self.page(request, "_tasks.html", rows=[], problem=from_grpc(exc).message)
        rows = [task_row(t) for t in tasks if not t.parent_task_id]
        return self.page(request, "_tasks.html", rows=rows, problem="")

    async def metrics_fragment(self, request: Request) -> Response:
        self.sampler.viewed()
        if not self.sampler.samples:
            await self.sampler.sample()
        return self.page(request, "_metrics.html", plots=series(list(self.sampler.samples)),
                         problem=self.sampler.problem)

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")


def _esc(text: str) -> str:
    return str(escape(text))


def _fragment_error(exc: grpc.aio.AioRpcError) -> Response:
    """An engine error as a fragment with its HTTP status (the page swaps 4xx/5xx in too: base.html)."""
    err = from_grpc(exc)
    return HTMLResponse(f'<span class="error" role="alert">{_esc(err.message)}</span>', err.status)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return PlainTextResponse(exc.message, exc.status)


async def _form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (what the page's forms send): first value per field."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def create_app(grpc_address: str, api_keys: list[str], engine_api_key: str | None = None,
               sample_s: float = 2.0) -> Starlette:
    """The dashboard in front of the coordinator at ``grpc_address``; ``api_keys`` may log in."""
    d = Dashboard(grpc_address, engine_api_key, Sessions(api_keys), sample_s)

    routes = [
        Route("/", d.index),
        Route("/login", d.login_form, methods=["GET"]),
        Route("/login", d.login, methods=["POST"]),
        Route("/logout", d.logout, methods=["POST"]),
        Route("/tasks", d.submit, methods=["POST"]),
        Route("/tasks/{task_id}", d.task_page),
        Route("/tasks/{task_id}/events", d.task_events),
        Route("/tasks/{task_id}/cancel", d.cancel, methods=["POST"]),
        Route("/tasks/{task_id}/respond", d.respond, methods=["POST"]),
        Route("/tasks/{task_id}/pause", d.pause, methods=["POST"]),
        Route("/tasks/{task_id}/screenshot", d.screenshot),
        Route("/fragments/tasks", d.tasks_fragment),
        Route("/fragments/metrics", d.metrics_fragment),
        Route("/healthz", d.healthz),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    # A form body over FORM_LIMIT (counted while it streams in) is refused with its 413.
    app = Starlette(routes=routes, lifespan=d.lifespan, exception_handlers={ApiError: _api_error})
    app.add_middleware(BodyLimitMiddleware, limit=FORM_LIMIT)
    app.add_middleware(LoginRequired, sessions=d.sessions)
    app.state.dashboard = d
    return app
