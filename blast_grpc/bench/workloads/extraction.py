"""Workload 2: data-parallel extraction — one mini-model call over a whole page versus chunks.

Generated pages of about 30 K, 100 K and 250 K characters are loaded in real Chromium and
their HTML read as the worker reads it (``page_html``). Then, with the engine's own code:

* **whole**: one ``LLM.chat`` call over the page's whole Markdown (``html_to_markdown``),
  the best one call can do;
* **chunked**: ``ExtractionPool.extract(html)`` at the default config (what the worker does):
  shared memory in, conversion and splitting in a reader process, every chunk call in
  flight at once on the event loop, merge. Conversion is counted here, not in **whole**.

The simulated mini model takes ``ttft + prompt_tokens / input_tokens_per_second`` per call
(``sim/latency.py``; tokens = characters / 4, as it counts them), so a call's time grows
with its input, as a real model's prefill does. Ideal chunked time: the slowest chunk's
call. Targets (issue 12): the page that makes 8 chunks at least 7x faster than one call;
every page of 2 or more chunks faster than one call; chunking overhead at most 20 ms per
MB; memory bounded for a 50 MB page.

Chunking overhead, per MB of Markdown (a 1 MB page), is what chunking adds to a call over
the whole text, measured in this process: shared memory in and out, the structure-aware
split and the merge of the answers. HTML → Markdown conversion is reported beside it: the
one-call path needs a conversion too (tables, links), so it is not a cost of chunking.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from dataclasses import asdict, dataclass
from typing import Any

from playwright.async_api import async_playwright

from ...agent.observe import page_html
from ...chromium import CHROMIUM_ARGS, find_chromium
from ...config import Config
from ...extraction import ExtractionError, ExtractionPool, merge_partials
from ...extraction.blocks import ChunkRef, create_block, read_slice, release_block
from ...extraction.convert import html_to_markdown
from ...extraction.markdown_chunks import plan_chunks
from ...llm import LLM, UsageMeter
from ...prompts import EXTRACT_PROMPT, extract_message
from ..context import BenchContext
from ..results import Row, WorkloadResult
from ..sitegen import long_code
from ..stats import median

NAME = "extraction"
QUERY = "What is the bench code stated on the page?"
MINI = "bench-mini-extract"
COST_CHARS = 1_000_000  # the page the chunking overhead is measured on (not loaded in Chromium)
HUGE_BYTES = 50_000_000  # the page the memory bound is checked on


@dataclass
class Params:
    sizes: list[int]
    repeats: int
    ttft_s: float = 0.05
    input_tokens_per_second: float = 1000.0
    cost_repeats: int = 5

    @classmethod
    def for_mode(cls, quick: bool) -> Params:
        if quick:  # a smoke run: one page, a fast model
            return cls(sizes=[30_000], repeats=1, input_tokens_per_second=20_000.0, cost_repeats=1)
        return cls(sizes=[30_000, 100_000, 250_000], repeats=2)

    def latency(self, prompt_chars: int) -> float:
        return self.ttft_s + max(1, prompt_chars // 4) / self.input_tokens_per_second


def _prompt_chars(text_chars: int) -> int:
    """Characters the simulated model counts for one extraction request over ``text_chars``."""
    return len(EXTRACT_PROMPT) + len(extract_message(QUERY, "")) + text_chars


def _config(base_url: str, mini: str) -> Config:
    return Config.model_validate({
        "settings": {"llm_endpoints": {"default": {"base_url": base_url}}, "llm_timeout_s": 600,
                     "llm_max_retries": 0},
        "constraints": {"llm_model": "bench-unused", "llm_model_mini": mini},
    })


async def _page_htmls(ctx: BenchContext, sizes: list[int]) -> dict[int, str]:
    """Each long page's HTML as the worker reads it, from real Chromium."""
    out: dict[int, str] = {}
    async with async_playwright() as pw:
        chromium = await asyncio.to_thread(find_chromium)
        browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            page = await browser.new_page()
            for size in sizes:
                await page.goto(ctx.url(ctx.pages.long_page(size)), wait_until="domcontentloaded")
                out[size] = await page_html(page)
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
    htmls = await _page_htmls(ctx, p.sizes)
    texts = {size: html_to_markdown(h) for size, h in htmls.items()}
    models = {MINI: {"ttft": {"dist": "constant", "seconds": p.ttft_s},
                     "input_tokens_per_second": p.input_tokens_per_second}}
    runs: list[dict[str, Any]] = []
    with ctx.sim(NAME, models) as sim:
        config = _config(sim.base_url, MINI)
        llm = LLM(config)
        try:
            await _timed_whole(llm, MINI, "warm-up")  # connection set-up
            for size in p.sizes:
                for rep in range(p.repeats):
                    secs, answer = await _timed_whole(llm, MINI, texts[size])
                    runs.append({"mode": "whole", "size": size, "rep": rep, "seconds": secs, "chunks": 1,
                                 "ok": long_code(ctx.seed, size) in answer})
        finally:
            await llm.close()
        async with ExtractionPool(config, "bench", config.settings.extraction_processes) as pool:
            await pool.extract("<p>warm up</p>", QUERY)
            for size in p.sizes:
                for rep in range(p.repeats):
                    t0 = time.perf_counter()
                    r = await pool.extract(htmls[size], QUERY)
                    runs.append({"mode": "chunked", "size": size, "rep": rep, "seconds": time.perf_counter() - t0,
                                 "chunks": r.chunks, "in_flight": r.max_in_flight, "unread": len(r.unread),
                                 "ok": long_code(ctx.seed, size) in r.answer})
            memory = await _memory(pool, config.settings.extraction_max_page_bytes, at_limit=not ctx.quick)
    res.series["runs"] = runs
    ideal_chunk = {size: p.latency(_prompt_chars(max(len(c.text) for c in _chunks(texts[size], config))))
                   for size in p.sizes}
    whole_lat = {size: p.latency(_prompt_chars(len(t))) for size, t in texts.items()}
    res.series["latency_model"] = {"whole_s": whole_lat, "chunk_s": ideal_chunk}
    _rows(res, p, runs, whole_lat, ideal_chunk)
    res.rows += _chunking_cost(ctx, p, config)
    res.rows += memory
    res.notes.append(f"mini-model latency = {p.ttft_s:g} s to first token + prompt tokens / "
                     f"{p.input_tokens_per_second:g} tokens per second (prefill); default config: "
                     f"chunk_chars {config.settings.chunk_chars}, min_chunk_chars {config.settings.min_chunk_chars}, "
                     f"max_parallel_chunk_calls {config.settings.max_parallel_chunk_calls}, "
                     f"extraction_processes {config.settings.extraction_processes}")
    return res


