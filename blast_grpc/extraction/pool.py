"""``ExtractionPool``: the worker's side of data-parallel extraction.

``extract`` writes the page text once into a new shared-memory block, submits
one ``ChunkRef`` per chunk to a spawned ``ProcessPoolExecutor`` (at most
``processes`` chunks are read at once), waits for all of them (failing fast on
the first error), merges the answers and unlinks the block — on success, on
error and on cancellation. Chunks not yet started when the extraction ends are
cancelled; chunks already handed to a reader finish there, find the block gone
or have their answer dropped. If a reader process dies the executor is broken:
the extraction fails with ``ExtractionError`` (naming what died) and a new executor
is started at once in the background (``_respawn``), so the pool is back to
``processes`` readers even before the next extraction needs them.

That background start (and the first one, ``start_soon``) belongs to the owner's
``TaskSet`` (``supervise.py``; the worker's): a start that fails the way starting
processes can fail is logged and the next extraction tries again; anything else is a
bug, logged with its traceback, and stops the worker so that it is restarted whole.
"""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Sequence

from ..config import Config, model_name
from ..prompts import EXTRACT_PROMPT
from ..supervise import TaskSet
from . import reader
from .blocks import ChunkRef, check_owner_tag, create_block, release_block
from .chunks import split_chunks
from .errors import ExtractionError
from .merge import merge_partials

log = logging.getLogger(__name__)

CLOSE_GRACE_S = 2.0  # how long close() lets a reader finish its current model call before killing it

Reply = tuple[int, str, int, int]  # (pid, answer_text, prompt_tokens, completion_tokens)


@dataclass
class ExtractionResult:
    """What one ``extract`` call produced."""

    answer: str  # merged answer given to the agent
    chunks: int  # how many chunks were read
    pids: list[int]  # distinct pids of the processes that read chunks
    usage: dict[str, tuple[int, int, int]]  # model name -> (prompt_tokens, completion_tokens, requests)
    block: str  # the shared-memory block name used (for tests/diagnostics)


def _abandon(futures: Sequence[asyncio.Future[Any]]) -> None:
    """Cancel what has not finished (and so was not started, or its answer is dropped); mark errors seen."""
    for fut in futures:
        if not fut.done():
            fut.cancel()
        elif not fut.cancelled():
            fut.exception()


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


class ExtractionPool:
    """Reader processes that answer a query over chunks of a long text, in parallel.

    ``owner_tag`` (e.g. the worker id ``"w1"``) names every block this pool
    creates, ``blast_<owner_tag>_<pid>_<n>``, so the supervisor can remove what
    a dead worker left with ``cleanup_blocks(owner_tag)``. Usable as
    ``async with ExtractionPool(...) as pool``.
    """

    def __init__(self, config: Config, owner_tag: str, processes: int, tasks: TaskSet | None = None) -> None:
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        self._tag = check_owner_tag(owner_tag)
        self._processes = processes
        self._initargs = (config.model_dump_json(), EXTRACT_PROMPT)
        self._model = model_name(config.constraints.llm_model_mini)
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
                initargs=self._initargs,
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
            _abandon(pings)

    async def _submit(self, refs: list[ChunkRef], query: str) -> tuple[ProcessPoolExecutor, list[asyncio.Future[Reply]]]:
        for attempt in (1, 2):
            executor = self._live_executor()
            futures: list[asyncio.Future[Reply]] = []
            try:
                for ref in refs:
                    futures.append(asyncio.wrap_future(executor.submit(reader.read_chunk, ref, query)))
                return executor, futures
            except BrokenProcessPool as exc:  # a reader died while the pool was idle: nothing ran yet
                _abandon(futures)
                await self._retire(executor)
                if attempt == 2:
                    raise ExtractionError(f"an extraction process died ({exc})") from exc
        raise AssertionError("unreachable")

    async def _failure(self, executor: ProcessPoolExecutor, index: int, total: int,
                       exc: BaseException) -> ExtractionError:
        if self._closed:
            return ExtractionError("the extraction pool was closed during the extraction")
        if isinstance(exc, BrokenProcessPool):
            await self._retire(executor)
            return ExtractionError(f"an extraction process died ({exc}); the next extraction starts new ones")
        if isinstance(exc, ExtractionError):
            return ExtractionError(f"chunk {index + 1}/{total}: {exc}")
        return ExtractionError(f"chunk {index + 1}/{total} failed: {type(exc).__name__}: {exc}")

    async def _read_all(self, refs: list[ChunkRef], query: str) -> list[Reply]:
        executor, futures = await self._submit(refs, query)
        try:
            await asyncio.wait(futures, return_when=asyncio.FIRST_EXCEPTION)
            for i, fut in enumerate(futures):
                if fut.done() and not fut.cancelled() and (exc := fut.exception()) is not None:
                    raise await self._failure(executor, i, len(futures), exc) from exc
            if any(fut.cancelled() for fut in futures):  # only close() cancels them behind our back
                raise ExtractionError("the extraction pool was closed during the extraction")
            return [fut.result() for fut in futures]
        finally:
            _abandon(futures)

    async def extract(self, text: str, query: str, *, chunk_chars: int, overlap_chars: int) -> ExtractionResult:
        """Answer ``query`` over ``text``, reading chunks of about ``chunk_chars`` characters in parallel.

        Consecutive chunks overlap by about ``overlap_chars``. Raises
        ``ExtractionError`` when the model fails or a reader process dies, and
        ``ValueError`` unless ``0 <= overlap_chars < chunk_chars``.
        """
        if not 0 <= overlap_chars < chunk_chars:
            raise ValueError(f"need 0 <= overlap_chars < chunk_chars, got {overlap_chars} and {chunk_chars}")
        self._live_executor()  # fail before allocating anything if closed
        data = text.encode("utf-8")
        bytes_per_char = len(data) / len(text) if text else 1.0
        spans = split_chunks(data, math.ceil(chunk_chars * bytes_per_char), math.floor(overlap_chars * bytes_per_char))
        block = create_block(self._tag, data)
        try:
            refs = [ChunkRef(block.name, offset, length) for offset, length in spans or [(0, 0)]]
            replies = await self._read_all(refs, query)
        finally:
            release_block(block)
        pids = sorted({pid for pid, _, _, _ in replies})
        usage = (sum(r[2] for r in replies), sum(r[3] for r in replies), len(replies))
        return ExtractionResult(merge_partials([r[1] for r in replies]), len(refs), pids, {self._model: usage},
                                block.name)

    async def close(self) -> None:
        """Stop the reader processes (a reader busy with a model call gets ``CLOSE_GRACE_S``). Idempotent."""
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

    async def __aenter__(self) -> ExtractionPool:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()
