"""Hostile pages for fault tests: what a real site can do to a browser agent.

Each hook is a ``GET`` under ``/_`` that the demo site answers from here (no file in
``pages/``). Every request is recorded in the access log like any other, so a test
can see what the browser really fetched:

* ``/_redirect_loop?n=K`` — ``302`` to ``/_redirect_loop?n=K+1``, forever (the browser
  gives up with ``ERR_TOO_MANY_REDIRECTS``);
* ``/_download?name=F`` — a small CSV sent as an attachment named ``F``
  (``Content-Disposition: attachment``), i.e. a file download, not a page;
* ``/_download.html`` — a page whose only link (``Download the report``) is that download;
* ``/_dialog.html?kind=alert|confirm|prompt&when=load|click`` — opens a JavaScript dialog
  while the page loads (``when=load``, the default) or when its button ``Open the KIND
  dialog`` is clicked; afterwards the page shows ``Dialog result: V`` and fetches
  ``/_dialog_result?kind=KIND&value=V`` (V is what the dialog returned: ``undefined``
  for an alert, ``true``/``false`` for a confirm, the text or ``null`` for a prompt);
* ``/_dialog_result`` — ``204``; only there to be recorded;
* ``/_popup.html?when=click|load`` — a link with ``target=_blank`` (``Open the target in
  a new window``), a button calling ``window.open`` (``Open a window from script``) and
  one submitting a ``target=_blank`` form from script (``Send a form to a new window``);
  with ``when=load`` the page also calls ``window.open`` while loading;
* ``/_popup_target.html?via=V`` — the page those open: title ``Popup target``.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote

DIALOG_KINDS = ("alert", "confirm", "prompt")
_FILE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass
class Reply:
    """An HTTP answer: status, content type, body and extra headers."""

    status: int
    content_type: str = "text/html; charset=utf-8"
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _page(title: str, body: str, script: str = "") -> Reply:
    doc = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
           f"</head><body>{body}{f'<script>{script}</script>' if script else ''}</body></html>")
    return Reply(200, body=doc.encode())


def _bad(message: str) -> Reply:
    return Reply(400, "text/plain; charset=utf-8", (message + "\n").encode())


def _redirect_loop(q: dict[str, list[str]]) -> Reply:
    raw = q.get("n", ["0"])[0]
    n = int(raw) if raw.isdigit() else 0
    return Reply(302, "text/plain; charset=utf-8", b"again\n", {"Location": f"/_redirect_loop?n={n + 1}"})


def _download(q: dict[str, list[str]]) -> Reply:
    name = q.get("name", ["report.csv"])[0]
    if not _FILE_NAME.match(name):
        return _bad(f"/_download: bad file name {name!r}")
    body = b"continent,gorilla\nAfrica,Kumbuka\n"
    return Reply(200, "text/csv", body, {"Content-Disposition": f'attachment; filename="{name}"'})


def _download_page(_: dict[str, list[str]]) -> Reply:
    return _page("Downloads", '<h1>Downloads</h1><p><a href="/_download?name=report.csv">Download the report</a></p>')


def _dialog(q: dict[str, list[str]]) -> Reply:
    kind = q.get("kind", ["alert"])[0]
    when = q.get("when", ["load"])[0]
    if kind not in DIALOG_KINDS or when not in ("load", "click"):
        return _bad(f"/_dialog.html: kind must be one of {', '.join(DIALOG_KINDS)} and when load or click")
    call = {"alert": 'alert("Hello from the dialog page")', "confirm": 'confirm("Really proceed?")',
            "prompt": 'prompt("Your name?", "nobody")'}[kind]
    script = (
        "function openDialog() {"
        f"  const value = String({call});"
        "  document.getElementById('result').textContent = 'Dialog result: ' + value;"
        f"  fetch('/_dialog_result?kind={kind}&value=' + encodeURIComponent(value));"
        "}"
        + (" openDialog();" if when == "load" else "")
    )
    body = (f"<h1>Dialog test ({kind})</h1><p id=\"result\">Dialog result: none yet</p>"
            f"<p><button type=\"button\" onclick=\"openDialog()\">Open the {kind} dialog</button></p>"
            '<p><a href="/index.html">Back to index</a></p>')
    return _page(f"Dialog test ({kind})", body, script)


def _popup(q: dict[str, list[str]]) -> Reply:
    when = q.get("when", ["click"])[0]
    if when not in ("load", "click"):
        return _bad("/_popup.html: when must be load or click")
    body = ('<h1>Popups</h1><p><a href="/_popup_target.html?via=link" target="_blank">Open the target in a new '
            'window</a></p><p><button type="button" onclick="window.open(\'/_popup_target.html?via=script\')">'
            "Open a window from script</button></p>"
            '<form id="f" action="/_popup_target.html" target="_blank"><input type="hidden" name="via" value="form">'
            "</form><p><button type=\"button\" onclick=\"document.getElementById('f').submit()\">"
            "Send a form to a new window</button></p>")
    script = "window.open('/_popup_target.html?via=load');" if when == "load" else ""
    return _page("Popups", body, script)


def _popup_target(q: dict[str, list[str]]) -> Reply:
    via = quote(q.get("via", ["unknown"])[0], safe="")
    return _page("Popup target", f"<h1>Popup target</h1><p>Opened via {html.escape(via)}.</p>")


HOOKS = {
    "/_redirect_loop": _redirect_loop,
    "/_download": _download,
    "/_download.html": _download_page,
    "/_dialog.html": _dialog,
    "/_dialog_result": lambda _: Reply(204, "text/plain", b""),
    "/_popup.html": _popup,
    "/_popup_target.html": _popup_target,
}


def answer(path: str, query: str) -> Reply | None:
    """The reply for a hazard hook, or None when ``path`` is not one."""
    hook = HOOKS.get(path)
    return hook(parse_qs(query)) if hook is not None else None