def _chunks(text: str, config: Config) -> list[Any]:
    s = config.settings
    return plan_chunks(text, s.chunk_chars, s.min_chunk_chars, s.max_parallel_chunk_calls, s.chunk_overlap_chars)


def _rows(res: WorkloadResult, p: Params, runs: list[dict[str, Any]], whole_lat: dict[int, float],
          ideal_chunk: dict[int, float]) -> None:
    speed: list[dict[str, float]] = []
    for size in p.sizes:
        whole = [r for r in runs if r["mode"] == "whole" and r["size"] == size]
        mine = [r for r in runs if r["mode"] == "chunked" and r["size"] == size]
        w = median([r["seconds"] for r in whole])
        c = median([r["seconds"] for r in mine])
        n = mine[0]["chunks"]
        bad_w = sum(not r["ok"] for r in whole)
        bad_c = sum(not r["ok"] or r["unread"] for r in mine)
        res.rows.append(Row(NAME, "one mini-model call over the whole text", {"chars": size, "repeats": len(whole)},
                            w, whole_lat[size], "s", note=f"{bad_w} wrong answers" if bad_w else ""))
        params = {"chars": size, "chunks": n, "repeats": len(mine)}
        res.rows.append(Row(NAME, "chunks in parallel (HTML in, answer out)", params, c, ideal_chunk[size], "s",
                            note=f"{bad_c} wrong answers" if bad_c
                            else f"{max(r['in_flight'] for r in mine)} calls in flight at once"))
        ratio = w / c if c else None
        ideal = whole_lat[size] / ideal_chunk[size]
        if n == 8:
            target, met = "≥ 7x (8 chunks)", None if ratio is None else ratio >= 7
        elif n >= 2:
            target, met = "> 1x (2+ chunks)", None if ratio is None else ratio > 1
        else:
            target, met = None, None
        res.rows.append(Row(NAME, "speedup of chunks over one call", params, ratio, ideal, "x", better="higher",
                            target=target, blast="about 5x", met=met))
        speed.append({"chars": size, "speedup": ratio or 0.0, "ideal": ideal, "chunks": n})
    res.series["speedup"] = {"default config": speed}


