"""Long-lived background work that must not die quietly: ``TaskSet`` owns it.

A process's loops (the dispatcher, the worker supervisors, the memory sampler, the
task database's writer, ...) run for the life of the process. If one of them raises,
the process is no longer doing its job, so carrying on would hide the bug: work
queues up that nothing will ever dispatch. ``TaskSet`` is the one owner of such
tasks (as ``asyncio.TaskGroup`` is for a block, but for a whole process)::

    spawn(coro) ──▶ task ──returns / cancelled──▶ forgotten
                        └──raises──▶ logged with its traceback ──▶ ``failed`` is set
                                      (the process's main coroutine waits on it and
                                       exits non-zero, so its supervisor restarts it)

Work that is not a task (a thread, a callback) reports its crash with ``crashed``.
``aclose`` cancels what is left and waits for it; it is idempotent. A process's main
coroutine waits with ``first_of(stop, tasks.failed)`` (a signal or a crash).

Tests inject a crash with ``BLAST_TEST_CRASH_LOOP=<name>``: ``fault_point(name)`` then
raises where a loop calls it. The variable is read each call, so it costs nothing when
unset and is never set outside tests. With ``BLAST_TEST_CRASH_ONCE=<file>`` as well, only
the first call (in any process: the file is created exclusively) crashes, so a process
restarted by its supervisor, which inherits the same environment, runs on normally.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Coroutine, TypeVar

log = logging.getLogger("blast_grpc.supervise")
T = TypeVar("T")
CRASH_ENV = "BLAST_TEST_CRASH_LOOP"
CRASH_ONCE_ENV = "BLAST_TEST_CRASH_ONCE"


class InjectedCrash(RuntimeError):
    """The crash a test asked for with ``BLAST_TEST_CRASH_LOOP``."""


def fault_point(name: str) -> None:
    """Raise ``InjectedCrash`` when the tests asked the loop ``name`` to crash here."""
    if os.environ.get(CRASH_ENV) != name:
        return
    once = os.environ.get(CRASH_ONCE_ENV)
    if once:
        try:  # O_EXCL: of all the processes sharing this environment, exactly one crashes
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            return
    raise InjectedCrash(f"crash injected into {name!r} ({CRASH_ENV})")


class TaskSet:
    """Owns a process's long-lived tasks; the first crash sets ``failed``."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self.failed = asyncio.Event()
        self.crash: str = ""  # what crashed first, for the exit message

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.crashed(task.get_name(), exc)

    def crashed(self, what: str, exc: BaseException) -> None:
        """Record that ``what`` died of ``exc``: logged with its traceback, ``failed`` set."""
        log.critical("%s crashed; the process stops so that it can be restarted", what, exc_info=exc)
        if not self.failed.is_set():
            self.crash = f"{what}: {type(exc).__name__}: {exc}"
            self.failed.set()

    async def aclose(self) -> None:
        """Cancel every task still running and wait for them; idempotent."""
        while self._tasks:
            pending = list(self._tasks)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            self._tasks.difference_update(pending)


async def first_of(*events: asyncio.Event) -> None:
    """Return once any of ``events`` is set (e.g. a stop signal or a ``TaskSet``'s ``failed``)."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
