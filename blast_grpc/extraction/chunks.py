"""Split UTF-8 text into overlapping chunks that start and end on character boundaries."""

from __future__ import annotations


def _is_continuation(byte: int) -> bool:
    return byte & 0xC0 == 0x80


def _back_to_boundary(data: bytes, i: int) -> int:
    """The largest character boundary <= i."""
    while 0 < i < len(data) and _is_continuation(data[i]):
        i -= 1
    return i


def _forward_to_boundary(data: bytes, i: int) -> int:
    """The smallest character boundary >= i."""
    while i < len(data) and _is_continuation(data[i]):
        i += 1
    return i


def split_chunks(data: bytes, chunk_bytes: int, overlap_bytes: int) -> list[tuple[int, int]]:
    """Cut UTF-8 ``data`` into ``(offset, length)`` spans that cover all of it, in order.

    Each span is at most ``chunk_bytes`` long (longer only when one character is
    wider than ``chunk_bytes``), starts and ends on a character boundary, and
    begins about ``overlap_bytes`` before the previous one ends, so a sentence
    shorter than the overlap is always whole in some chunk. Empty ``data`` gives
    no spans. Raises ``ValueError`` unless ``0 <= overlap_bytes < chunk_bytes``.
    """
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be >= 1, got {chunk_bytes}")
    if not 0 <= overlap_bytes < chunk_bytes:
        raise ValueError(f"overlap_bytes must be >= 0 and < chunk_bytes ({chunk_bytes}), got {overlap_bytes}")
    size = len(data)
    spans: list[tuple[int, int]] = []
    start = 0
    while start < size:
        end = min(size, start + chunk_bytes)
        end = _back_to_boundary(data, end)
        if end <= start:  # a single character wider than chunk_bytes: take it whole
            end = _forward_to_boundary(data, start + 1)
        spans.append((start, end - start))
        if end >= size:
            break
        # Step back by the overlap, but always move forward by at least one character.
        start = max(_back_to_boundary(data, end - overlap_bytes), _forward_to_boundary(data, start + 1))
    return spans
