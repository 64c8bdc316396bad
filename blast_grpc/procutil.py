"""Small helpers for the processes the engine starts."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, arg: int) -> bool:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        return bool(libc.prctl(option, arg) == 0)
    except OSError:
        return False


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (so nothing is orphaned).

    Safe to call in a ``preexec_fn`` (between fork and exec of a child); a no-op off Linux.
    """
    _prctl(PR_SET_PDEATHSIG, sig)


def become_subreaper() -> bool:
    """Make this process the one its orphaned descendants are re-parented to (instead of init),
    so it can find and end them (``prctl(PR_SET_CHILD_SUBREAPER)``); False off Linux."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


# A program that runs another one with PR_SET_PDEATHSIG=SIGKILL: the target dies with the
# process that started it, however that process ends. Python with -S -E starts in ~20 ms, and
# only when a browser or driver starts. The parent's pid is read before the prctl so that a
# parent which died in between is noticed (the signal would never come).
_DEATHSIG_WRAPPER = """#!{python} -SE
import ctypes, os, sys
parent = os.getppid()
ctypes.CDLL("libc.so.6").prctl({option}, 9)
if os.getppid() != parent:
    sys.exit(137)
os.execv({target!r}, [{target!r}, *sys.argv[1:]])
"""


def write_deathsig_wrapper(path: str | Path, target: str) -> str:
    """Write an executable at ``path`` that execs ``target`` (with its arguments) so that it is
    SIGKILLed when its parent process dies; returns ``path``. For programs started by a library
    that takes an executable path (Playwright's browser and Node.js driver)."""
    import sys

    path = Path(path)
    path.write_text(_DEATHSIG_WRAPPER.format(python=sys.executable, option=PR_SET_PDEATHSIG, target=target))
    path.chmod(0o700)
    return str(path)


def write_ready_file(path: str | Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` atomically (temp file + rename): readers see nothing or all of it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


class StartError(RuntimeError):
    """A child process exited, or did not write its ready file in time, while starting."""


def _check_start(path: Path, what: str, code: int | None, deadline: float, timeout: float) -> bool:
    if path.exists():
        return True
    if code is not None:
        raise StartError(f"{what} exited with code {code} while starting")
    if time.monotonic() > deadline:
        raise StartError(f"{what} did not start within {timeout:g}s")
    return False


def wait_ready_file(path: str | Path, proc: subprocess.Popen[bytes], timeout: float = 30.0,
                    what: str = "the process") -> dict[str, Any]:
    """Block until ``proc`` writes its ready file, and return its JSON; ``StartError`` if it exits or times out."""
    path, deadline = Path(path), time.monotonic() + timeout
    while not _check_start(path, what, proc.poll(), deadline, timeout):
        time.sleep(0.02)
    return dict(json.loads(path.read_text(encoding="utf-8")))


async def wait_ready_file_async(path: str | Path, proc: asyncio.subprocess.Process, timeout: float = 30.0,
                                what: str = "the process") -> dict[str, Any]:
    """``wait_ready_file`` for an asyncio child process."""
    path, deadline = Path(path), time.monotonic() + timeout
    while not _check_start(path, what, proc.returncode, deadline, timeout):  # noqa: ASYNC110 (a file)
        await asyncio.sleep(0.02)
    return dict(json.loads(path.read_text(encoding="utf-8")))


def child_pids(pid: int) -> list[int] | None:
    """The children of ``pid`` from ``/proc/<pid>/task/*/children`` (None where Linux has no such file).

    psutil's ``children()`` reads the status of every process on the machine to find the ones
    whose parent is ``pid``: on a busy host the coordinator's orphan sweep (every 2 s) spent
    nearly all its CPU there (issue 13's profile). The kernel's list of each thread's children
    costs one small read per thread, and children re-parented to a subreaper appear in it too.
    """
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    pids: set[int] = set()
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                pids.update(int(p) for p in f.read().split())
        except FileNotFoundError:
            if tid == str(pid):
                return None  # the kernel keeps no children files (CONFIG_PROC_CHILDREN off)
        except OSError:
            continue  # the thread ended meanwhile
    return sorted(pids)


def _tree(pid: int) -> list[psutil.Process]:
    """A process and all its descendants ([] if it is gone)."""
    try:
        root = psutil.Process(pid)
        if child_pids(pid) is None:
            return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    out, todo = [root], [pid]
    while todo:
        for child in child_pids(todo.pop()) or []:
            with contextlib.suppress(psutil.Error):
                out.append(psutil.Process(child))
                todo.append(child)
    return out


def tree_pss(pid: int) -> int:
    """Proportional set size of a process and all its descendants, in bytes (0 if it is gone)."""
    total = 0
    for proc in _tree(pid):
        with contextlib.suppress(psutil.Error):
            total += proc.memory_full_info().pss
    return total


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process and its descendants have used, including
    children that already exited and were reaped by a process of the tree."""
    total = 0.0
    for proc in _tree(pid):
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


# Stopping a child is always the same sequence: SIGTERM (it may finish cleanly), up to a grace
# period, then SIGKILL to its whole process group (each child is started with
# ``start_new_session=True``, so the group is it and whatever it spawned: nothing outlives it),
# then reap it. ``stop_process`` does it for a ``subprocess.Popen``, ``stop_processes`` for
# asyncio children (several at once share one grace period).


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` (SIGKILL) to the process group ``pid`` leads, if it is still there."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # gone already, or not ours any more
        os.killpg(pid, sig)


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM, up to ``grace_s`` to exit, then SIGKILL to its whole process group; waits for it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    kill_group(proc.pid)
    proc.wait()


async def stop_processes(procs: list[asyncio.subprocess.Process], grace_s: float, *,
                         term_group: bool = False) -> None:
    """The same for asyncio children, all at once: SIGTERM each (its whole group with
    ``term_group``), up to ``grace_s`` for all to exit, then SIGKILL each one's group and reap."""
    live = [p for p in procs if p.returncode is None]
    for p in live:
        if term_group:
            kill_group(p.pid, signal.SIGTERM)
        else:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
    if live:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in live)), grace_s)
    for p in procs:
        kill_group(p.pid)
    for p in procs:
        await p.wait()
