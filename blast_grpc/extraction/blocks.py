"""Shared-memory blocks holding one page text each: create, read a slice, release, clean up.

The creator side (``create_block`` / ``release_block``) runs in the worker; the
reader side (``read_slice``) runs in the reader processes; ``cleanup_blocks`` runs
in the supervisor after a worker died. See the package docstring for the layout.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import sys
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Iterator

import psutil

SHM_DIR = Path("/dev/shm")
PREFIX = "blast"
_TAG = re.compile(r"^[A-Za-z0-9-]{1,32}$")
_counter = itertools.count()  # per process, so two pools with the same tag never collide


@dataclass(frozen=True)
class ChunkRef:
    """What travels to a reader instead of the text: the block and the byte span to read."""

    block: str
    offset: int
    length: int


def check_owner_tag(owner_tag: str) -> str:
    """Return the tag if it is usable in a block name (letters, digits, '-'; no '_'), else raise."""
    if not _TAG.match(owner_tag):
        raise ValueError(f"owner_tag must be 1-32 letters, digits or '-' (no '_'), got {owner_tag!r}")
    return owner_tag


def create_block(owner_tag: str, data: bytes) -> SharedMemory:
    """A new block ``blast_<tag>_<pid>_<n>`` holding ``data``; the caller owns it and must release it."""
    check_owner_tag(owner_tag)
    while True:
        name = f"{PREFIX}_{owner_tag}_{os.getpid()}_{next(_counter)}"
        try:
            shm = SharedMemory(name=name, create=True, size=max(1, len(data)))
        except FileExistsError:  # left by an earlier process with our pid; cleanup_blocks removes it
            continue
        _view(shm)[: len(data)] = data
        return shm


def _view(shm: SharedMemory) -> memoryview:
    buf = shm.buf
    if buf is None:
        raise ValueError(f"shared-memory block {shm.name} is closed")
    return buf


def release_block(shm: SharedMemory) -> None:
    """Close and unlink (creator only). Unlinking also unregisters it from the resource tracker."""
    shm.close()
    with contextlib.suppress(FileNotFoundError):
        shm.unlink()


@contextlib.contextmanager
def _untracked() -> Iterator[None]:
    """Attach without registering with the resource tracker (Python < 3.13 registers on attach).

    Reader processes are spawned by the creator and share its resource tracker,
    whose registry is a set: a reader registering and then unregistering would
    erase the creator's registration, and the creator's own unlink would then
    make the tracker print a KeyError. So the reader never registers at all.
    """
    original = resource_tracker.register

    def register(name: str, rtype: str) -> None:
        if rtype != "shared_memory":
            original(name, rtype)

    setattr(resource_tracker, "register", register)  # noqa: B010 - a module attribute, patched briefly
    try:
        yield
    finally:
        setattr(resource_tracker, "register", original)  # noqa: B010


def _attach(name: str) -> SharedMemory:
    if sys.version_info >= (3, 13):
        return SharedMemory(name=name, track=False)
    with _untracked():
        return SharedMemory(name=name)


def read_slice(ref: ChunkRef) -> str:
    """Reader side: attach to the block, decode the chunk, detach. Never unlinks.

    Raises ``FileNotFoundError`` if the creator already unlinked the block (the
    extraction was cancelled or failed; nobody waits for this chunk any more).
    """
    shm = _attach(ref.block)
    try:
        with _view(shm)[ref.offset: ref.offset + ref.length] as view:
            return str(view, "utf-8")
    finally:
        shm.close()


def _owner_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def cleanup_blocks(owner_tag: str, *, keep_live_owners: bool = True, pid: int | None = None) -> list[str]:
    """Unlink the blocks ``/dev/shm/blast_<owner_tag>_<pid>_<n>`` left behind; return their names.

    The supervisor calls this after the worker tagged ``owner_tag`` died. With
    ``keep_live_owners`` (the default) blocks whose creator pid is still running
    are kept: they belong to a live process, such as the restarted worker that
    reuses the tag. With ``pid`` only the blocks that process created are
    considered: other engines on the same machine have workers with the same
    tags (``w1``, ...), and their blocks are none of this supervisor's business.
    Blocks another cleaner removes first are skipped silently.
    """
    check_owner_tag(owner_tag)
    pattern = re.compile(rf"^{PREFIX}_{re.escape(owner_tag)}_(\d+)_\d+$")
    removed = []
    try:
        entries = sorted(os.listdir(SHM_DIR))
    except FileNotFoundError:
        return []
    for name in entries:
        m = pattern.match(name)
        if m is None or (pid is not None and int(m.group(1)) != pid):
            continue
        if keep_live_owners and _owner_alive(int(m.group(1))):
            continue
        try:
            os.unlink(SHM_DIR / name)
        except FileNotFoundError:
            continue
        removed.append(name)
    return removed
