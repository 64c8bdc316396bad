"""Workload 2: data-parallel extraction — one mini-model call over a whole page versus chunks.

Pages of about 50 K, 200 K and 1 M characters are loaded in real Chromium and their text
read with the engine's own ``page_text``. Then, with the engine's own code paths:

* **whole**: one ``LLM.chat`` call with the whole text (what ``extract_content`` does when
  ``allow_parallelism.data`` is off);
* **chunked**: ``ExtractionPool.extract`` with P reader processes (what the worker does
  when it is on): shared memory in, chunks of ``chunk_chars`` read in parallel, merge out.

The latency of a mini-model call grows with its input: ``base + per_1k · prompt_tokens /
1000`` (tokens = characters / 4, as the simulated model counts them), which is the
simulated model's ``input_tokens_per_second`` term (``1000 / per_1k``) on a constant
``base``. Ideal: whole = its latency; chunked = the latency of a full chunk · ⌈chunks / P⌉.

The cost of chunking itself, per MB of text: the pool's time beyond its ideal on the
largest page, and piece by piece in this process: shared-memory write, slice read, merge.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

from playwright.async_api import async_playwright

from ...agent.observe import page_text
from ...chromium import CHROMIUM_ARGS, find_chromium
from ...config import Config
from ...extraction import ChunkRef, ExtractionPool, merge_partials, split_chunks
from ...extraction.blocks import create_block, read_slice, release_block
from ...llm import LLM, UsageMeter
from ...prompts import EXTRACT_PROMPT, extract_message
from ..context import BenchContext, constant
from ..results import Row, WorkloadResult
from ..sitegen import long_code
from ..stats import median

NAME = "extraction"
QUERY = "What is the bench code stated on the page?"
MINI = "bench-mini-extract"


@dataclass
class Params:
    sizes: list[int]
    concurrency: list[int]
    repeats: int
    base_s: float = 0.15
    per_1k_tokens_s: float = 0.02
    chunk_chars: int = 20_000
    overlap_chars: int = 500
    cost_repeats: int = 5

    @classmethod
    def for_mode(cls, quick: bool) -> Params:
        if quick:
            return cls(sizes=[50_000], concurrency=[2], repeats=1, cost_repeats=1)
        return cls(sizes=[50_000, 200_000, 1_000_000], concurrency=[2, 8], repeats=2)

    def latency(self, prompt_chars: int) -> float:
        return self.base_s + self.per_1k_tokens_s * max(1, prompt_chars // 4) / 1000


def _prompt_chars(text_chars: int) -> int:
    """Characters the simulated model counts for one extraction request over ``text_chars``."""
    return len(EXTRACT_PROMPT) + len(extract_message(QUERY, "")) + text_chars


def _config(base_url: str, mini: str) -> Config:
    return Config.model_validate({
        "settings": {"llm_endpoints": {"default": {"base_url": base_url}}, "llm_timeout_s": 120,
                     "llm_max_retries": 0},
        "constraints": {"llm_model": "bench-unused", "llm_model_mini": mini},
    })


async def _page_texts(ctx: BenchContext, sizes: list[int]) -> dict[int, str]:
    """Each long page's text as the engine reads it, from real Chromium."""
    out: dict[int, str] = {}
    async with async_playwright() as pw:
        chromium = await asyncio.to_thread(find_chromium)
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            page = await browser.new_page()
            for size in sizes:
                await page.goto(ctx.url(ctx.pages.long_page(size)), wait_until="domcontentloaded")
                out[size] = await page_text(page)
        finally:
            await browser.close()
    return out


async def _timed_whole(llm: LLM, model: str, text: str) -> tuple[float, str]:
    msgs = [{"role": "system", "content": EXTRACT_PROMPT}, {"role": "user", "content": extract_message(QUERY, text)}]
    t0 = time.perf_counter()
    reply = await llm.chat(model, msgs, UsageMeter())
    return time.perf_counter() - t0, reply.content or ""


