"""Request counters for ``GET /sim/stats`` and the recent request bodies for ``GET /sim/requests``.

Both are locked: tests read them from other threads. The request log keeps the last
``RequestLog.KEEP`` bodies as received, so a test can check exactly what the engine sent
the model (for instance that no secret value reached it, in any encoding).
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Any


class Stats:
    """Request counts for ``GET /sim/stats``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._total = 0
            self._bad = 0
            self._by_model: Counter[str] = Counter()
            self._by_kind: Counter[str] = Counter()
            self._by_scenario: Counter[str] = Counter()
            self._faults: Counter[str] = Counter()

    def record(self, model: str, kind: str, scenario: str | None) -> None:
        with self._lock:
            self._total += 1
            self._by_model[model] += 1
            self._by_kind[kind] += 1
            self._by_scenario[scenario or "(none)"] += 1

    def record_fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def record_bad_request(self) -> None:
        with self._lock:
            self._bad += 1

    def snapshot(self) -> dict[str, Any]:
        """Counts as plain JSON-able data."""
        with self._lock:
            return {
                "requests_total": self._total,
                "bad_requests": self._bad,
                "by_model": dict(self._by_model),
                "by_kind": dict(self._by_kind),
                "by_scenario": dict(self._by_scenario),
                "faults_injected": dict(self._faults),
            }


class RequestLog:
    """The most recent chat completion request bodies, as the text that arrived."""

    KEEP = 500

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bodies: deque[str] = deque(maxlen=self.KEEP)

    def add(self, body: str) -> None:
        with self._lock:
            self._bodies.append(body)

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self._bodies)

    def clear(self) -> None:
        with self._lock:
            self._bodies.clear()
