"""Contexts for announced subtasks, made while the launching model call still runs.

A plan that says how many subtasks are coming (``SUBTASKS: n``, ``agent/subtasks.py``)
makes the parent's worker call ``PrepareSubtasks`` right after planning. The model call
that will launch them takes a model latency; during it the machine is idle, so each
worker is asked (``WarmUp``) for the contexts the scheduler will hand it: the same
least-loaded choice the scheduler makes (``Scheduler._pick``), played forward ``n`` times.
Creating a context and its renderer then happens off the critical path instead of in
the burst when all ``n`` subtasks start at once (issue 13).

Asking is advice, never a promise: a worker that does not answer within
``WARM_UP_TIMEOUT_S`` is skipped, and a worker drops the expectation after a while if the
subtasks never come (``worker/contexts.py``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from .._proto.blast.v1 import blast_pb2 as pb
from .._proto.blast.worker.v1 import worker_pb2 as wpb
from .workers import WorkerHandle

log = logging.getLogger("blast_grpc.prewarm")

WARM_UP_TIMEOUT_S = 2.0


def spread(loads: dict[str, int], count: int) -> dict[str, int]:
    """How many of ``count`` new tasks each worker gets when each goes to the least loaded
    (ties: the first in order), as the scheduler places them."""
    load = dict(loads)
    share = dict.fromkeys(loads, 0)
    for _ in range(count if loads else 0):
        w = min(load, key=lambda k: load[k])
        load[w] += 1
        share[w] += 1
    return share


class Prewarmer:
    def __init__(self, workers: Callable[[], list[WorkerHandle]]) -> None:
        self._workers = workers

    async def prepare(self, count: int) -> int:
        """Ask the ready workers for ``count`` contexts in all; returns how many were asked for."""
        ready = [w for w in self._workers() if w.state == pb.WORKER_STATE_READY and w.stub is not None]
        shares = spread({w.worker_id: len(w.running) for w in ready}, count)
        asked = [(w, shares[w.worker_id]) for w in ready if shares[w.worker_id] > 0]
        replies = await asyncio.gather(
            *(w.stub.WarmUp(wpb.WarmUpRequest(expected=n), timeout=WARM_UP_TIMEOUT_S)  # type: ignore[union-attr]
              for w, n in asked), return_exceptions=True)
        for (w, _), r in zip(asked, replies, strict=True):
            if isinstance(r, BaseException):
                log.info("worker %s did not take the warm-up: %s", w.worker_id, r)
        return sum(n for _, n in asked)
