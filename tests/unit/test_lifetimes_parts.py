"""The pieces that end processes and folders: the PDEATHSIG wrapper and stale runtime folders."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from blast_grpc.coordinator.rundir import LOCK, RuntimeDir, remove_stale
from blast_grpc.procutil import write_deathsig_wrapper

# A parent that starts `sleep` through the wrapper, prints the sleeper's pid and waits.
PARENT = ("import subprocess, sys\n"
          "p = subprocess.Popen([sys.argv[1], '300'])\n"
          "print(p.pid, flush=True)\n"
          "p.wait()\n")


def test_the_wrapped_program_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    wrapper = write_deathsig_wrapper(tmp_path / "sleep", "/bin/sleep")
    parent = subprocess.Popen([sys.executable, "-c", PARENT, wrapper], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    sleeper = psutil.Process(int(parent.stdout.readline()))
    deadline = time.monotonic() + 30
    while sleeper.cmdline()[:1] != ["/bin/sleep"]:  # the wrapper exec'd the real program in place
        assert time.monotonic() < deadline, sleeper.cmdline()
        time.sleep(0.02)
    assert sleeper.cmdline() == ["/bin/sleep", "300"]
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    sleeper.wait(timeout=30)  # psutil.TimeoutExpired if it outlived its parent


def test_only_unlocked_runtime_folders_are_removed(tmp_path: Path) -> None:
    live = RuntimeDir(str(tmp_path))
    dead = tmp_path / "blast-dead"
    dead.mkdir()
    (dead / LOCK).touch()  # nobody holds its lock: its coordinator is gone
    other = tmp_path / "blast-not-ours"
    other.mkdir()  # no lock file: never touched
    held = tmp_path / "blast-held"
    held.mkdir()
    fd = os.open(held / LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert remove_stale(tmp_path) == [dead]
        assert live.path.is_dir() and other.is_dir() and held.is_dir() and not dead.exists()
    finally:
        os.close(fd)
        live.remove()
    assert not live.path.exists()
