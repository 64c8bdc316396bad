"""The allowed site of the egress tests: run inside a network namespace the test creates.

``python tests/faults/egress_site.py --ready-file F`` serves on every address of its
namespace (port 0) and writes ``{"port": N}`` to ``F``. Pages (``to`` is a URL):

* ``/page``: an ordinary page ("Allowed page");
* ``/redirect?status=302&to=``: an HTTP redirect (302, 307, ...);
* ``/js?to=``: a page whose own script navigates to ``to`` once loaded;
* ``/meta?to=``: a page with ``<meta http-equiv=refresh content="0;url=...">``;
* ``/ws?to=``: a page that opens a WebSocket to ``to`` and reports the outcome to
  ``/ws_result?state=open|error|close``;
* ``/private``: a page only reachable on the namespace's private address (its text says so);
* ``/_log``: the paths requested so far, as JSON (the test reads what the browser asked for).
"""

from __future__ import annotations

import argparse
import html
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from blast_grpc.procutil import write_ready_file

LOG: list[str] = []
LOCK = threading.Lock()


def page(title: str, body: str, head: str = "") -> bytes:
    return (f"<!doctype html><html><head><title>{html.escape(title)}</title>{head}</head>"
            f"<body>{body}</body></html>").encode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        parts = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        to = q.get("to", "")
        if parts.path != "/_log":
            with LOCK:
                LOG.append(self.path)
        if parts.path == "/redirect":
            self.send_response(int(q.get("status", "302")))
            self.send_header("Location", to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if parts.path == "/_log":
            with LOCK:
                self._send(json.dumps(LOG).encode(), "application/json")
            return
        if parts.path == "/page":
            body = page("Allowed page", "<p>Allowed page</p>")
        elif parts.path == "/private":
            body = page("Private page", "<p>PRIVATE-NETWORK-PAGE reached</p>")
        elif parts.path == "/js":
            body = page("Leaving", "<p>Leaving by script</p>",
                        f"<script>addEventListener('load', () => setTimeout(() => {{ location.href = "
                        f"{json.dumps(to)}; }}, 50));</script>")
        elif parts.path == "/meta":
            body = page("Refreshing", "<p>Leaving by meta refresh</p>",
                        f'<meta http-equiv="refresh" content="0;url={html.escape(to)}">')
        elif parts.path == "/ws":
            script = (f"const ws = new WebSocket({json.dumps(to)});"
                      "const tell = s => fetch('/ws_result?state=' + s);"
                      "ws.onopen = () => tell('open'); ws.onerror = () => tell('error');")
            body = page("WebSocket", "<p>Opening a WebSocket</p>", f"<script>{script}</script>")
        elif parts.path == "/ws_result":
            body = b"ok"
        else:
            self.send_error(404)
            return
        self._send(body, "text/html; charset=utf-8")

    def _send(self, body: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's name)
        return


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ready-file", required=True)
    args = ap.parse_args()
    server = ThreadingHTTPServer(("0.0.0.0", 0), Handler)
    # Atomically: the test reads the file as soon as it exists.
    write_ready_file(args.ready_file, {"port": server.server_address[1]})
    server.serve_forever()


if __name__ == "__main__":
    main()
