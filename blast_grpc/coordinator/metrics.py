"""Engine metrics: task counts, browsers, memory (PSS of workers and their Chromium), usage."""

from __future__ import annotations

import asyncio

import psutil

from .._proto.blast.v1 import blast_pb2 as pb
from .scheduler import Scheduler
from .tasks import TaskStore
from .workers import WorkerHandle


def _tree_pss(pid: int) -> int:
    """Proportional set size of a process and all its descendants, in bytes."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_full_info().pss
        except psutil.Error:
            continue
    return total


def memory_bytes(workers: list[WorkerHandle]) -> int:
    return sum(_tree_pss(w.pid) for w in workers if w.pid)


async def collect_metrics(store: TaskStore, scheduler: Scheduler, workers: list[WorkerHandle]) -> pb.GetMetricsResponse:
    counts = store.counts()
    statuses = await asyncio.gather(*(w.status(timeout=1.0) for w in workers))
    infos = []
    browsers = 0
    for w, st in zip(workers, statuses, strict=True):
        contexts = list(st.open_contexts) if st is not None else []
        browsers += len(contexts)
        infos.append(pb.WorkerInfo(worker_id=w.worker_id, address=w.address, state=w.state,  # type: ignore[arg-type]
                                   open_contexts=contexts, restarts=w.restarts, pid=w.pid))
    mem = await asyncio.to_thread(memory_bytes, workers)
    usage = list(scheduler.usage.values())
    return pb.GetMetricsResponse(
        tasks=pb.TaskCounts(
            scheduled=counts.get(pb.TASK_STATE_QUEUED, 0),
            running=counts.get(pb.TASK_STATE_RUNNING, 0),
            completed=counts.get(pb.TASK_STATE_COMPLETED, 0),
            failed=counts.get(pb.TASK_STATE_FAILED, 0),
            cancelled=counts.get(pb.TASK_STATE_CANCELLED, 0),
        ),
        concurrent_browsers=browsers,
        memory_usage_gb=mem / 1e9,
        total_cost_usd=sum(u.cost_usd for u in usage),
        usage=usage,
        workers=infos,
        queued=len(scheduler.queue),
    )
