"""The eight workloads, in the order the suite runs them. Each module has ``NAME`` and
``async def run(ctx: BenchContext) -> WorkloadResult``."""

from __future__ import annotations

from types import ModuleType

from . import concurrency, extraction, fanout, first_of_n, miniwob, overhead, remote_workers, start_cache

WORKLOADS: dict[str, ModuleType] = {
    m.NAME: m for m in (fanout, extraction, first_of_n, overhead, concurrency, start_cache, miniwob, remote_workers)
}
