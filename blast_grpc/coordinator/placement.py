"""Which ready worker a task goes to: the one with the most free capacity, local or remote.

A remote worker reports its capacity (``settings.worker_max_contexts`` on its host) and is
never given more tasks than that. Local workers share ``constraints.max_concurrent_browsers``
(the scheduler's global limit), so each counts as having an equal part of it; with local
workers only, "most free" is "fewest running", as before remote workers existed. Free
capacity is compared as a fraction, so a host with 16 contexts takes twice the tasks of one
with 8.
"""

from __future__ import annotations

import math

from ..config import Config
from .workers import WorkerHandle


def local_capacity(config: Config) -> int:
    return max(1, math.ceil(config.constraints.max_concurrent_browsers / max(1, config.settings.workers)))


def capacity(w: WorkerHandle, local: int) -> int:
    return getattr(w, "capacity", 0) or local


def has_room(w: WorkerHandle) -> bool:
    """False for a remote worker running as many tasks as it has contexts (local ones: never full)."""
    cap = getattr(w, "capacity", 0)
    return not cap or len(w.running) < cap


def most_free(candidates: list[WorkerHandle], local: int) -> WorkerHandle | None:
    room = [w for w in candidates if has_room(w)]
    if not room:
        return None
    # Ties (often: short tasks leave every worker empty) go to the bigger free room.
    return max(room, key=lambda w: (1 - len(w.running) / capacity(w, local), capacity(w, local) - len(w.running)))
