"""Request counters for ``GET /sim/stats`` (locked: tests read them from other threads).

Besides counts, agent requests are measured for the prompt-cost bench: the body's
size in bytes, the observation's size in characters, and the *prefix share* — how
much of the request's prompt (tools, then messages in order, canonical JSON) is
identical to the previous request of the same conversation, i.e. what a provider's
prompt cache could reuse. A conversation is keyed by model + its first two messages
(system prompt and ``TASK:``), so two runs of one identical task at the same time
would be mixed up; the bench runs distinct or sequential tasks.

The request log keeps the last ``RequestLog.KEEP`` bodies as received, so a test can check
exactly what the engine sent the model (for instance that no secret value reached it, in any
encoding).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import Counter, OrderedDict, deque
from typing import Any

MAX_CONVERSATIONS = 2000  # prompts remembered for the prefix share; the oldest is forgotten first
MAX_SAMPLES = 20_000  # per scenario and measure; older samples are dropped


def canonical_prompt(body: dict[str, Any]) -> str:
    """The prompt as a provider caches it: tool schemas first, then every message in order."""
    parts = [json.dumps(body.get("tools") or [], sort_keys=True)]
    parts += [json.dumps(m, sort_keys=True) for m in body.get("messages") or []]
    return "\n".join(parts)


class PromptPrefixes:
    """The last prompt of each conversation, to measure how much the next one shares with it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: OrderedDict[str, str] = OrderedDict()

    @staticmethod
    def _key(body: dict[str, Any]) -> str:
        head = [body.get("model"), *(body.get("messages") or [])[:2]]
        return hashlib.sha256(json.dumps(head, sort_keys=True, default=str).encode()).hexdigest()

    def share(self, body: dict[str, Any]) -> float | None:
        """The share of this prompt equal to the conversation's previous one (None for its first request)."""
        prompt, key = canonical_prompt(body), self._key(body)
        with self._lock:
            previous = self._last.pop(key, None)
            self._last[key] = prompt
            while len(self._last) > MAX_CONVERSATIONS:
                self._last.popitem(last=False)
        if previous is None or not prompt:
            return None
        return len(os.path.commonprefix([previous, prompt])) / len(prompt)

    def clear(self) -> None:
        with self._lock:
            self._last.clear()


class Stats:
    """Request counts and agent prompt sizes for ``GET /sim/stats``."""

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
            self._prompts: dict[str, dict[str, list[float]]] = {}
            self._images = 0

    def record(self, model: str, kind: str, scenario: str | None) -> None:
        with self._lock:
            self._total += 1
            self._by_model[model] += 1
            self._by_kind[kind] += 1
            self._by_scenario[scenario or "(none)"] += 1

    def record_prompt(self, scenario: str | None, request_bytes: int, prefix_share: float | None,
                      observation_chars: int) -> None:
        """One agent request's size, its prefix share (None: first of its conversation), its observation's size."""
        with self._lock:
            p = self._prompts.setdefault(scenario or "(none)",
                                         {"request_bytes": [], "prefix_share": [], "observation_chars": []})
            p["request_bytes"].append(request_bytes)
            p["observation_chars"].append(observation_chars)
            if prefix_share is not None:
                p["prefix_share"].append(round(prefix_share, 4))
            for samples in p.values():
                del samples[:-MAX_SAMPLES]

    def record_images(self, n: int) -> None:
        """Screenshots that arrived with observations (vision)."""
        with self._lock:
            self._images += n

    def record_fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def record_bad_request(self) -> None:
        with self._lock:
            self._bad += 1

    def snapshot(self) -> dict[str, Any]:
        """Counts as plain JSON-able data; ``prompts`` holds every agent request's sizes, per scenario."""
        with self._lock:
            return {
                "requests_total": self._total,
                "bad_requests": self._bad,
                "by_model": dict(self._by_model),
                "by_kind": dict(self._by_kind),
                "by_scenario": dict(self._by_scenario),
                "faults_injected": dict(self._faults),
                "prompts": {k: {m: list(v) for m, v in d.items()} for k, d in self._prompts.items()},
                "observation_images": self._images,
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
