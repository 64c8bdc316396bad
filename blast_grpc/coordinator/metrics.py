"""Engine metrics: task counts, browsers, memory (PSS of workers and their Chromium), usage."""

from __future__ import annotations

import asyncio

from .._proto.blast.v1 import blast_pb2 as pb
from ..procutil import tree_pss
from .scheduler import Scheduler
from .tasks import TaskStore
from .workers import WorkerHandle


def memory_bytes(workers: list[WorkerHandle]) -> int:
    return sum(tree_pss(w.pid) for w in workers if w.pid)


STATUS_TIMEOUT_S = 1.5  # each worker's GetStatus; a worker slower than this is reported, not waited for


def _problem(w: WorkerHandle, answered: bool) -> str:
    if answered:
        return ""
    if w.state != pb.WORKER_STATE_READY:
        return f"the worker is {pb.WorkerState.Name(w.state).removeprefix('WORKER_STATE_').lower()}"  # type: ignore[arg-type]
    return f"the worker did not answer its status call within {STATUS_TIMEOUT_S:g}s"


async def collect_metrics(store: TaskStore, scheduler: Scheduler, workers: list[WorkerHandle]) -> pb.GetMetricsResponse:
    """A snapshot from what is known: every worker's status call is bounded, none can hang it."""
    counts = store.counts()
    statuses = await asyncio.gather(*(w.status(timeout=STATUS_TIMEOUT_S) for w in workers))
    infos = []
    browsers = contexts_total = 0
    for w, st in zip(workers, statuses, strict=True):
        contexts = list(st.open_contexts) if st is not None else []
        warm = st.warm_contexts if st is not None else 0
        kept = len(st.kept_contexts) if st is not None else 0
        browsers += len(contexts)
        contexts_total += st.browser_contexts if st is not None else 0  # Chromium's own count: leaks show
        infos.append(pb.WorkerInfo(worker_id=w.worker_id, address=w.address, state=w.state,  # type: ignore[arg-type]
                                   open_contexts=contexts, restarts=w.restarts, pid=w.pid, warm_contexts=warm,
                                   kept_contexts=kept, status_problem=_problem(w, st is not None)))
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
        memory_usage_gb=mem / 1024**3,  # GiB, as BLAST's (the name is BLAST's too)
        total_cost_usd=sum(u.cost_usd for u in usage),
        usage=usage,
        workers=infos,
        queued=len(scheduler.queue),
        open_contexts=contexts_total,
        finished=scheduler.telemetry.finished_counts(),
        execution_seconds=scheduler.telemetry.execution_seconds,
        steps=scheduler.telemetry.steps,
        step_seconds=scheduler.telemetry.step_seconds,
    )
