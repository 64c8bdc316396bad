"""Cut a Markdown page into chunks on structure boundaries, sized so they can all be read at once.

``chunk_size`` decides how big a chunk is. A page of ``L`` characters needs
``ceil(L / chunk_chars)`` chunks of the configured size. When that is fewer than the
calls that may run at once (``max_parallel``), the page is cut finer — into up to
``min(max_parallel, L // min_chars)`` chunks — because the chunk calls run in parallel and
a model's time grows with its input: more, smaller chunks finish sooner. The finer cut
never goes below ``min_chars``, so a short page stays one call (no split overhead)::

    n = max(ceil(L / chunk_chars), min(max_parallel, L // min_chars))   chunks of L / n
    (one chunk when L <= chunk_chars and L < 2·min_chars)

``split_markdown`` cuts on structure: the text is first made into *blocks* (paragraphs,
lists, code fences, tables: runs of lines between blank lines) and chunks are packed
from whole blocks, cutting before a heading when the chunk is at least half full. A block
bigger than a chunk is cut between lines — a table between rows, with its header row and
separator repeated at the top of every piece, so a row is never cut and always read with
its column names. Only a single line longer than a chunk is cut inside (at ``size``).

Consecutive chunks overlap: a chunk starts with the last whole blocks of the one before,
up to ``overlap`` characters, so an item that sits on a cut is read whole at least once
(the merge removes the duplicate answers this gives).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_HEADING = re.compile(r"^#{1,6} ")
_TABLE_ROW = re.compile(r"^\s*\|")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{3,}")
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True)
class Chunk:
    """One chunk's text and where it sits in the page: characters [start, end) and its section."""

    text: str
    start: int
    end: int
    heading: str  # the last heading before or at the chunk's start ('' if none)


