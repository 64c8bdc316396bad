"""Injected failures: which kinds exist, how they are specified, and the queue they wait in.

Faults wait in a queue; each request takes the first queued fault that applies
to it (same model, or any model when the fault has none). ``huge_answer`` (a 200 whose
body is a valid completion: a ``done`` call with ``HUGE_ANSWER_BYTES`` of text) and
``non_json`` (a 200 with an HTML page, as a misconfigured base URL gives) break the
answer itself. ``huge_answer``, ``malformed_tool_json`` and ``no_tool_call`` only make
sense for agent requests (those offer tools), so
extraction and planner requests pass over them and they wait for the next agent
request. The queue is locked because tests add faults from other threads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

KINDS = ("http_429", "http_500", "malformed_tool_json", "no_tool_call", "stall", "huge_answer", "non_json")
HUGE_ANSWER_BYTES = 5 * 1024 * 1024
AGENT_ONLY = frozenset({"malformed_tool_json", "no_tool_call", "huge_answer"})


class FaultError(ValueError):
    """A fault specification is invalid; ``param`` names the offending field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Fault:
    """One failure to inject; ``model`` None means the next request of any model."""

    kind: str
    model: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FaultError(f"unknown fault kind {self.kind!r}; use one of: {', '.join(KINDS)}", "kind")

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model}


def parse_fault_list(text: str, model: str | None = None) -> list[Fault]:
    """``"http_429,stall"`` (the ``--faults`` flag) -> faults, in order."""
    return [Fault(k.strip(), model) for k in text.split(",") if k.strip()]


def parse_faults_body(body: Any) -> list[Fault]:
    """``{"faults": [{"kind": ..., "model": ...}], "model": null}`` -> faults (POST /sim/faults)."""
    if not isinstance(body, dict):
        raise FaultError("body must be a JSON object like {\"faults\": [{\"kind\": \"http_429\"}]}")
    default_model = body.get("model")
    if default_model is not None and not isinstance(default_model, str):
        raise FaultError("model must be a string or null", "model")
    items = body.get("faults")
    if not isinstance(items, list):
        raise FaultError("faults must be a list of {\"kind\": ...} objects", "faults")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):  # shorthand: "http_429"
            item = {"kind": item}
        if not isinstance(item, dict) or not isinstance(item.get("kind"), str):
            raise FaultError(f"faults[{i}] must be an object with a string 'kind'", f"faults[{i}].kind")
        model = item.get("model", default_model)
        if model is not None and not isinstance(model, str):
            raise FaultError(f"faults[{i}].model must be a string or null", f"faults[{i}].model")
        try:
            out.append(Fault(item["kind"], model))
        except FaultError as exc:
            raise FaultError(f"faults[{i}]: {exc}", f"faults[{i}].kind") from None
    return out


class FaultQueue:
    """Faults waiting for the requests they will break."""

    def __init__(self, faults: list[Fault] | None = None) -> None:
        self._lock = threading.Lock()
        self._queue: list[Fault] = list(faults or [])

    def add(self, faults: list[Fault]) -> None:
        with self._lock:
            self._queue.extend(faults)

    def take(self, model: str, request_kind: str) -> Fault | None:
        """Remove and return the first fault for this request, if any."""
        with self._lock:
            for i, f in enumerate(self._queue):
                if f.model not in (None, model):
                    continue
                if f.kind in AGENT_ONLY and request_kind != "agent":
                    continue
                return self._queue.pop(i)
        return None

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._queue)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
