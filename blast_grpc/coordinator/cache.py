"""The result cache and the recording cache (BLAST's "plan cache"), in SQLite next to the coordinator.

Both are keyed by a task's *lineage*: its description and start URL, preceded by
those of the earlier tasks of its conversation (the previous_task_id chain), so a
follow-up never gets the answer to a different conversation.

* result cache: a task whose lineage completed successfully before is answered at
  once, with no browser and no LLM call (skip with "no-cache", don't record with
  "no-store");
* recording cache: the recording of a successful run (the browser actions, the
  element each one targeted, the page text it finished on), which the agent
  replays without asking the model, falling back to the model from the first step
  that no longer fits the page. BLAST calls it the plan cache, and its public names
  keep that word (``settings.cache_plans``, "no-cache-plan", "no-store-plan", the
  ``plans`` table); in the code "plan" is only the planner's text.

The file lives at ``settings.cache_path``; without ``settings.persist_cache`` it is
emptied at start-up. Every SQLite call runs on the cache's own thread (the one
connection lives there), never on the coordinator's event loop: a look-up is awaited,
a write is queued behind the look-ups and a failed write is logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

log = logging.getLogger("blast_grpc.cache")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, result TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS plans (key TEXT PRIMARY KEY, plan TEXT NOT NULL, created REAL NOT NULL);
"""


def lineage_key(turns: list[tuple[str, str]]) -> str:
    """A stable key for a list of (description, initial_url), oldest first."""
    return hashlib.sha256(json.dumps(turns, ensure_ascii=False).encode()).hexdigest()


class Cache:
    def __init__(self, path: str | Path, persist: bool) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not persist:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-db")
        self._db: sqlite3.Connection | None = None
        self._closing = False
        self._pool.submit(self._open).result()

    # --- the cache thread ------------------------------------------------------
    def _open(self) -> None:
        self._db = sqlite3.connect(self.path, isolation_level=None)  # autocommit; one writer: this thread
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def _get(self, table: str, key: str) -> str | None:
        assert self._db is not None
        column = "result" if table == "results" else "plan"
        row = self._db.execute(f"SELECT {column} FROM {table} WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _put(self, table: str, key: str, value: str) -> None:
        assert self._db is not None
        self._db.execute(f"INSERT OR REPLACE INTO {table} VALUES (?, ?, ?)", (key, value, time.time()))

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # --- the event loop --------------------------------------------------------
    async def get_result(self, key: str) -> str | None:
        return await asyncio.wrap_future(self._pool.submit(self._get, "results", key))

    async def get_recording(self, key: str) -> str | None:
        return await asyncio.wrap_future(self._pool.submit(self._get, "plans", key))

    def put_result(self, key: str, result: str) -> None:
        self._queue_put("results", key, result)

    def put_recording(self, key: str, recording: str) -> None:
        self._queue_put("plans", key, recording)

    def _queue_put(self, table: str, key: str, value: str) -> None:
        try:
            fut = self._pool.submit(self._put, table, key, value)
        except RuntimeError:  # closed: the engine is stopping; the entry is only an optimisation
            log.warning("cache closed; not storing a %s entry", table[:-1])
            return
        fut.add_done_callback(self._put_done)

    @staticmethod
    def _put_done(fut: Future[None]) -> None:
        exc = fut.exception()
        if exc is not None:
            log.error("could not write to the cache", exc_info=exc)

    async def close(self) -> None:
        """Finish queued writes and close the file; idempotent."""
        if self._closing:
            return
        self._closing = True
        await asyncio.wrap_future(self._pool.submit(self._close))
        self._pool.shutdown(wait=True)
