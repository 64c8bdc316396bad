"""Who may use the dashboard: the gateway's API keys, through a login form and a session cookie.

A browser cannot send ``Authorization: Bearer`` on its own, so ``/login`` takes a key in a
form and, when it is one of the keys (constant time, ``blast_grpc.access``), sets an
HttpOnly, SameSite=Strict cookie. The cookie is not the key: it is an HMAC of the key
under a secret drawn when the dashboard process starts, so it is worthless elsewhere, and
a restart (or removing the key) logs everyone out. Scripts may send the bearer header
instead. With no keys configured everything is open, as in the gateway.

Unauthenticated page loads are sent to ``/login?next=...``; anything else (htmx requests,
``/fragments/...``, the event streams, POSTs) gets 401. A POST whose ``Origin`` is another site is refused with
403 (SameSite already keeps the cookie off cross-site requests; this also covers old browsers).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Iterable
from urllib.parse import quote, urlsplit

from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from blast_grpc.access import bearer_allowed

COOKIE = "blast_dashboard"
OPEN_PREFIXES = ("/login", "/static/", "/healthz")


class Sessions:
    """Issues and checks session cookies for a set of API keys."""

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = [k.encode() for k in keys if k]
        self._secret = os.urandom(32)

    @property
    def open(self) -> bool:
        return not self.keys

    def _token(self, key: bytes) -> str:
        return hmac.new(self._secret, key, hashlib.sha256).hexdigest()

    def login(self, key: str) -> str | None:
        """The cookie value for ``key`` if it is one of the keys, else None (every key compared)."""
        given = key.strip().encode()
        matched = None
        for k in self.keys:
            if hmac.compare_digest(given, k):
                matched = k
        return self._token(matched) if matched is not None else None

    def allowed(self, conn: HTTPConnection) -> bool:
        if self.open:
            return True
        cookie = conn.cookies.get(COOKIE, "")
        if cookie:
            ok = False
            for k in self.keys:
                ok |= hmac.compare_digest(cookie, self._token(k))
            if ok:
                return True
        return bearer_allowed(conn.headers.get("authorization", "").encode(), self.keys)


def safe_next(target: str) -> str:
    """Where to go after logging in: a path on this site only (no ``//host`` or ``http://``)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


class LoginRequired:
    """ASGI middleware: every path but OPEN_PREFIXES needs a session (or a bearer key)."""

    def __init__(self, app: ASGIApp, sessions: Sessions) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        if scope["method"] == "POST" and not _same_origin(conn):
            await PlainTextResponse("cross-site request refused", 403)(scope, receive, send)
            return
        if self.sessions.allowed(conn) or scope["path"].startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        response: Response
        path = scope["path"]
        page = not path.startswith("/fragments/") and not path.endswith("/events")
        if scope["method"] == "GET" and page and "hx-request" not in conn.headers:
            query = scope.get("query_string", b"").decode()
            response = RedirectResponse(f"/login?next={quote(path + (f'?{query}' if query else ''), safe='')}", 303)
        else:
            response = PlainTextResponse("log in first: the dashboard needs an API key (settings.api_keys)", 401)
        await response(scope, receive, send)


def _same_origin(conn: HTTPConnection) -> bool:
    """A request without ``Origin`` (not a browser's cross-site POST) or from this very host ("null" is not)."""
    origin = conn.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == conn.headers.get("host", "")
