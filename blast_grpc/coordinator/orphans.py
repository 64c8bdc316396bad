"""The coordinator as its processes' last owner: orphans come to it, and it ends them.

The coordinator is a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``): when a process
of the engine dies, its children are re-parented to the coordinator instead of init. So
every process the engine ever started stays in the coordinator's tree, and anything that
is a child of the coordinator but not one it started on purpose (a worker, the gateway)
is an orphan of a dead process: a Node.js driver, a Chromium and its renderers, an
extraction reader. ``Orphans`` ends those::

    worker dies ──▶ its children re-parented here ──▶ collect(): SIGKILL them, reap them
    every few s ──▶ collect(): late orphans (a renderer outliving its browser), zombies
    shutdown    ──▶ finish(): SIGKILL every child, reap, repeat until none is left

Children that ``launching()`` covers (a spawn in progress) and ``known`` ones are never
touched. The coordinator runs as a process of its own (``blast-grpc serve``), whose only
children are the workers and the gateway it starts; children it had before are known. Orphans are reaped with ``waitpid`` on their own pid only: the event loop's
own children (workers, the gateway) are left to the event loop.

The periodic sweep is one of the coordinator's long-lived loops, so it belongs to the
coordinator's ``TaskSet`` (``supervise.py``): if it crashes the coordinator stops loudly
instead of letting orphans pile up unnoticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from typing import Iterator

import psutil

from ..procutil import become_subreaper, child_pids
from ..supervise import TaskSet, fault_point

log = logging.getLogger("blast_grpc.supervisor")


class Orphans:
    def __init__(self) -> None:
        self.enabled = become_subreaper()
        # Children started on purpose, owned by their starters (and any this process had already).
        self.known: set[int] = {p.pid for p in self._children()}
        self._launching = 0
        self._sweeper: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def launching(self) -> Iterator[None]:
        """Around starting a child: until its pid is in ``known`` it must not look like an orphan."""
        self._launching += 1
        try:
            yield
        finally:
            self._launching -= 1

    def _children(self) -> list[psutil.Process]:
        pids = child_pids(os.getpid())  # one small read per thread, not a scan of every process
        if pids is None:  # no /proc/<pid>/task/<tid>/children here: psutil reads every process
            try:
                return psutil.Process().children()
            except psutil.Error:
                return []
        children = []
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                children.append(psutil.Process(pid))
        return children

    def collect(self) -> int:
        """SIGKILL every orphan child, reap the dead ones; returns how many were still alive."""
        if not self.enabled or self._launching:
            return 0
        alive = 0
        for child in self._children():
            if child.pid in self.known:
                continue
            with contextlib.suppress(psutil.Error):
                if child.status() != psutil.STATUS_ZOMBIE:
                    alive += 1
                    child.send_signal(signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child.pid, os.WNOHANG)
        if alive:
            log.info("ended %d orphaned process(es) of the engine", alive)
        return alive

    def start(self, tasks: TaskSet, interval_s: float = 2.0) -> None:
        """Sweep every ``interval_s`` as a task of ``tasks`` (the coordinator's); ``finish`` stops it."""
        if self.enabled:
            self._sweeper = tasks.spawn(self._sweep(interval_s), name="orphan-sweeper")

    async def _sweep(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            fault_point("orphan-sweeper")
            self.collect()

    async def finish(self, timeout_s: float = 10.0) -> None:
        """At shutdown, after the workers and the gateway stopped: end every child left, and the
        children re-parented here while doing so, until none is left (or ``timeout_s``)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        if not self.enabled:
            return
        self.known.clear()
        deadline = time.monotonic() + timeout_s
        while self._children() and time.monotonic() < deadline:
            self.collect()
            await asyncio.sleep(0.02)
        left = self._children()
        if left:
            log.error("%d process(es) of the engine did not end: %s", len(left), [p.pid for p in left])