async def run(ctx: BenchContext) -> WorkloadResult:
    p = Params.for_mode(ctx.quick)
    res = WorkloadResult(NAME)
    res.series["params"] = asdict(p)
    texts = await _page_texts(ctx, p.sizes)
    chunk_lat = p.latency(_prompt_chars(p.chunk_chars))
    whole_lat = {size: p.latency(_prompt_chars(len(text))) for size, text in texts.items()}
    models = {MINI: {**constant(p.base_s), "input_tokens_per_second": 1000 / p.per_1k_tokens_s}}
    runs: list[dict[str, Any]] = []
    with ctx.sim(NAME, models) as sim:
        llm = LLM(_config(sim.base_url, MINI))
        try:
            await _timed_whole(llm, MINI, "warm-up")  # connection set-up
            for size in p.sizes:
                for rep in range(p.repeats):
                    secs, answer = await _timed_whole(llm, MINI, texts[size])
                    runs.append({"mode": "whole", "size": size, "rep": rep, "seconds": secs, "chunks": 1,
                                 "ok": long_code(ctx.seed, size) in answer})
        finally:
            await llm.close()
        for procs in p.concurrency:
            async with ExtractionPool(_config(sim.base_url, MINI), "bench", procs) as pool:
                # Warm-up: about one chunk per reader, so every reader has its model connection open.
                await pool.extract("warm up " * (p.chunk_chars * procs // 8), QUERY, chunk_chars=p.chunk_chars,
                                   overlap_chars=p.overlap_chars)
                for size in p.sizes:
                    for rep in range(p.repeats):
                        t0 = time.perf_counter()
                        r = await pool.extract(texts[size], QUERY, chunk_chars=p.chunk_chars,
                                               overlap_chars=p.overlap_chars)
                        runs.append({"mode": "chunked", "size": size, "rep": rep, "procs": procs,
                                     "seconds": time.perf_counter() - t0, "chunks": r.chunks,
                                     "readers": len(r.pids), "ok": long_code(ctx.seed, size) in r.answer})
    res.series["runs"] = runs
    res.series["latency_model"] = {"whole_s": whole_lat, "chunk_s": chunk_lat}
    _rows(res, p, runs, whole_lat, chunk_lat)
    res.rows += _chunking_cost(ctx, p, texts[max(p.sizes)], runs, chunk_lat)
    res.notes.append(f"mini-model latency = {p.base_s:g} s + {p.per_1k_tokens_s:g} s per 1000 prompt "
                     "tokens (the simulated model's input_tokens_per_second)")
    return res


def _chunking_cost(ctx: BenchContext, p: Params, text: str, runs: list[dict[str, Any]],
                   chunk_lat: float) -> list[Row]:
    """Per MB of page text: the pool's time beyond its ideal on the largest page, then the pieces."""
    data = text.encode("utf-8")
    mb = len(data) / 1e6
    per_mb = 1000 / mb
    size = max(p.sizes)
    rows = []
    for procs in p.concurrency:
        mine = [r for r in runs if r["mode"] == "chunked" and r["size"] == size and r["procs"] == procs]
        if mine:
            ideal = chunk_lat * math.ceil(mine[0]["chunks"] / procs)
            extra = median([r["seconds"] for r in mine]) - ideal
            rows.append(Row(NAME, "chunking cost: pool time beyond the ideal", {"text": f"{mb:.2f} MB", "P": procs,
                            "chunks": mine[0]["chunks"]}, extra * per_mb, None, "ms/MB",
                            note="shared memory, process hand-offs, HTTP per chunk, merge"))
    spans = split_chunks(data, p.chunk_chars, p.overlap_chars)
    shm_in, read, merge = [], [], []
    code = long_code(ctx.seed, size)
    partials = ['{"found": false}'] * (len(spans) - 1) + [f'{{"found": true, "code": "{code}"}}']
    for _ in range(p.cost_repeats):
        t0 = time.perf_counter()
        block = create_block("bench", data)
        t1 = time.perf_counter()
        for off, length in spans:
            read_slice(ChunkRef(block.name, off, length))
        t2 = time.perf_counter()
        release_block(block)
        merge_partials(partials)
        t3 = time.perf_counter()
        shm_in.append(t1 - t0)
        read.append(t2 - t1)
        merge.append(t3 - t2)
    params = {"text": f"{mb:.2f} MB", "chunks": len(spans)}
    return rows + [
        Row(NAME, "chunking cost: shared memory in (create + write)", params, median(shm_in) * per_mb, None, "ms/MB"),
        Row(NAME, "chunking cost: reading the slices back", params, median(read) * per_mb, None, "ms/MB",
            note="in one process; the readers do this in parallel"),
        Row(NAME, "chunking cost: release + merge out", params, median(merge) * per_mb, None, "ms/MB",
            note=f"merge of {len(partials)} JSON answers"),
    ]


def _rows(res: WorkloadResult, p: Params, runs: list[dict[str, Any]], whole_lat: dict[int, float],
          chunk_lat: float) -> None:
    speed: dict[int, list[dict[str, float]]] = {}
    for size in p.sizes:
        whole = [r for r in runs if r["mode"] == "whole" and r["size"] == size]
        w = median([r["seconds"] for r in whole])
        bad = sum(not r["ok"] for r in whole)
        res.rows.append(Row(NAME, "one mini-model call over the whole text", {"chars": size, "repeats": len(whole)},
                            w, whole_lat[size], "s", note=f"{bad} wrong answers" if bad else ""))
        for procs in p.concurrency:
            mine = [r for r in runs if r["mode"] == "chunked" and r["size"] == size and r["procs"] == procs]
            c = median([r["seconds"] for r in mine])
            n = mine[0]["chunks"]
            ideal = chunk_lat * math.ceil(n / procs)
            bad = sum(not r["ok"] for r in mine)
            params = {"chars": size, "P": procs, "chunks": n, "repeats": len(mine)}
            res.rows.append(Row(NAME, "chunks in parallel", params, c, ideal, "s",
                                note=f"{bad} wrong answers" if bad else f"{max(r['readers'] for r in mine)} readers"))
            ideal_speed = whole_lat[size] / ideal
            res.rows.append(Row(NAME, "speedup of chunks over one call", params, w / c if c else None, ideal_speed,
                                "x", better="higher"))
            speed.setdefault(procs, []).append({"chars": size, "speedup": w / c if c else math.nan,
                                                "ideal": ideal_speed, "efficiency": ideal / c if c else math.nan})
    res.series["speedup"] = {str(k): v for k, v in speed.items()}
