"""Merge the partial answers of the chunks into the one answer the agent reads."""

from __future__ import annotations

import json
import re
from typing import Any

# Short answers saying the chunk does not hold the answer. Only answers this short
# are judged, so a real answer that mentions "not found" in passing is kept.
_NOT_FOUND = re.compile(
    r"(?i)\b(not\s+found|no\s+(relevant\s+)?(information|answer|mention|data|details)|"
    r"(does|do|did)\s*(n't|\s+not)\s+(contain|mention|include|say|provide|state|appear)|"
    r"(is|are)\s+not\s+(mentioned|present|provided|included|stated|available)|"
    r"(can|could)\s*(not|n't)\s+(find|determine|be\s+found)|unable\s+to\s+(find|determine))\b"
)
_NOT_FOUND_MAX_CHARS = 300
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL | re.IGNORECASE)


def _parse(partial: str) -> Any:
    """The partial as JSON (code fences allowed), or None when it is not JSON."""
    text = partial.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        return json.loads(text)
    except ValueError:
        return None


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _says_nothing(obj: dict[str, Any]) -> bool:
    """``{"found": false}``, or an object whose every value is null/empty."""
    return obj.get("found") is False or all(_empty(v) for v in obj.values())


def _unique(items: list[Any], key: Any) -> list[Any]:
    seen: set[str] = set()
    out = []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out


def _text_says_nothing(text: str) -> bool:
    if not text:
        return True
    parsed = _parse(text)
    if isinstance(parsed, dict):
        return _says_nothing(parsed)
    return len(text) <= _NOT_FOUND_MAX_CHARS and _NOT_FOUND.search(text) is not None


def merge_partials(partials: list[str]) -> str:
    """One answer from the chunks' answers (in chunk order).

    If every partial is a JSON object: objects that say nothing (``{"found":
    false}`` or all values null/empty) are dropped and duplicates (the same fact
    seen in two overlapping chunks) merged; one left is returned as JSON, several
    as a JSON list, none left returns the first partial so "not found" still
    reads as not found. Otherwise the partials are text: empty ones and short
    "not found / does not contain" answers are dropped while another answer
    remains, duplicates are merged and the rest joined with newlines; if every
    answer says "not found", the first one is returned.
    """
    if not partials:
        return ""
    parsed = [_parse(p) for p in partials]
    if all(isinstance(obj, dict) for obj in parsed):
        useful = [obj for obj in parsed if not _says_nothing(obj)]
        useful = _unique(useful, lambda obj: json.dumps(obj, sort_keys=True))
        if not useful:
            return partials[0]
        return json.dumps(useful[0] if len(useful) == 1 else useful)
    texts = _unique([p.strip() for p in partials], lambda t: t)
    useful = [t for t in texts if not _text_says_nothing(t)]
    if useful:
        return "\n".join(useful)
    said = [t for t in texts if t]
    return said[0] if said else ""
