"""Find a Chromium binary for Playwright, and the flags it needs on a closed network.

Order: the ``BLAST_CHROMIUM`` environment variable, ``settings.local_browser_path``
when it is a path, ``chromium`` (or ``chromium-browser``) on PATH, Playwright's
own download, and finally ``apt-get install -y chromium`` when running as root
and ``install=True`` (``make`` does this once while bootstrapping).
"""

from __future__ import annotations

import os
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
]


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
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    downloaded = _playwright_download()
    if downloaded:
        return downloaded
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        print("blast-grpc: installing Debian's chromium package (apt-get)", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True)
        found = shutil.which("chromium")
        if found:
            return found
    raise ChromiumNotFound(
        "no Chromium found: set BLAST_CHROMIUM to a chromium binary, install Debian's "
        "'chromium' package, or run 'playwright install chromium' where the network allows"
    )


if __name__ == "__main__":
    print(find_chromium(install="--install" in sys.argv))
