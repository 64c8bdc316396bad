"""Data-parallel extraction: reader processes answer a query over chunks of one long page text.

When the agent calls ``extract_content(query)`` on a long page, the worker calls
``ExtractionPool.extract(text, query, ...)``. The text is written once into a
shared-memory block; only small descriptors travel to the readers::

    worker (creator)                                   reader processes (spawned)
    ----------------                                   --------------------------
    text.encode() ──write once──▶ /dev/shm/blast_<owner_tag>_<pid>_<n>
                                  ┌───────────────────────────────────────────────┐
                                  │ UTF-8 bytes of the text, offset 0 .. len-1    │
                                  │ (no header; size = max(1, len))               │
                                  └───────────────────────────────────────────────┘
                                  │◀── chunk 0 ──▶│
                                            │◀── chunk 1 ──▶│        (overlap ≈ overlap_chars,
                                                      │◀── chunk 2 ──▶│  spans on char boundaries)
    ChunkRef(block, offset, length) + query ──pipe──▶ attach by name, copy out [offset, offset+length),
                                                      close; ask the mini model
    merge_partials([...]) ◀──pipe── (pid, answer_text, prompt_tokens, completion_tokens)

Ownership rule: **only the creator unlinks.** The worker creates the block,
writes it, and unlinks it when ``extract`` ends — on success, on error and on
cancellation — so the creator's resource tracker never sees a leak. Readers
attach by name without registering with the resource tracker, only read,
close, and never unlink. If the worker dies mid-extraction, its readers exit
(they watch their parent) and the supervisor calls ``cleanup_blocks(owner_tag)``
to unlink what the dead worker left.

Modules: ``pool`` (the worker side), ``reader`` (runs in the reader processes),
``blocks`` (shared-memory blocks), ``chunks`` (``split_chunks``), ``merge``
(``merge_partials``), ``errors`` (``ExtractionError``).
"""

from .blocks import ChunkRef, cleanup_blocks
from .chunks import split_chunks
from .errors import ExtractionError
from .merge import merge_partials
from .pool import ExtractionPool, ExtractionResult

__all__ = [
    "ChunkRef", "ExtractionError", "ExtractionPool", "ExtractionResult", "cleanup_blocks", "merge_partials",
    "split_chunks",
]
