"""Process helpers: ready files, and what a process tree costs (PSS, CPU)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from blast_grpc.procutil import (
    StartError,
    _tree,
    child_pids,
    stop_processes,
    tree_cpu_seconds,
    tree_pss,
    wait_ready_file,
    write_ready_file,
)

BUSY_CHILD = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"


def test_ready_file_round_trip_and_failures(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    writer = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(0.2)\n"
                               "from blast_grpc.procutil import write_ready_file\n"
                               f"write_ready_file({str(ready)!r}, {{'url': 'http://x'}}); time.sleep(5)"])
    try:
        assert wait_ready_file(ready, writer, 30, what="the writer") == {"url": "http://x"}
    finally:
        writer.kill()
        writer.wait()
    quitter = subprocess.Popen([sys.executable, "-c", "raise SystemExit(4)"])
    with pytest.raises(StartError, match="the quitter exited with code 4 while starting"):
        wait_ready_file(tmp_path / "never.json", quitter, 30, what="the quitter")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pytest.raises(StartError, match="did not start within 0.3s"):
            wait_ready_file(tmp_path / "never.json", sleeper, 0.3)
    finally:
        sleeper.kill()
        sleeper.wait()
    write_ready_file(tmp_path / "x.json", {"a": 1})
    assert (tmp_path / "x.json").read_text() == '{"a": 1}' and list(tmp_path.glob(".*tmp")) == []


def test_tree_cpu_counts_children_that_already_exited() -> None:
    before = tree_cpu_seconds(os.getpid())
    subprocess.run([sys.executable, "-c", BUSY_CHILD], check=True)  # reaped by us: counted in children_*
    assert tree_cpu_seconds(os.getpid()) - before >= 0.25
    assert tree_pss(os.getpid()) > 1_000_000
    assert tree_cpu_seconds(2**22 + 12345) == 0.0 and tree_pss(2**22 + 12345) == 0


STUBBORN = ("import os, signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(300)\n")


@pytest.mark.asyncio
async def test_stop_processes_terms_then_kills_the_whole_group() -> None:
    polite = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(300)",
                                                  start_new_session=True)
    stubborn = await asyncio.create_subprocess_exec(sys.executable, "-c", STUBBORN, start_new_session=True,
                                                    stdout=asyncio.subprocess.PIPE)
    assert stubborn.stdout is not None
    grandchild = int(await asyncio.wait_for(stubborn.stdout.readline(), 30))
    await stop_processes([polite, stubborn], grace_s=0.5)
    assert polite.returncode == -signal.SIGTERM  # it exited on SIGTERM
    assert stubborn.returncode == -signal.SIGKILL  # it ignored SIGTERM: killed after the grace period
    gone = await asyncio.to_thread(psutil.wait_procs, [psutil.Process(grandchild)] if psutil.pid_exists(grandchild)
                                   else [], 30)
    assert not gone[1]  # its own child went with the group


def test_children_and_trees_come_from_the_kernels_lists_as_psutil_finds_them() -> None:
    # A child with a grandchild: both in the tree, only the child among our children.
    proc = subprocess.Popen(["bash", "-c", "sleep 30 & wait"])
    try:
        me = psutil.Process()
        deadline = time.monotonic() + 30
        while not psutil.Process(proc.pid).children() and time.monotonic() < deadline:
            time.sleep(0.01)  # until bash has started its sleep
        assert child_pids(os.getpid()) == sorted(p.pid for p in me.children())
        assert proc.pid in (child_pids(os.getpid()) or [])
        want = {os.getpid(), *(p.pid for p in me.children(recursive=True))}
        assert {p.pid for p in _tree(os.getpid())} == want and len(want) >= 3
    finally:
        for p in psutil.Process(proc.pid).children():
            p.kill()
        proc.wait()
    assert child_pids(2 ** 22 + 1) is None  # no such process
