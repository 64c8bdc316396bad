"""``ExtractionPool``: the worker's side of data-parallel extraction.

``extract(page, query)`` for one ``extract_content`` call::

    worker event loop                                  reader processes (CPU only)
    -----------------                                  ---------------------------
    page HTML ──write once──▶ shared-memory block ──▶ prepare: HTML → Markdown → chunks
    block unlinked ◀───────── chunks (text, span, section) ◀──┘
    one asyncio task per chunk: LLM.chat(mini model)   (all in flight at once, up to
        └─ each call holds one of the worker's slots    settings.max_parallel_chunk_calls
                                                        shared fairly by its tasks: slots.py)
    answers ────────────────────────────────────────▶ merge: JSON-aware, overlap duplicates dropped
    answer (+ a note per chunk that could not be read) ◀──┘   (on the loop when the answers are short)

A chunk call is network I/O, so it runs on the worker's event loop with the engine's
async model client (``llm.py``: hard deadline per attempt, transport retries); the
processes (``settings.extraction_processes``) only convert, split and merge long answers, and the
number of chunks in flight no longer depends on them. A chunk whose call fails for good
(``LLMUnavailable``: timeout, HTTP error, a body that is not a completion) or answers
nothing is tried ``settings.chunk_retries`` more times; then the answer says which part
of the page (characters and section) could not be read. If no chunk could be read the
extraction fails with ``ExtractionError``. Cancelling ``extract`` cancels every chunk
call in flight (their tasks belong to one ``TaskGroup``) and unlinks the block.

The processes: a spawned ``ProcessPoolExecutor``. If a reader dies the executor is
broken: the extraction fails with ``ExtractionError`` (naming what died) and a new one
is started at once in the background (``_respawn``), owned by the worker's ``TaskSet``
(``supervise.py``): a start that fails the way starting processes can fail is logged
and the next extraction tries again; anything else is a bug that stops the worker.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Callable, TypeVar

from ..config import Config, model_name
from ..llm import LLM, LLMUnavailable, UsageMeter
from ..prompts import EXTRACT_PROMPT, extract_message
from ..supervise import TaskSet
from . import reader
from .blocks import ChunkRef, check_owner_tag, create_block, release_block
from .errors import ExtractionError
from .markdown_chunks import Chunk
from .merge import merge_partials
from .reader import ChunkPlan, Prepared
from .slots import FairSlots

log = logging.getLogger(__name__)

# Answers merged on the event loop up to this size (a few short JSON objects take microseconds;
# handing them to a reader costs a process wake-up, which on a loaded machine is the slow part).
MERGE_INLINE_CHARS = 64_000
CLOSE_GRACE_S = 2.0  # how long close() lets a reader finish its current conversion before killing it
EMPTY_PAGE = "The page has no text to read."

T = TypeVar("T")


@dataclass
class ExtractionResult:
    """What one ``extract`` call produced."""

    answer: str  # merged answer of the chunks that were read
    chunks: int  # how many chunks the page was cut into
    pids: list[int]  # the reader process that converted and split the page
    usage: dict[str, tuple[int, int, int]]  # model name -> (prompt_tokens, completion_tokens, requests)
    block: str  # the shared-memory block name used (for tests/diagnostics)
    chars: int = 0  # characters of Markdown the page became
    unread: list[str] = field(default_factory=list)  # one line per chunk that could not be read
    max_in_flight: int = 0  # most chunk calls of this extraction in flight at once
    reader_peak_rss: int = 0  # bytes: the peak memory of the reader process that converted the page

    def report(self) -> str:
        """The answer the agent reads: the merged answer, then what could not be read."""
        if not self.unread:
            return self.answer
        return self.answer + "\n\n" + "\n".join(self.unread)


class _ChunkFailed(Exception):
    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def _stop_executor(executor: ProcessPoolExecutor, grace: float) -> None:
    """Shut the executor down and join its processes; kill those still busy after ``grace`` seconds."""
    processes = list((executor._processes or {}).values())

    def kill_stragglers() -> None:
        for p in processes:
            if p.is_alive():
                p.kill()

    timer = threading.Timer(grace, kill_stragglers)
    timer.start()
    try:
        executor.shutdown(wait=True, cancel_futures=True)
    finally:
        timer.cancel()
        timer.join()


def _where(chunk: Chunk, index: int, total: int, chars: int) -> str:
    section = f", section {chunk.heading[:80]!r}" if chunk.heading else ""
    return f"chunk {index + 1}/{total} (characters {chunk.start:,}-{chunk.end:,} of {chars:,}{section})"


class ExtractionPool:
    """Reader processes for the CPU work and concurrent chunk calls for one worker.

    ``owner_tag`` (e.g. the worker id ``"w1"``) names every block this pool
    creates, ``blast_<owner_tag>_<pid>_<n>``, so the supervisor can remove what
    a dead worker left with ``cleanup_blocks(owner_tag)``. ``llm`` is the worker's
    model client (the pool makes and closes its own without one). Usable as
    ``async with ExtractionPool(...) as pool``.
    """

    def __init__(self, config: Config, owner_tag: str, processes: int, tasks: TaskSet | None = None,
                 llm: LLM | None = None) -> None:
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        self._tag = check_owner_tag(owner_tag)
        self._processes = processes
        self._config = config
        self._prompt = EXTRACT_PROMPT
        self._mini = config.constraints.llm_model_mini
        self._model = model_name(self._mini)
        self._own_llm = llm is None
        self._llm = llm if llm is not None else LLM(config)
        # One limit for the whole worker, shared fairly: a huge page cannot starve the other tasks.
        self._slots = FairSlots(config.settings.max_parallel_chunk_calls)
        self._executor: ProcessPoolExecutor | None = None
        self._retired: list[ProcessPoolExecutor] = []
        self.tasks = tasks if tasks is not None else TaskSet()  # owns the background starts
        self._respawning: asyncio.Task[None] | None = None  # the background start running, if any
        self._closed = False

    def _live_executor(self) -> ProcessPoolExecutor:
        if self._closed:
            raise ExtractionError("the extraction pool is closed")
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self._processes,
                mp_context=multiprocessing.get_context("spawn"),  # never fork the worker (threads)
                initializer=reader.init_reader,
            )
        return self._executor

    async def _retire(self, executor: ProcessPoolExecutor) -> None:
        """Drop a broken executor; the next call builds a new one."""
        if self._executor is executor:
            self._executor = None
            log.warning("extraction pool %s: a reader process died; starting new processes", self._tag)
            self._start_in_background(f"extraction-respawn-{self._tag}")
        if executor not in self._retired:
            self._retired.append(executor)
            await asyncio.to_thread(_stop_executor, executor, 0.0)
            self._retired.remove(executor)

    async def _respawn(self) -> None:
        """Start the replacement readers now (the next extraction would otherwise wait for them)."""
        try:
            await self.start()
        except ExtractionError as exc:
            log.error("extraction pool %s: %s", self._tag, exc)

    def start_soon(self) -> None:
        """Spawn the reader processes in the background: the owner is ready without them, and
        the first extraction simply shares the executor that is starting."""
        self._start_in_background(f"extraction-warmup-{self._tag}")

    def _start_in_background(self, name: str) -> None:
        # One background start at a time; _respawn handles the failures it expects, and the
        # TaskSet reports anything else (a bug) with its traceback.
        if not self._closed and (self._respawning is None or self._respawning.done()):
            self._respawning = self.tasks.spawn(self._respawn(), name=name)

    @property
    def in_flight(self) -> int:
        """Chunk calls of all extractions running now (diagnostics, tests)."""
        return self._slots.in_use

    def reader_pids(self) -> list[int]:
        """The pids of the reader processes running now (diagnostics)."""
        executor = self._executor
        return sorted(executor._processes or {}) if executor is not None else []

    async def start(self) -> None:
        """Spawn the reader processes now, so the first extraction does not wait for them."""
        executor = self._live_executor()
        pings = [asyncio.wrap_future(executor.submit(reader.ping)) for _ in range(self._processes)]
        try:
            await asyncio.gather(*pings)
        except BrokenProcessPool as exc:
            await self._retire(executor)
            raise ExtractionError(f"the extraction processes failed to start ({exc}; see their stderr)") from exc
        finally:
            for fut in pings:
                fut.cancel()

    async def _in_process(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in a reader process; a dead reader becomes ``ExtractionError``."""
        for attempt in (1, 2):
            executor = self._live_executor()
            try:
                fut = asyncio.wrap_future(executor.submit(fn, *args))
            except BrokenProcessPool as exc:  # a reader died while the pool was idle: nothing ran yet
                await self._retire(executor)
                if attempt == 2:
                    raise ExtractionError(f"an extraction process died ({exc})") from exc
                continue
            try:
                return await fut
            except BrokenProcessPool as exc:
                if self._closed:
                    raise ExtractionError("the extraction pool was closed during the extraction") from exc
                await self._retire(executor)
                raise ExtractionError(f"an extraction process died while it was {what} ({exc}); "
                                      "the next extraction starts new ones") from exc
            except asyncio.CancelledError:
                if fut.cancelled() and self._closed and not _current_task_cancelling():
                    raise ExtractionError("the extraction pool was closed during the extraction") from None
                raise
            finally:
                fut.cancel()
        raise AssertionError("unreachable")

    async def _read_chunk(self, chunk: Chunk, query: str, meter: UsageMeter, stats: dict[str, int],
                          owner: object) -> str:
        """One chunk's answer, tried ``chunk_retries`` more times; ``_ChunkFailed`` says why not."""
        messages = [{"role": "system", "content": self._prompt},
                    {"role": "user", "content": extract_message(query, chunk.text)}]
        problem = ""
        for _ in range(self._config.settings.chunk_retries + 1):
            async with self._slots.slot(owner):
                stats["max"] = max(stats["max"], self._slots.busy(owner))
                try:
                    reply = await self._llm.chat(self._mini, messages, meter)
                except LLMUnavailable as exc:
                    problem = str(exc)
                    continue
            answer = (reply.content or "").strip()
            if answer:
                return answer
            problem = f"model {self._model!r} answered with no text"
        raise _ChunkFailed(problem)

    async def _read_all(self, chunks: list[Chunk], query: str, meter: UsageMeter,
                        stats: dict[str, int]) -> list[str | _ChunkFailed]:
        owner = object()  # this extraction, for the fair share of the worker's call slots

        async def one(chunk: Chunk) -> str | _ChunkFailed:
            try:
                return await self._read_chunk(chunk, query, meter, stats, owner)
            except _ChunkFailed as failed:
                return failed

        # Every chunk call is a task of this group: cancelling the extraction cancels them all.
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(c), name=f"extract-chunk-{i}") for i, c in enumerate(chunks)]
        return [t.result() for t in tasks]

    async def extract(self, page: str, query: str, *, is_html: bool = True, chunk_chars: int | None = None,
                      overlap_chars: int | None = None) -> ExtractionResult:
        """Answer ``query`` over ``page`` (its HTML, or Markdown/text with ``is_html=False``).

        Chunk sizes come from the settings (``chunk_chars``, ``chunk_overlap_chars``,
        ``min_chunk_chars``, ``max_parallel_chunk_calls``); ``chunk_chars`` and
        ``overlap_chars`` may be given here instead. Raises ``ExtractionError`` when the page
        is too big, no chunk could be read or a reader process dies, and ``ValueError``
        unless ``0 <= overlap_chars < chunk_chars``.
        """
        s = self._config.settings
        size = s.chunk_chars if chunk_chars is None else chunk_chars
        overlap = s.chunk_overlap_chars if overlap_chars is None else overlap_chars
        if not 0 <= overlap < size:
            raise ValueError(f"need 0 <= overlap_chars < chunk_chars, got {overlap} and {size}")
        self._live_executor()  # fail before allocating anything if closed
        # A character is at least one UTF-8 byte: a page with too many characters is refused
        # before it is copied at all (a 50 MB page costs the worker nothing more).
        size_hint = len(page) if len(page) > s.extraction_max_page_bytes else 0
        data = b"" if size_hint else page.encode("utf-8", "replace")
        if size_hint or len(data) > s.extraction_max_page_bytes:
            mb = (size_hint or len(data)) / 1e6
            raise ExtractionError(
                f"the page is {mb:.1f} MB of {'HTML' if is_html else 'text'}; extract_content reads "
                f"pages up to settings.extraction_max_page_bytes = {s.extraction_max_page_bytes / 1e6:.1f} MB")
        del page  # the block holds it now; the worker keeps no second copy alive
        plan = ChunkPlan(size, min(s.min_chunk_chars, size), s.max_parallel_chunk_calls, overlap)
        block = create_block(self._tag, data)
        try:
            ref = ChunkRef(block.name, 0, len(data))
            del data
            prepared: Prepared = await self._in_process("converting the page", reader.prepare, ref, plan, is_html)
        finally:
            release_block(block)
        chunks = prepared.chunks
        if not chunks:
            return ExtractionResult(EMPTY_PAGE, 0, [prepared.pid], {}, block.name, 0,
                                    reader_peak_rss=prepared.max_rss_kb * 1024)
        meter = UsageMeter()
        stats = {"max": 0}
        replies = await self._read_all(chunks, query, meter, stats)
        answers = [r for r in replies if isinstance(r, str)]
        unread = [f"[extract_content: {_where(c, i, len(chunks), prepared.chars)} could not be read: {r.problem}]"
                  for i, (c, r) in enumerate(zip(chunks, replies, strict=True)) if isinstance(r, _ChunkFailed)]
        if not answers:
            raise ExtractionError(f"none of the {len(chunks)} chunks of the page could be read; "
                                  + unread[0].removeprefix("[extract_content: ").removesuffix("]"))
        if sum(len(a) for a in answers) <= MERGE_INLINE_CHARS:
            answer = merge_partials(answers)  # well under a millisecond: cheaper than a hand-off
        else:
            answer = await self._in_process("merging the answers", reader.merge, answers)
        usage = {name: (u.prompt_tokens, u.completion_tokens, u.requests) for name, u in meter.total.items()}
        return ExtractionResult(answer, len(chunks), [prepared.pid], usage, block.name, prepared.chars, unread,
                                stats["max"], prepared.max_rss_kb * 1024)

    async def close(self) -> None:
        """Stop the reader processes (a busy reader gets ``CLOSE_GRACE_S``). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._respawning is not None:
            self._respawning.cancel()
            await asyncio.gather(self._respawning, return_exceptions=True)
        executors = [e for e in [self._executor, *self._retired] if e is not None]
        self._executor, self._retired = None, []
        for executor in executors:
            await asyncio.to_thread(_stop_executor, executor, CLOSE_GRACE_S)
        if self._own_llm:
            await self._llm.close()

    async def __aenter__(self) -> ExtractionPool:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


def _current_task_cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
