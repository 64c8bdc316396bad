"""Data-parallel extraction against real parts: spawned reader processes, /dev/shm blocks, a SimServer.

Stall faults (the simulated model holds the request until the client leaves)
put chunk calls reliably "in flight" without depending on timing: tests wait
until the model holds the requests, then count, cancel or kill. A held request
the client gave up on is released at once, so ``stalled_now`` falling to 0 shows
that no call was left behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

import psutil
import pytest
import pytest_asyncio

from blast_grpc.config import Config, config_from_dict
from blast_grpc.demo_site import ARTICLE_CODE
from blast_grpc.extraction import ExtractionError, ExtractionPool, cleanup_blocks
from blast_grpc.extraction import pool as pool_module
from blast_grpc.extraction.convert import html_to_markdown
from blast_grpc.extraction.markdown_chunks import plan_chunks
from blast_grpc.sim import SimServer

ROOT = Path(__file__).resolve().parents[2]
SHM = Path("/dev/shm")
QUERY = "What is the secret river code?"
CHUNK, OVERLAP = 20000, 500  # the worker's defaults
LATENCY = {
    "default": {"ttft": {"dist": "constant", "seconds": 0}},
    "slow-mini": {"ttft": {"dist": "constant", "seconds": 0.3}, "tokens_per_second": 1000},
}
WAIT_S = 60.0  # a deadline so a broken test fails instead of hanging; never asserted on


ARTICLE = (ROOT / "blast_grpc" / "demo_site" / "pages" / "article.html").read_text(encoding="utf-8")  # HTML
MIN_CHUNK = 6000


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(port=0, latency=LATENCY) as server:
        yield server


def new_tag() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def tag() -> str:
    return new_tag()


@pytest_asyncio.fixture(scope="module")
async def shared(sim: SimServer) -> AsyncIterator[tuple[ExtractionPool, str]]:
    """One started pool (2 readers, the slow mini model) for the tests that leave it usable."""
    tag = new_tag()
    async with ExtractionPool(make_config(sim, "slow-mini", llm_timeout_s=5), tag, processes=2) as pool:
        yield pool, tag
    assert blocks(tag) == []


@pytest.fixture
def fresh(sim: SimServer) -> SimServer:
    """The shared simulated model with no counts, no pending faults and no held requests."""
    deadline = time.monotonic() + WAIT_S
    while sim.stats()["stalled_now"] and time.monotonic() < deadline:  # a previous test's held requests
        time.sleep(0.02)
    sim.reset()
    return sim


def make_config(sim: SimServer, mini: str, **settings: Any) -> Config:
    base = {"llm_endpoints": {"default": {"base_url": sim.base_url}}, "llm_max_retries": 0,
            "min_chunk_chars": MIN_CHUNK}
    return config_from_dict({"settings": {**base, **settings}, "constraints": {"llm_model_mini": mini}})


def article_chunks(max_parallel: int = 16) -> int:
    return len(plan_chunks(html_to_markdown(ARTICLE), CHUNK, MIN_CHUNK, max_parallel, OVERLAP))


def blocks(tag: str) -> list[str]:
    return sorted(p.name for p in SHM.glob(f"blast_{tag}_*"))


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.02)


def test_article_premise_code_only_in_the_last_chunk() -> None:
    chunks = plan_chunks(html_to_markdown(ARTICLE), CHUNK, MIN_CHUNK, 16, OVERLAP)
    assert len(chunks) > 2
    assert [ARTICLE_CODE in c.text for c in chunks] == [False] * (len(chunks) - 1) + [True]


@pytest.mark.asyncio
async def test_article_answer_comes_from_the_last_chunk_read_in_parallel(
        fresh: SimServer, shared: tuple[ExtractionPool, str]) -> None:
    pool, tag = shared
    readers = pool.reader_pids()
    assert len(readers) == 2 and os.getpid() not in readers
    result = await pool.extract(ARTICLE, QUERY)
    assert json.loads(result.answer) == {"found": True, "code": ARTICLE_CODE}
    assert result.chunks == article_chunks() > 2 and result.unread == []
    assert set(result.pids) <= set(readers)
    prompt, completion, requests = result.usage["slow-mini"]
    assert list(result.usage) == ["slow-mini"] and requests == result.chunks and prompt > result.chars // 10
    assert completion > 0
    assert fresh.stats()["by_model"] == {"slow-mini": result.chunks}
    assert re.fullmatch(rf"blast_{tag}_{os.getpid()}_\d+", result.block)
    assert blocks(tag) == []


@pytest.mark.asyncio
async def test_long_answers_are_merged_in_a_reader(fresh: SimServer, shared: tuple[ExtractionPool, str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pool, tag = shared
    monkeypatch.setattr(pool_module, "MERGE_INLINE_CHARS", 0)  # every answer counts as long
    result = await pool.extract(ARTICLE, QUERY)
    assert json.loads(result.answer) == {"found": True, "code": ARTICLE_CODE} and result.unread == []
    assert blocks(tag) == []


@pytest.mark.asyncio
async def test_every_chunk_call_is_in_flight_at_once_with_one_process_and_cancel_ends_them_all(
        fresh: SimServer, tag: str) -> None:
    n = article_chunks()
    fresh.add_faults(*["stall"] * n, model="slow-mini")
    async with ExtractionPool(make_config(fresh, "slow-mini", llm_timeout_s=60), tag, processes=1) as pool:
        task = asyncio.create_task(pool.extract(ARTICLE, QUERY))
        # One reader process, yet every chunk's call is held by the model at the same time.
        await until(lambda: fresh.stats()["stalled_now"] == n, f"all {n} chunk calls to be in flight")
        assert pool.in_flight == n
        assert blocks(tag) == []  # the block is gone as soon as the chunks are back
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.in_flight == 0
        # The model sees every held request's client leave: no call outlives the extraction.
        await until(lambda: fresh.stats()["stalled_now"] == 0, "the cancelled calls to be dropped")
        fresh.reset()
        result = await pool.extract(ARTICLE, QUERY)  # the pool carries on
        assert ARTICLE_CODE in result.answer and result.max_in_flight == n
    assert blocks(tag) == []


@pytest.mark.asyncio
async def test_max_parallel_chunk_calls_is_one_limit_for_the_whole_pool(fresh: SimServer, tag: str) -> None:
    config = make_config(fresh, "slow-mini", llm_timeout_s=60, max_parallel_chunk_calls=3)
    n = article_chunks(3)
    assert n > 3
    fresh.add_faults(*["stall"] * (2 * n), model="slow-mini")
    async with ExtractionPool(config, tag, processes=2) as pool:
        tasks = [asyncio.create_task(pool.extract(ARTICLE, QUERY)) for _ in range(2)]
        await until(lambda: fresh.stats()["stalled_now"] == 3, "three calls to be held")
        await until(lambda: pool.in_flight == 3, "the pool to count them")
        # Two extractions of n > 3 chunks each, and still only three calls at the model.
        assert fresh.stats()["by_model"]["slow-mini"] == 3
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await until(lambda: fresh.stats()["stalled_now"] == 0, "the cancelled calls to be dropped")
        assert pool.in_flight == 0
    assert blocks(tag) == []


@pytest.mark.asyncio
async def test_a_failed_chunk_is_retried_then_named_in_the_answer(fresh: SimServer, tag: str) -> None:
    async with ExtractionPool(make_config(fresh, "slow-mini", chunk_retries=1), tag, processes=1) as pool:
        fresh.add_faults("http_500", model="slow-mini")
        retried = await pool.extract(ARTICLE, QUERY)
        assert retried.unread == [] and json.loads(retried.answer) == {"found": True, "code": ARTICLE_CODE}
        assert fresh.stats()["by_model"]["slow-mini"] == retried.chunks + 1
    async with ExtractionPool(make_config(fresh, "slow-mini", chunk_retries=0), tag, processes=1) as pool:
        fresh.reset()
        fresh.add_faults("non_json", model="slow-mini")  # a 200 whose body is garbage
        result = await pool.extract(ARTICLE, QUERY)
    assert len(result.unread) == 1
    assert re.fullmatch(r"\[extract_content: chunk \d+/\d+ \(characters [\d,]+-[\d,]+ of [\d,]+(, section '.*')?\) "
                        r"could not be read: .*non-JSON body.*\]", result.unread[0])
    assert result.report().endswith(result.unread[0])
    assert blocks(tag) == []


@pytest.mark.asyncio
async def test_chunk_timeouts_everywhere_fail_clearly(fresh: SimServer, tag: str) -> None:
    config = make_config(fresh, "slow-mini", llm_timeout_s=1, chunk_retries=0)
    text = "A paragraph with no code.\n\n" * 3000  # Markdown/text: several chunks, no conversion
    async with ExtractionPool(config, tag, processes=1) as pool:
        n = len(plan_chunks(text.strip(), CHUNK, MIN_CHUNK, 16, OVERLAP))
        fresh.add_faults(*["stall"] * n, model="slow-mini")
        with pytest.raises(ExtractionError, match=rf"none of the {n} chunks of the page could be read; chunk 1/{n} "
                                                  r".*did not answer within settings.llm_timeout_s = 1s"):
            await pool.extract(text, QUERY, is_html=False)
        assert pool.in_flight == 0
    await until(lambda: fresh.stats()["stalled_now"] == 0, "the timed-out calls to be dropped")
    assert blocks(tag) == []


@pytest.mark.asyncio
async def test_empty_huge_and_binary_pages(fresh: SimServer, shared: tuple[ExtractionPool, str]) -> None:
    pool, tag = shared
    for empty in ("", "<html><head><title>t</title></head><body>  </body></html>"):
        result = await pool.extract(empty, QUERY)
        assert result.chunks == 0 and result.answer == "The page has no text to read." and result.usage == {}
    assert fresh.stats()["by_model"] == {}
    for chars in (9_000_000, 50_000_000):  # just over the limit, and a 50 MB page (refused before any copy)
        huge = "<p>" + "x" * (chars - 7) + "</p>"
        with pytest.raises(ExtractionError, match=rf"the page is {chars / 1e6:.1f} MB of HTML; extract_content reads "
                                                  r"pages up to settings.extraction_max_page_bytes = 8\.0 MB"):
            await pool.extract(huge, QUERY)
        del huge
    binary = bytes(range(256)).decode("latin-1") * 400  # what a binary file shown as text looks like
    result = await pool.extract(f"<html><body><pre>{binary}</pre></body></html>", QUERY)
    assert result.chunks >= 1 and json.loads(result.answer) == {"found": False}
    assert blocks(tag) == []


@pytest.mark.asyncio
async def test_bad_sizes_and_closed_pool(sim: SimServer, tag: str) -> None:
    pool = ExtractionPool(make_config(sim, "slow-mini"), tag, processes=2)
    with pytest.raises(ValueError):
        await pool.extract("text", QUERY, chunk_chars=100, overlap_chars=100)
    with pytest.raises(ValueError):
        ExtractionPool(make_config(sim, "slow-mini"), "w_1", processes=2)
    await pool.close()
    await pool.close()  # idempotent
    assert pool.reader_pids() == []
    with pytest.raises(ExtractionError, match="closed"):
        await pool.extract(ARTICLE, QUERY)
    assert blocks(tag) == []


@pytest.mark.asyncio
async def test_model_unreachable_fails_clearly(tag: str) -> None:
    with SimServer(port=0) as gone:
        config = make_config(gone, "any-mini", chunk_retries=0)
    async with ExtractionPool(config, tag, processes=1) as pool:
        with pytest.raises(ExtractionError, match="'any-mini' cannot be reached at http://127.0.0.1:"):
            await pool.extract("some text", QUERY, is_html=False)
    assert blocks(tag) == []


@pytest.mark.asyncio
async def test_killed_readers_are_replaced(fresh: SimServer, shared: tuple[ExtractionPool, str]) -> None:
    pool, tag = shared
    first = pool.reader_pids()
    for pid in first:
        os.kill(pid, signal.SIGKILL)
    await asyncio.to_thread(psutil.wait_procs, [psutil.Process(p) for p in first if psutil.pid_exists(p)], WAIT_S)
    result = None
    for _ in range(2):  # the first may find the pool broken mid-hand-off; it says so, the next one works
        try:
            result = await pool.extract(ARTICLE, QUERY)
            break
        except ExtractionError as exc:
            assert "an extraction process died" in str(exc)
    assert result is not None and ARTICLE_CODE in result.answer
    assert result.pids and set(result.pids).isdisjoint(first)
    assert blocks(tag) == []


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    return int(proc.stdout)


def _leave_block(name: str) -> None:
    """A process that creates a block and dies without unlinking it (its resource tracker forgets it too)."""
    code = textwrap.dedent(f"""
        from multiprocessing import resource_tracker, shared_memory
        shm = shared_memory.SharedMemory(name={name!r}, create=True, size=64)
        resource_tracker.unregister(shm._name, "shared_memory")
        shm.close()
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cleanup_blocks_removes_what_a_dead_owner_left(tag: str) -> None:
    dead = _dead_pid()
    left = f"blast_{tag}_{dead}_0"
    other_tag = f"blast_{tag}x_{dead}_0"  # another owner whose tag merely starts with ours
    live = f"blast_{tag}_{os.getpid()}_424242"  # a live owner's block (e.g. the restarted worker)
    for name in (left, other_tag, live):
        _leave_block(name)
    try:
        assert blocks(tag) == sorted([left, live])
        assert cleanup_blocks(tag) == [left]
        assert blocks(tag) == [live] and (SHM / other_tag).exists()
        assert cleanup_blocks(tag, keep_live_owners=False) == [live]
        assert blocks(tag) == [] and cleanup_blocks(tag) == []
        assert cleanup_blocks(f"{tag}x") == [other_tag]
    finally:
        for name in (left, other_tag, live):
            (SHM / name).unlink(missing_ok=True)