def _chunking_cost(ctx: BenchContext, p: Params, config: Config) -> list[Row]:
    """Per MB of Markdown: what chunking adds to one call (shared memory, split, merge), and conversion."""
    from ..sitegen import long_text

    text = "\n\n".join(long_text(ctx.seed, COST_CHARS).split("\n"))
    html = "".join(f"<p>{para}</p>" for para in text.split("\n\n"))
    data = text.encode("utf-8")
    mb = len(data) / 1e6
    shm, split, merge, convert = [], [], [], []
    chunks = _chunks(text, config)
    code = long_code(ctx.seed, COST_CHARS)
    partials = ['{"found": false}'] * (len(chunks) - 1) + [f'{{"found": true, "code": "{code}"}}']
    _chunks(text, config)  # warm-up (regexes compiled, caches filled)
    merge_partials(partials)
    for _ in range(p.cost_repeats):
        t0 = time.perf_counter()
        block = create_block("bench", data)
        read_slice(ChunkRef(block.name, 0, len(data)))
        release_block(block)
        t1 = time.perf_counter()
        _chunks(text, config)
        t2 = time.perf_counter()
        merge_partials(partials)
        t3 = time.perf_counter()
        shm.append(t1 - t0)
        split.append(t2 - t1)
        merge.append(t3 - t2)
    for _ in range(max(1, p.cost_repeats // 2)):
        t0 = time.perf_counter()
        html_to_markdown(html)
        convert.append(time.perf_counter() - t0)
    per_mb = 1000 / mb
    params = {"text": f"{mb:.2f} MB", "chunks": len(chunks)}
    total = (median(shm) + median(split) + median(merge)) * per_mb
    return [
        Row(NAME, "chunking overhead (shared memory + split + merge)", params, total, None, "ms/MB",
            target="≤ 20 ms/MB", met=total <= 20),
        Row(NAME, "chunking cost: shared memory in and out", params, median(shm) * per_mb, None, "ms/MB"),
        Row(NAME, "chunking cost: structure-aware split", params, median(split) * per_mb, None, "ms/MB"),
        Row(NAME, "chunking cost: merge of the answers", params, median(merge) * per_mb, None, "ms/MB",
            note=f"{len(partials)} JSON answers"),
        Row(NAME, "HTML → Markdown conversion (reader process)", {"html": f"{len(html) / 1e6:.2f} MB"},
            median(convert) * 1000 / (len(html) / 1e6), None, "ms/MB",
            note="markdownify; needed by one call too, so not chunking overhead"),
    ]


async def _memory(pool: ExtractionPool, limit: int, at_limit: bool) -> list[Row]:
    """Peak memory: the reader converting a page at the size limit, and what a 50 MB page costs the worker."""
    rows = []
    if at_limit:
        para = "<p>" + "lorem ipsum dolor sit amet " * 40 + "</p>"
        page = para * ((limit - 200) // len(para))
        r = await pool.extract(page, "nothing to find here")
        rows.append(Row(NAME, "peak memory of the reader converting a page at the limit",
                        {"html": f"{len(page) / 1e6:.1f} MB", "chunks": r.chunks}, r.reader_peak_rss / 1e6, None,
                        "MB", target="bounded: bigger pages are refused", note="settings.extraction_max_page_bytes"))
    huge = "<p>" + "x" * (HUGE_BYTES - 7) + "</p>"
    refused = ""
    tracemalloc.start()
    try:
        await pool.extract(huge, QUERY)
    except ExtractionError as exc:
        refused = str(exc)
    finally:
        peak = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
    rows.append(Row(NAME, "worker memory an extract_content of a 50 MB page allocates", {"html": "50 MB"}, peak,
                    None, "MB", target="≤ 1 MB (refused before any copy)", met=bool(refused) and peak <= 1,
                    note=refused[:110] or "not refused"))
    return rows
