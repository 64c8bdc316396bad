"""Get MiniWoB++'s ``html/`` folder: ``python -m blast_grpc.miniwob`` (``make test`` / ``make bench`` do).

The wheel is fetched with the venv's own pip (``--no-deps``: gymnasium, selenium and
the rest are not needed), its SHA-256 is checked against the pinned release, and only
``miniwob/html/`` is unpacked, to ``.cache/miniwob/html`` (or ``$BLAST_MINIWOB_HTML``).
A fresh clone bootstraps itself; a second run finds the folder and does nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

VERSION = "1.1.0"
WHEEL = f"miniwob-{VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "297006e84219d56ad037e843527ed773a4a82509dc43b6031ec4a3ad3e3e61d9"
ROOT = Path(__file__).resolve().parents[2]
_PREFIX = "miniwob/html/"


class FetchError(RuntimeError):
    """The wheel could not be downloaded or is not the pinned release."""


def html_dir() -> Path:
    """Where the ``html/`` folder lives (it holds ``core/``, ``common/`` and ``miniwob/``)."""
    return Path(os.environ.get("BLAST_MINIWOB_HTML") or ROOT / ".cache" / "miniwob" / "html")


def _download(into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", f"miniwob=={VERSION}", "--no-deps", "--only-binary=:all:",
           "--quiet", "--dest", str(into)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheel = into / WHEEL
    if done.returncode != 0 or not wheel.is_file():
        raise FetchError(f"pip download miniwob=={VERSION} failed (exit {done.returncode}): "
                         f"{done.stderr.strip()[-500:]}")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise FetchError(f"{WHEEL} has SHA-256 {digest}, expected {WHEEL_SHA256}: not the pinned release")
    return wheel


def ensure_html(target: Path | None = None) -> Path:
    """The ``html/`` folder, downloading and unpacking it first if it is not there yet."""
    target = target or html_dir()
    if (target / "miniwob" / "click-button.html").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        wheel = _download(Path(tmp))
        staging = Path(tmp) / "html"
        with zipfile.ZipFile(wheel) as z:
            for name in z.namelist():
                if not name.startswith(_PREFIX) or name.endswith("/"):
                    continue
                dest = staging / name[len(_PREFIX):]
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(z.read(name))
        # Move into place in one step, so an interrupted fetch never leaves half a folder.
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    return target


def main() -> int:
    try:
        path = ensure_html()
    except FetchError as exc:
        print(f"miniwob: error: {exc}", file=sys.stderr)
        return 1
    print(f"MiniWoB++ {VERSION} pages in {path}")
    return 0
