"""The coordinator's runtime folder: sockets, the workers' config and ``$TMPDIR``s; never a key.

::

    <settings.runtime_dir or the temp dir>/blast-<8 random characters>/
        coordinator.lock      flock'ed by the live coordinator for as long as it runs
        config.json           the config for workers and gateway, without settings.api_keys
        broker.sock, w1.sock  internal gRPC sockets
        w1.tmp/               worker w1's $TMPDIR (Chromium profile folders), removed with w1

The coordinator removes its folder when it stops. One killed with SIGKILL cannot, so each
coordinator, at start, removes the folders of dead ones next to its own: a folder whose
``coordinator.lock`` nobody holds (the kernel drops a dead process's flock, so a reused pid
cannot fool it). Folders without that file are never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger("blast_grpc.coordinator")

PREFIX = "blast-"
LOCK = "coordinator.lock"


def remove_stale(parent: Path) -> list[Path]:
    """Remove the runtime folders of coordinators that are no longer running; returns them."""
    removed = []
    for lock in parent.glob(f"{PREFIX}*/{LOCK}"):
        try:
            fd = os.open(lock, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a live coordinator holds it
        finally:
            os.close(fd)
        shutil.rmtree(lock.parent, ignore_errors=True)
        removed.append(lock.parent)
    if removed:
        log.info("removed %d runtime folder(s) of coordinators that were killed: %s", len(removed),
                 ", ".join(str(p) for p in removed))
    return removed


class RuntimeDir:
    """Creates the folder (after removing stale ones), holds its lock, removes it on ``remove()``."""

    def __init__(self, parent: str | None) -> None:
        base = Path(parent) if parent else Path(tempfile.gettempdir())
        base.mkdir(parents=True, exist_ok=True)
        remove_stale(base)
        self.path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))
        # Locked before it gets its name, so another coordinator starting now never sees it unlocked.
        self._lock_fd: int | None = os.open(self.path / f".{LOCK}", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(self.path / f".{LOCK}", self.path / LOCK)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None
