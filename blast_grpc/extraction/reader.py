"""The code that runs inside the reader processes: CPU work only (convert, split, merge).

Each reader is a spawned process of the pool's ``ProcessPoolExecutor``. ``prepare``
reads the page's HTML from shared memory, converts it to Markdown (``convert``) and
cuts it into chunks (``markdown_chunks``); ``merge`` joins the chunks' answers. The
model calls themselves are network I/O and run on the worker's event loop (``pool``),
so they are not capped by the number of processes.

``init_reader`` runs once per process: it ignores SIGINT (the pool's owner stops it)
and starts a thread that exits the process if the worker that spawned it dies, so a
killed worker never leaves readers behind. Errors are raised as ``ExtractionError``
(plain, picklable).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import threading
from dataclasses import dataclass
from multiprocessing.connection import wait

from .blocks import ChunkRef, read_slice
from .convert import html_to_markdown
from .errors import ExtractionError
from .markdown_chunks import Chunk, plan_chunks
from .merge import merge_partials


@dataclass(frozen=True)
class ChunkPlan:
    """How to cut a page: the settings ``plan_chunks`` takes (see ``markdown_chunks``)."""

    chunk_chars: int
    min_chars: int
    max_parallel: int
    overlap: int


@dataclass(frozen=True)
class Prepared:
    """What ``prepare`` sends back: the chunks, the Markdown's length, and the reader's peak memory."""

    chunks: list[Chunk]
    chars: int
    pid: int
    max_rss_kb: int


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return
    sentinel = parent.sentinel

    def watch() -> None:
        wait([sentinel])  # readable (EOF) once the parent is gone
        os._exit(0)

    threading.Thread(target=watch, name="extraction-parent-watch", daemon=True).start()


def init_reader() -> None:
    """Process initializer."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()


def ping() -> int:
    """A no-op task that makes the pool spawn its processes; returns the pid."""
    return os.getpid()


def prepare(ref: ChunkRef, plan: ChunkPlan, is_html: bool) -> Prepared:
    """Read the page from shared memory, convert it to Markdown (``is_html``) and cut it into chunks."""
    try:
        page = read_slice(ref)
    except FileNotFoundError:
        raise ExtractionError(f"shared-memory block {ref.block} is gone (the extraction ended)") from None
    try:
        text = html_to_markdown(page) if is_html else page.strip()
    except RecursionError:  # BeautifulSoup on absurdly deep nesting
        raise ExtractionError("the page's HTML is nested too deeply to convert") from None
    chunks = plan_chunks(text, plan.chunk_chars, plan.min_chars, plan.max_parallel, plan.overlap)
    return Prepared(chunks, len(text), os.getpid(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def merge(partials: list[str]) -> str:
    """``merge_partials`` in a reader process (it parses every answer as JSON)."""
    return merge_partials(partials)
