"""Data-parallel extraction: ``extract_content`` on a long page, chunk calls in flight at once.

When the agent calls ``extract_content(query)`` the worker sends the page's HTML to
``ExtractionPool.extract(html, query)``. The HTML is written once into a shared-memory
block; only a small descriptor travels to a reader process, which converts it to
Markdown and cuts it into chunks on structure boundaries; the chunk calls to the mini
model then run concurrently on the worker's event loop (see ``pool``)::

    worker (creator)                                   reader processes (spawned)
    ----------------                                   --------------------------
    html.encode() ──write once──▶ /dev/shm/blast_<owner_tag>_<pid>_<n>
                                  ┌───────────────────────────────────────────────┐
                                  │ UTF-8 bytes of the page, offset 0 .. len-1    │
                                  │ (no header; size = max(1, len))               │
                                  └───────────────────────────────────────────────┘
    ChunkRef(block, 0, len) ──pipe──▶ attach by name, copy out, close;
                                      HTML → Markdown → chunks (text, span, section)
    unlink the block ◀──pipe── chunks
    chunk calls (asyncio, ≤ max_parallel_chunk_calls per worker) → answers ──▶ merge

Ownership rule: **only the creator unlinks.** The worker creates the block,
writes it, and unlinks it as soon as the chunks are back — on success, on error and on
cancellation — so the creator's resource tracker never sees a leak. Readers
attach by name without registering with the resource tracker, only read,
close, and never unlink. If the worker dies mid-extraction, its readers exit
(they watch their parent) and the supervisor calls ``cleanup_blocks(owner_tag)``
to unlink what the dead worker left.

Modules: ``pool`` (the worker side), ``reader`` (runs in the reader processes),
``convert`` (HTML → Markdown), ``markdown_chunks`` (chunk sizes and structure-aware
splitting), ``blocks`` (shared-memory blocks), ``merge`` (``merge_partials``), ``errors``
(``ExtractionError``).
"""

from .blocks import ChunkRef, cleanup_blocks
from .errors import ExtractionError
from .merge import merge_partials
from .pool import ExtractionPool, ExtractionResult

__all__ = [
    "ChunkRef", "ExtractionError", "ExtractionPool", "ExtractionResult", "cleanup_blocks", "merge_partials",
]
