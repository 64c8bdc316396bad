"""Find a Chromium binary for Playwright, and the flags it needs on a closed network.

Order: the ``BLAST_CHROMIUM`` environment variable, ``settings.local_browser_path``
when it is a path, ``chromium-headless-shell`` on PATH, ``chromium`` (or
``chromium-browser``) on PATH, Playwright's own download, and finally ``apt-get
install -y chromium-headless-shell chromium`` when running as root and
``install=True`` (``make`` does this once while bootstrapping).

The headless shell comes first because the engine always runs headless, and the
full browser's "new headless" mode costs several times the CPU: it starts WebUI
renderers for every context. Measured with ``make bench`` (fan-out K=8, 0.25 s per
model call, 2 cores): 14.6 s and 19.8 CPU-seconds with ``chromium``, 3.9 s and 3.6
CPU-seconds with ``chromium-headless-shell``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# Without these Chromium stalls on a closed network (background fetches, QUIC probes).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
    # Every connection must pass the context's egress proxy (worker/egress.py); WebRTC would
    # otherwise send UDP straight to any address a page names.
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
]


PATH_NAMES = ("chromium-headless-shell", "chromium", "chromium-browser")
APT_PACKAGES = ["chromium-headless-shell", "chromium"]


class ChromiumNotFound(RuntimeError):
    pass


def _playwright_download() -> str | None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    try:
        with sync_playwright() as p:
            path = p.chromium.executable_path
    except Exception:
        return None
    return path if path and Path(path).exists() else None


_WRAPPED = re.compile(r'^\s*(?:exec\s+)?(/\S+)\s+"\$@"\s*$', re.MULTILINE)


def _unwrap(path: str) -> str:
    """The binary a one-line wrapper script runs, else ``path``.

    Debian's ``/usr/bin/chromium-headless-shell`` is ``/usr/lib/chromium/chromium-headless-shell "$@"``
    without ``exec``: launched through it, the browser is not the process Playwright started, so a
    crash of the browser would go unnoticed until the wrapper exits.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return path
    if not head.startswith(b"#!"):
        return path
    lines = [ln for ln in head.decode(errors="replace").splitlines()[1:] if ln.strip() and not ln.lstrip().startswith("#")]
    m = _WRAPPED.match(lines[0]) if len(lines) == 1 else None
    if m and os.access(m.group(1), os.X_OK):
        return m.group(1)
    return path


def find_chromium(local_browser_path: str = "auto", install: bool = False) -> str:
    """Return the path of a usable Chromium, or raise ``ChromiumNotFound`` saying how to get one."""
    env = os.environ.get("BLAST_CHROMIUM")
    if env:
        if not Path(env).exists():
            raise ChromiumNotFound(f"BLAST_CHROMIUM={env!r} does not exist")
        return env
    if local_browser_path not in ("auto", "none", ""):
        if not Path(local_browser_path).exists():
            raise ChromiumNotFound(f"settings.local_browser_path={local_browser_path!r} does not exist")
        return local_browser_path
    for name in PATH_NAMES:
        found = shutil.which(name)
        if found:
            return _unwrap(found)
    downloaded = _playwright_download()
    if downloaded:
        return downloaded
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"blast-grpc: installing Debian's {' and '.join(APT_PACKAGES)} packages (apt-get)", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", *APT_PACKAGES], check=True)
        for name in PATH_NAMES:
            found = shutil.which(name)
            if found:
                return _unwrap(found)
    raise ChromiumNotFound(
        "no Chromium found: set BLAST_CHROMIUM to a chromium binary, install Debian's "
        "'chromium-headless-shell' (or 'chromium') package, or run 'playwright install chromium' where the network allows"
    )


if __name__ == "__main__":
    print(find_chromium(install="--install" in sys.argv))