WORKER = textwrap.dedent("""
    import asyncio, json, sys
    from pathlib import Path
    from blast_grpc.config import config_from_dict
    from blast_grpc.extraction import ExtractionError, ExtractionPool

    async def main(base_url, tag, mode, article):
        config = config_from_dict({"settings": {"llm_endpoints": {"default": {"base_url": base_url}},
                                                "llm_max_retries": 0, "chunk_retries": 0,
                                                "max_parallel_chunk_calls": 2},
                                   "constraints": {"llm_model_mini": mode + "-mini"}})
        pool = ExtractionPool(config, tag, 2)
        await pool.start()
        print(json.dumps({"pids": pool.reader_pids()}), flush=True)
        for _ in range(2):
            try:
                result = await pool.extract(article, "What is the secret river code?")
                print(json.dumps({"answer": result.answer}), flush=True)
            except ExtractionError as exc:
                print(json.dumps({"error": str(exc)}), flush=True)
        await pool.close()

    if __name__ == "__main__":
        asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]).read_text(encoding="utf-8")))
""")


def _run_worker(sim: SimServer, tag: str, mode: str, tmp: Path) -> subprocess.Popen[str]:
    """A stand-in worker process: start a pool, print its pids, run two extractions, close."""
    article = tmp / "article.txt"
    article.write_text(ARTICLE, encoding="utf-8")
    return subprocess.Popen([sys.executable, "-c", WORKER, sim.base_url, tag, mode, str(article)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def test_worker_exits_cleanly_without_resource_tracker_noise(fresh: SimServer, tag: str, tmp_path: Path) -> None:
    fresh.add_faults(*["http_500"] * article_chunks(2), model="clean-mini")  # every call of the first extraction
    proc = _run_worker(fresh, tag, "clean", tmp_path)
    out, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 3 and len(lines[0]["pids"]) == 2
    assert "HTTP 500" in lines[1]["error"] and ARTICLE_CODE in lines[2]["answer"]
    # Readers neither unlinked the block nor confused the creator's resource tracker.
    for noise in ("leaked", "resource_tracker", "KeyError", "Traceback", "Warning"):
        assert noise not in err, err
    assert blocks(tag) == []


@pytest.mark.asyncio
async def test_killed_worker_leaves_no_readers_and_cleanup_blocks_finishes_the_job(
        fresh: SimServer, tag: str, tmp_path: Path) -> None:
    fresh.add_faults(*["stall"] * article_chunks(2), model="orphan-mini")
    proc = _run_worker(fresh, tag, "orphan", tmp_path)
    try:
        assert proc.stdout is not None
        readers = json.loads(await asyncio.to_thread(proc.stdout.readline))["pids"]
        await until(lambda: fresh.stats()["stalled_now"] == 2, "the worker's chunk calls to be held by the model")
        proc.kill()  # the worker dies mid-extraction
        await asyncio.to_thread(proc.wait)
        gone, alive = await asyncio.to_thread(psutil.wait_procs, [psutil.Process(p) for p in readers], WAIT_S)
        assert alive == [] and len(gone) == 2, "readers outlived their worker"
        cleanup_blocks(tag)  # the supervisor's job (the dead worker's resource tracker may have raced it)
        assert blocks(tag) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
