"""Data-parallel extraction against real parts: spawned reader processes, /dev/shm blocks, a SimServer.

Stall faults (the simulated model holds the request until the client leaves)
put an extraction reliably "in flight" without depending on timing: tests wait
until the model holds the readers' requests, then cancel or kill.
"""

from __future__ import annotations

import asyncio
import html
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
from blast_grpc.extraction import (
    ExtractionError,
    ExtractionPool,
    cleanup_blocks,
    split_chunks,
)
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


def _article_text() -> str:
    raw = (ROOT / "blast_grpc" / "demo_site" / "pages" / "article.html").read_text(encoding="utf-8")
    return re.sub(r"[ \t]+", " ", html.unescape(re.sub(r"<[^>]+>", " ", raw))).strip()


ARTICLE = _article_text()


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
    async with ExtractionPool(make_config(sim, "slow-mini", llm_timeout_s=2), tag, processes=2) as pool:
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
    return config_from_dict({
        "settings": {"llm_endpoints": {"default": {"base_url": sim.base_url}}, "llm_max_retries": 0, **settings},
        "constraints": {"llm_model_mini": mini},
    })


def blocks(tag: str) -> list[str]:
    return sorted(p.name for p in SHM.glob(f"blast_{tag}_*"))


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.02)


def test_article_premise_code_only_in_the_last_chunk() -> None:
    spans = split_chunks(ARTICLE.encode(), CHUNK, OVERLAP)
    texts = [ARTICLE.encode()[o: o + n].decode() for o, n in spans]
    assert len(texts) > 2
    assert [ARTICLE_CODE in t for t in texts] == [False] * (len(texts) - 1) + [True]


@pytest.mark.asyncio
async def test_article_answer_comes_from_the_last_chunk_read_in_parallel(
        fresh: SimServer, shared: tuple[ExtractionPool, str]) -> None:
    pool, tag = shared
    readers = pool.reader_pids()
    assert len(readers) == 2 and os.getpid() not in readers
    result = await pool.extract(ARTICLE, QUERY, chunk_chars=CHUNK, overlap_chars=OVERLAP)
    assert json.loads(result.answer) == {"found": True, "code": ARTICLE_CODE}
    assert result.chunks == len(split_chunks(ARTICLE.encode(), CHUNK, OVERLAP)) > 1
    assert len(result.pids) >= 2 and set(result.pids) <= set(readers)
    prompt, completion, requests = result.usage["slow-mini"]
    assert list(result.usage) == ["slow-mini"] and requests == result.chunks and prompt > len(ARTICLE) // 10
    assert completion > 0
    assert fresh.stats()["by_model"] == {"slow-mini": result.chunks}
    assert re.fullmatch(rf"blast_{tag}_{os.getpid()}_\d+", result.block)
    assert blocks(tag) == []


@pytest.mark.asyncio
async def test_not_found_and_empty_text(fresh: SimServer, shared: tuple[ExtractionPool, str]) -> None:
    pool, tag = shared
    head = ARTICLE[: 3 * CHUNK]
    result = await pool.extract(head, QUERY, chunk_chars=CHUNK, overlap_chars=OVERLAP)
    assert result.chunks == 4 and json.loads(result.answer) == {"found": False}
    empty = await pool.extract("", QUERY, chunk_chars=CHUNK, overlap_chars=OVERLAP)
    assert empty.chunks == 1 and json.loads(empty.answer) == {"found": False}
    assert fresh.stats()["by_model"] == {"slow-mini": 5}
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
        await pool.extract(ARTICLE, QUERY, chunk_chars=CHUNK, overlap_chars=OVERLAP)
    assert blocks(tag) == []


