"""Slow clients: deadlines for a request's header and body, and a cap on open connections.

uvicorn has a keep-alive timeout between requests but none while a request arrives, so a
client sending one header byte every few seconds holds its connection (and a file
descriptor) forever; enough of them and the gateway cannot accept ``/healthz``. This
module wraps uvicorn's h11 protocol (the one it picks without httptools) with three rules:

* **header deadline**: a request's header must be complete ``header_timeout_s`` after the
  connection opened, or after the first byte of a following keep-alive request;
* **body pause**: while a body is being received, at most ``body_timeout_s`` may pass
  without a byte (not counted while uvicorn itself has paused reading because the app has
  not consumed the body yet);
* **connection cap**: with ``max_connections`` open, a new connection closes the one that
  has waited longest for its header (a slow client by definition) to make room; if every
  connection is busy with a request, the new one gets 503.

A client that misses a deadline before any response started gets a 408 in OpenAI's error
shape, then the connection is closed. Per connection the state is::

    connect ─▶ HEADER (deadline) ─▶ BODY (pause limit) ─▶ APP (no limit: the task runs)
                 ▲                                              │ response sent
                 └────────── first byte of the next request ◀───┘ (keep-alive timeout meanwhile)
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .errors import ApiError

log = logging.getLogger("gateway")

HEADER, BODY, APP, CLOSING = "header", "body", "app", "closing"
# After a 408/503 the gateway stops writing but reads (and drops) what the client still sends
# this long before it closes: closing with unread data would reset the connection, and the
# reset can destroy the error response before the client read it.
LINGER_S = 2.0


def raw_error(err: ApiError) -> bytes:
    """``err`` as a complete HTTP/1.1 response that closes the connection (written outside h11)."""
    body = json.dumps(err.body(), separators=(",", ":")).encode()
    reason = {408: "Request Timeout", 503: "Service Unavailable"}.get(err.status, "Error")
    head = (f"HTTP/1.1 {err.status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode() + body


class ConnectionGuard:
    """The limits, and the open connections of one server in the order they opened."""

    def __init__(self, header_timeout_s: float, body_timeout_s: float, max_connections: int) -> None:
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.max_connections = max_connections
        self.open: dict[GuardedH11Protocol, None] = {}  # insertion-ordered set

    def admit(self, conn: GuardedH11Protocol) -> bool:
        """Make room for ``conn`` (closing the slowest header reader) or refuse it."""
        if len(self.open) >= self.max_connections:
            victim = next((c for c in self.open if c.phase == HEADER), None)
            if victim is None:
                return False
            victim.expire(f"the connection limit (settings.gateway_max_connections = {self.max_connections}) "
                          "was reached and this connection had not sent its request header")
        self.open[conn] = None
        return True

    def discard(self, conn: GuardedH11Protocol) -> None:
        self.open.pop(conn, None)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the deadlines and the cap of ``guard`` (set by ``guarded_protocol``)."""

    guard: ClassVar[ConnectionGuard]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.phase = HEADER
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.guard.admit(self):
            err = ApiError(503, f"The gateway has {self.guard.max_connections} connections open "
                           "(settings.gateway_max_connections); retry shortly.", type="server_error",
                           code="too_many_connections")
            self._answer_and_close(err)
            return
        self._arm(HEADER, self.guard.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.guard.discard(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.phase == CLOSING:
            return  # lingering after an error: dropped
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.phase = APP  # idle between requests: uvicorn's keep-alive timeout applies
        self._follow()

    def _follow(self) -> None:
        """Arm the deadline that fits where the request is now."""
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.IDLE and self.conn.trailing_data[0]:
            if self.phase != HEADER:  # the first bytes of the next request
                self._arm(HEADER, self.guard.header_timeout_s)
        elif state is h11.SEND_BODY:
            self._arm(BODY, self.guard.body_timeout_s)  # every chunk restarts the pause limit
        elif state is not h11.IDLE:
            self._disarm()
            self.phase = APP

    def _arm(self, phase: str, delay: float) -> None:
        self._disarm()
        self.phase = phase
        self._timer = self.loop.call_later(delay, self._due)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _due(self) -> None:
        self._timer = None
        if self.phase == CLOSING:
            return
        if self.phase == BODY and self.flow.read_paused:
            # uvicorn stopped reading because the app has not taken the body yet: not the client's fault.
            self._arm(BODY, self.guard.body_timeout_s)
            return
        if self.phase == HEADER:
            self.expire(f"the request header did not arrive within {self.guard.header_timeout_s:g} s "
                        "(settings.gateway_header_timeout_s)")
        elif self.phase == BODY:
            self.expire(f"the request body paused for more than {self.guard.body_timeout_s:g} s "
                        "(settings.gateway_body_timeout_s)")

    def expire(self, why: str) -> None:
        """Close this connection: 408 (if nothing was answered yet) saying ``why``."""
        self._disarm()
        self.guard.discard(self)
        if self.transport.is_closing():
            return
        log.info("closing a slow client connection from %s: %s", self.client, why)
        if self.cycle is None or not self.cycle.response_started:
            self._answer_and_close(ApiError(408, f"Request timeout: {why}.", code="request_timeout"))
        else:
            self.transport.close()

    def _answer_and_close(self, err: ApiError) -> None:
        """Send ``err``, stop writing, and close after ``LINGER_S`` (or when the client does)."""
        self._disarm()
        self.phase = CLOSING
        self.transport.write(raw_error(err))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._timer = self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()


def guarded_protocol(header_timeout_s: float, body_timeout_s: float, max_connections: int
                     ) -> type[GuardedH11Protocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` with these limits (one guard per server)."""
    guard = ConnectionGuard(header_timeout_s, body_timeout_s, max_connections)
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": guard})
