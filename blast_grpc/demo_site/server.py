"""Serve the demo site on loopback with the standard library, and record what was fetched.

Besides the static pages there are test hooks:

* ``GET /_access_log`` — the paths requested so far, as a JSON list (this request
  itself is not recorded, so reading the log does not change it);
* ``GET /_slow?seconds=N`` — waits N seconds (0..300) and then returns a small
  page; used to make page loads time out on purpose;
* ``GET /_cookies[?set=NAME]`` — sets cookie ``NAME=1`` when asked, and shows the
  cookies the browser sent as ``Cookies seen: a=1; b=1`` (or ``none``); used to check
  that tasks do not share browser state;
* ``GET /_motto`` — ``Motto: <DemoSite.motto>``, a page a test can change between two
  runs of the same task (plan-cache replay on a changed page);
* hostile pages for the fault tests (an endless redirect, a file download, JavaScript
  dialogs, popup windows): see ``hazards``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..procutil import write_ready_file
from . import hazards

PAGES_DIR = Path(__file__).parent / "pages"
MAX_SLOW_SECONDS = 300.0


class _Handler(SimpleHTTPRequestHandler):
    """Static files from the pages directory plus the ``/_`` test hooks."""

    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        path = urlsplit(self.path).path
        if path == "/_access_log":
            self._send(200, "application/json", json.dumps(self.server.site.access_log()).encode())
            return
        self.server.site._record(self.path)
        if path == "/_slow":
            self._slow()
            return
        if path == "/_cookies":
            self._cookies()
            return
        if path == "/_motto":
            body = (f"<!DOCTYPE html><html><head><title>Motto</title></head><body>"
                    f"<p>Motto: {self.server.site.motto}</p></body></html>").encode()
            self._send(200, "text/html; charset=utf-8", body)
            return
        reply = hazards.answer(path, urlsplit(self.path).query)
        if reply is not None:
            self._send(reply.status, reply.content_type, reply.body, reply.headers)
            return
        super().do_GET()

    def _cookies(self) -> None:
        name = parse_qs(urlsplit(self.path).query).get("set", [""])[0]
        if name and not name.isidentifier():
            self._send(400, "text/plain; charset=utf-8", f"/_cookies: bad cookie name {name!r}\n".encode())
            return
        seen = self.headers.get("Cookie") or "none"
        body = (f"<!DOCTYPE html><html><head><title>Cookies</title></head><body>"
                f"<p>Cookies seen: {seen}</p></body></html>").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if name:
            self.send_header("Set-Cookie", f"{name}=1; Path=/")
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:  # noqa: N802
        self.server.site._record(self.path)
        super().do_HEAD()

    def _slow(self) -> None:
        raw = parse_qs(urlsplit(self.path).query).get("seconds", ["1"])[0]
        try:
            seconds = float(raw)
        except ValueError:
            seconds = -1.0
        if not 0 <= seconds <= MAX_SLOW_SECONDS:
            msg = f"/_slow: seconds must be a number between 0 and {MAX_SLOW_SECONDS:g}, got {raw!r}\n"
            self._send(400, "text/plain; charset=utf-8", msg.encode())
            return
        # Waiting on the stop event (not time.sleep) lets stop() end slow requests at once.
        self.server.site._stopping.wait(seconds)
        body = f"<!DOCTYPE html><html><head><title>Slow page</title></head>" \
               f"<body><p>This page took {seconds:g} seconds.</p></body></html>"
        self._send(200, "text/html; charset=utf-8", body.encode())

    def _send(self, status: int, content_type: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def end_headers(self) -> None:
        # Browsers must refetch pages so the access log reflects every visit.
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # the access log replaces stderr chatter


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hung client must not keep the process alive
    site: DemoSite

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return  # the browser gave up on a slow page before it was sent: expected, not worth a traceback
        super().handle_error(request, client_address)


class DemoSite:
    """The demo website on ``host:port`` (port 0 picks a free port), served from a daemon thread.

    Use ``start()``/``stop()`` or ``with DemoSite() as site: ... site.url``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, pages_dir: str | Path | None = None) -> None:
        self.host = host
        self.port = port
        self.pages_dir = Path(pages_dir) if pages_dir is not None else PAGES_DIR
        if not self.pages_dir.is_dir():
            raise FileNotFoundError(f"demo site pages directory not found: {self.pages_dir}")
        self._log: list[str] = []
        self.motto = "Swing from the highest branch"  # served at /_motto; tests change it
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL with a trailing slash, e.g. ``http://127.0.0.1:8123/``."""
        if self._server is None:
            raise RuntimeError("DemoSite is not started")
        return f"http://{self.host}:{self.port}/"

    def start(self) -> DemoSite:
        """Bind and start serving; returns self. ``port`` then holds the real port."""
        if self._server is not None:
            raise RuntimeError("DemoSite is already started")
        self._stopping.clear()
        server = _Server((self.host, self.port), partial(_Handler, directory=str(self.pages_dir)))
        server.site = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"demo-site-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; in-flight ``/_slow`` requests end early."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def access_log(self) -> list[str]:
        """The request paths (with query strings) served so far, oldest first."""
        with self._lock:
            return list(self._log)

    def clear_access_log(self) -> None:
        """Forget the requests recorded so far."""
        with self._lock:
            self._log.clear()

    def _record(self, path: str) -> None:
        with self._lock:
            self._log.append(path)

    def __enter__(self) -> DemoSite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Serve the demo site until SIGTERM/SIGINT. Returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m blast_grpc.demo_site", description="Serve the demo site.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ready-file", help='write {"url": ...} here once listening')
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with DemoSite(args.host, args.port) as site:
        if args.ready_file:
            write_ready_file(args.ready_file, {"url": site.url})
        print(f"demo site at {site.url}", flush=True)
        # wait() with a timeout keeps the main thread responsive to signals.
        while not stop.wait(0.5):
            pass
    return 0