@pytest.mark.asyncio
async def test_cancel_mid_extraction_unlinks_the_block_and_the_pool_carries_on(
        fresh: SimServer, shared: tuple[ExtractionPool, str]) -> None:
    pool, tag = shared
    fresh.add_faults("stall", "stall", model="slow-mini")  # both readers' first requests hang
    task = asyncio.create_task(pool.extract(ARTICLE, QUERY, chunk_chars=CHUNK, overlap_chars=OVERLAP))
    await until(lambda: fresh.stats()["stalled_now"] == 2, "both readers to be held by the model")
    assert len(blocks(tag)) == 1  # the block exists while the extraction runs
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Cancellation did not wait for the readers: the model still holds their requests.
    assert fresh.stats()["stalled_now"] == 2
    assert blocks(tag) == []
    # Once the held requests time out (llm_timeout_s=2), the same pool answers the next extraction.
    result = await pool.extract(ARTICLE, QUERY, chunk_chars=CHUNK, overlap_chars=OVERLAP)
    assert ARTICLE_CODE in result.answer
    # Chunks queued behind the held ones were cancelled or found the block gone: only the held
    # requests and the second extraction reached the model.
    assert fresh.stats()["by_model"]["slow-mini"] == 2 + result.chunks
    assert blocks(tag) == []


@pytest.mark.asyncio
async def test_model_http_500_fails_with_the_model_named(fresh: SimServer, shared: tuple[ExtractionPool, str]) -> None:
    pool, tag = shared
    fresh.add_faults("http_500", model="slow-mini")
    with pytest.raises(ExtractionError) as err:
        await pool.extract(ARTICLE, QUERY, chunk_chars=CHUNK, overlap_chars=OVERLAP)
    assert "'slow-mini'" in str(err.value) and "HTTP 500" in str(err.value)
    assert blocks(tag) == []
    assert fresh.stats()["faults_injected"] == {"http_500": 1}
    result = await pool.extract(ARTICLE, QUERY, chunk_chars=CHUNK, overlap_chars=OVERLAP)
    assert ARTICLE_CODE in result.answer


@pytest.mark.asyncio
async def test_model_unreachable_fails_clearly(tag: str) -> None:
    with SimServer(port=0) as gone:
        config = make_config(gone, "any-mini")
    async with ExtractionPool(config, tag, processes=1) as pool:
        with pytest.raises(ExtractionError, match="'any-mini' at http://127.0.0.1:.* is unreachable"):
            await pool.extract("some text", QUERY, chunk_chars=CHUNK, overlap_chars=OVERLAP)
    assert blocks(tag) == []


@pytest.mark.asyncio
async def test_reader_killed_mid_extraction(fresh: SimServer, shared: tuple[ExtractionPool, str]) -> None:
    pool, tag = shared
    fresh.add_faults("stall", "stall", model="slow-mini")
    first = pool.reader_pids()
    task = asyncio.create_task(pool.extract(ARTICLE, QUERY, chunk_chars=CHUNK, overlap_chars=OVERLAP))
    await until(lambda: fresh.stats()["stalled_now"] == 2, "both readers to be held by the model")
    os.kill(first[0], signal.SIGKILL)
    with pytest.raises(ExtractionError, match="an extraction process died"):
        await task
    assert blocks(tag) == []
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in first)
    result = await pool.extract(ARTICLE, QUERY, chunk_chars=CHUNK, overlap_chars=OVERLAP)
    assert ARTICLE_CODE in result.answer
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
                                                "llm_max_retries": 0},
                                   "constraints": {"llm_model_mini": mode + "-mini"}})
        pool = ExtractionPool(config, tag, 2)
        await pool.start()
        print(json.dumps({"pids": pool.reader_pids()}), flush=True)
        for _ in range(2):
            try:
                result = await pool.extract(article, "What is the secret river code?", chunk_chars=20000,
                                            overlap_chars=500)
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
    fresh.add_faults("http_500", model="clean-mini")  # the first extraction fails, the second succeeds
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
    fresh.add_faults("stall", "stall", model="orphan-mini")
    proc = _run_worker(fresh, tag, "orphan", tmp_path)
    try:
        assert proc.stdout is not None
        readers = json.loads(await asyncio.to_thread(proc.stdout.readline))["pids"]
        await until(lambda: fresh.stats()["stalled_now"] == 2, "the worker's readers to be held by the model")
        assert len(blocks(tag)) == 1
        proc.kill()  # the worker dies mid-extraction, its block still in /dev/shm
        await asyncio.to_thread(proc.wait)
        gone, alive = await asyncio.to_thread(psutil.wait_procs, [psutil.Process(p) for p in readers], WAIT_S)
        assert alive == [] and len(gone) == 2, "readers outlived their worker"
        cleanup_blocks(tag)  # the supervisor's job (the dead worker's resource tracker may have raced it)
        assert blocks(tag) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