def chunk_size(total: int, chunk_chars: int, min_chars: int, max_parallel: int) -> int:
    """Characters per chunk for a page of ``total`` characters (see the module docstring)."""
    if total <= 0:
        return chunk_chars
    n = math.ceil(total / chunk_chars)
    if n < max_parallel:
        n = max(n, min(max_parallel, total // max(1, min_chars)))
    return max(1, math.ceil(total / max(1, n)))


@dataclass
class _Block:
    text: str
    start: int
    heading: bool
    section: str


def _blocks(text: str) -> list[_Block]:
    """Paragraph-like blocks: runs of non-blank lines (a code fence is one block with its blank lines)."""
    out: list[_Block] = []
    section = ""
    pos = 0
    cur_start = -1
    in_fence = False
    lines = text.split("\n")
    offsets = []
    for line in lines:
        offsets.append(pos)
        pos += len(line) + 1

    def close(i: int) -> None:
        nonlocal cur_start, section
        if cur_start >= 0:
            end = offsets[i - 1] + len(lines[i - 1]) if i > 0 else 0
            body = text[offsets[cur_start]:end]
            heading = bool(_HEADING.match(body))
            if heading:
                section = body.split("\n", 1)[0].lstrip("# ").strip()
            out.append(_Block(body, offsets[cur_start], heading, section))
            cur_start = -1

    for i, line in enumerate(lines):
        if _FENCE.match(line):
            if cur_start < 0:
                cur_start = i
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        if not line.strip():
            close(i)
        elif _HEADING.match(line):
            close(i)  # a heading always starts its own block
            cur_start = i
            close(i + 1)
        elif cur_start < 0:
            cur_start = i
    close(len(lines))
    return out


def _hard_cut(text: str, start: int, size: int) -> list[tuple[str, int]]:
    return [(text[i:i + size], start + i) for i in range(0, len(text), size)]


def _pieces(block: _Block, size: int) -> list[tuple[str, int]]:
    """The block whole if it fits, else cut between lines (tables: header repeated), lines cut last."""
    if len(block.text) <= size:
        return [(block.text, block.start)]
    lines = block.text.split("\n")
    header = ""
    if len(lines) > 2 and _TABLE_ROW.match(lines[0]) and _TABLE_SEP.match(lines[1]):
        header = lines[0] + "\n" + lines[1] + "\n"
        if len(header) > size // 2:  # a monstrous header: do not repeat it
            header = ""
    pieces: list[tuple[str, int]] = []
    buf: list[str] = []
    buf_len = 0
    buf_start = block.start
    pos = block.start
    for n, line in enumerate(lines):
        add = len(line) + 1
        if buf and buf_len + add > size:
            pieces.append(("\n".join(buf), buf_start))
            buf, buf_len, buf_start = [], 0, pos
            if header and n > 1:
                buf, buf_len = [header.rstrip("\n")], len(header)
        if len(line) > size:
            if buf:
                pieces.append(("\n".join(buf), buf_start))
                buf, buf_len = [], 0
            pieces += _hard_cut(line, pos, size)
            buf_start = pos + add
        else:
            buf.append(line)
            buf_len += add
        pos += add
    if buf:
        pieces.append(("\n".join(buf), buf_start))
    return pieces


def plan_chunks(text: str, chunk_chars: int, min_chars: int, max_parallel: int, overlap: int) -> list[Chunk]:
    """``split_markdown`` into the number of chunks ``chunk_size`` plans, as evenly as whole blocks allow.

    The chunk calls run at once, so the extraction takes as long as its *largest* chunk. For
    a fixed cap, greedy packing makes the fewest chunks; so the smallest cap that still gives
    the planned count (found by bisection) gives the smallest largest chunk. Pages with more
    chunks than fit in flight are cut at ``chunk_chars`` in one pass.
    """
    size = chunk_size(len(text), chunk_chars, min_chars, max_parallel)
    wanted = max(1, math.ceil(len(text) / size))
    blocks = _blocks(text)  # once: only the packing depends on the cap
    chunks = _pack(blocks, size, overlap)
    if len(chunks) <= wanted or wanted > max_parallel:
        return chunks
    low, high = size, 2 * size  # low gives too many chunks
    best = _pack(blocks, high, overlap)
    while high - low > max(64, size // 100):
        mid = (low + high) // 2
        attempt = _pack(blocks, mid, overlap)
        if len(attempt) <= wanted:
            high, best = mid, attempt
        else:
            low = mid
    return best


def split_markdown(text: str, size: int, overlap: int) -> list[Chunk]:
    """Chunks of about ``size`` characters (at most ``size`` + ``overlap``) cut on structure boundaries.

    Empty text gives no chunks. Raises ``ValueError`` unless ``size >= 1`` and ``overlap >= 0``.
    """
    if size < 1 or overlap < 0:
        raise ValueError(f"need size >= 1 and overlap >= 0, got {size} and {overlap}")
    return _pack(_blocks(text), size, overlap)


def _pack(blocks: list[_Block], size: int, overlap: int) -> list[Chunk]:
    """Greedy packing of whole blocks (cut only when bigger than ``size``) into chunks."""
    units: list[tuple[str, int, bool, str]] = []  # (text, start, is_heading, section)
    for b in blocks:
        for piece, start in _pieces(b, size):
            units.append((piece, start, b.heading, b.section))
    chunks: list[Chunk] = []
    cur: list[tuple[str, int, bool, str]] = []
    cur_len = 0
    fresh = 0  # how many units of ``cur`` are new (not overlap)

    def emit() -> None:
        body = "\n\n".join(u[0] for u in cur)
        first = cur[0]
        last = cur[-1]
        chunks.append(Chunk(body, first[1], last[1] + len(last[0]), first[3]))

    for unit in units:
        add = len(unit[0]) + 2
        full = cur_len + add > size
        heading_cut = unit[2] and cur_len >= size // 2
        if fresh and (full or heading_cut):
            emit()
            keep: list[tuple[str, int, bool, str]] = []
            kept = 0
            for u in reversed(cur):
                if kept + len(u[0]) + 2 > overlap:
                    break
                keep.insert(0, u)
                kept += len(u[0]) + 2
            cur, cur_len, fresh = keep, kept, 0
        cur.append(unit)
        cur_len += add
        fresh += 1
    if fresh:
        emit()
    return chunks
