"""``GetMetrics`` in BLAST's ``engine.get_metrics()`` shape: the dict BLAST users read.

BLAST (PyPI ``blastai`` 0.1.6, ``Engine.get_metrics``) returns::

    {"tasks": {"scheduled", "running", "completed"}, "concurrent_browsers",
     "memory_usage_gb",   # bytes / 1024**3, round(_, 2)
     "total_cost"}        # USD, round(_, 2)

We return exactly those keys in those units and roundings (its ``/metrics`` route serves
the same dict), plus what a BLAST user also asks about: failed and cancelled tasks, open
browser contexts, token and call totals, seconds spent waiting for the model, seconds
tasks ran, counts of ended tasks, and usage per model. One function builds it for
``Client.get_metrics`` / ``Engine.get_metrics`` and the gateway's JSON ``/metrics``.
"""

from __future__ import annotations

from typing import Any

from ._proto.blast.v1 import blast_pb2 as pb

DIGITS = 2  # BLAST's rounding of memory and cost; we round our seconds the same way


def blast_metrics(m: pb.GetMetricsResponse) -> dict[str, Any]:
    usage = list(m.usage)
    prompt = sum(u.prompt_tokens for u in usage)
    completion = sum(u.completion_tokens for u in usage)
    return {
        # BLAST's keys
        "tasks": {
            "scheduled": m.tasks.scheduled,
            "running": m.tasks.running,
            "completed": m.tasks.completed,
            "failed": m.tasks.failed,
            "cancelled": m.tasks.cancelled,
        },
        "concurrent_browsers": m.concurrent_browsers,
        "memory_usage_gb": round(m.memory_usage_gb, DIGITS),
        "total_cost": round(m.total_cost_usd, DIGITS),
        # ours
        "open_contexts": m.open_contexts,  # tasks', warm and kept contexts
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "llm_calls": sum(u.requests for u in usage),
        "llm_seconds": round(sum(u.llm_seconds for u in usage), DIGITS),
        "execution_seconds": round(m.execution_seconds, DIGITS),
        "tasks_finished": {"completed": m.finished.completed, "failed": m.finished.failed,
                           "cancelled": m.finished.cancelled},
        "usage": {u.model: {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                            "requests": u.requests, "llm_seconds": round(u.llm_seconds, DIGITS),
                            "cost": round(u.cost_usd, DIGITS)} for u in usage},
    }
